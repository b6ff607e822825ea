package esxi

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// VM is one line of `esxcli network vm list`.
type VM struct {
	World    int      `json:"world"`
	Name     string   `json:"name"`
	Ports    int      `json:"ports"`
	Networks []string `json:"networks,omitempty"`
}

// table reads esxcli's table output: a header, a line of dashes whose runs
// give each column's extent, then rows. Cells may hold spaces (VM names
// do); the last column runs to the end of the line.
func table(out, cmd string, want []string) ([][]string, error) {
	lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	dash := -1
	for i, l := range lines {
		if t := strings.TrimSpace(l); t != "" && strings.Trim(t, "- ") == "" {
			dash = i
			break
		}
	}
	if dash < 1 {
		if strings.TrimSpace(out) == "" {
			return nil, nil // no rows at all: esxcli prints nothing
		}
		return nil, fmt.Errorf("%s: no header underlined with dashes in %q", cmd, firstLine(out))
	}
	var starts []int
	for i := 0; i < len(lines[dash]); i++ {
		if lines[dash][i] == '-' && (i == 0 || lines[dash][i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	cells := func(l string) []string {
		row := make([]string, len(starts))
		for c, s := range starts {
			e := len(l)
			if c+1 < len(starts) && starts[c+1] < e {
				e = starts[c+1]
			}
			if s < len(l) && s < e {
				row[c] = strings.TrimSpace(l[s:e])
			}
		}
		return row
	}
	head := cells(lines[dash-1])
	if len(head) < len(want) {
		return nil, fmt.Errorf("%s: header %q, want columns %s", cmd, strings.TrimSpace(lines[dash-1]), strings.Join(want, ", "))
	}
	for i, w := range want {
		if !strings.EqualFold(head[i], w) {
			return nil, fmt.Errorf("%s: column %d is %q, want %q", cmd, i+1, head[i], w)
		}
	}
	var rows [][]string
	for _, l := range lines[dash+1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		rows = append(rows, cells(l))
	}
	return rows, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// ParseVMList reads `esxcli network vm list`.
func ParseVMList(out string) ([]VM, error) {
	const cmd = "esxcli network vm list"
	rows, err := table(out, cmd, []string{"World ID", "Name", "Num Ports", "Networks"})
	if err != nil {
		return nil, err
	}
	var vms []VM
	for i, r := range rows {
		world, err1 := strconv.Atoi(r[0])
		ports, err2 := strconv.Atoi(r[2])
		if err1 != nil || err2 != nil || world <= 0 || r[1] == "" {
			return nil, fmt.Errorf("%s, row %d: cannot read %q", cmd, i+1, strings.Join(r, " | "))
		}
		vm := VM{World: world, Name: r[1], Ports: ports}
		for _, n := range strings.Split(r[3], ",") {
			if n = strings.TrimSpace(n); n != "" {
				vm.Networks = append(vm.Networks, n)
			}
		}
		vms = append(vms, vm)
	}
	return vms, nil
}

// VMPort is one block of `esxcli network vm port list -w WORLD`.
type VMPort struct {
	Port       uint32 `json:"port"`
	Switch     string `json:"switch"`
	Portgroup  string `json:"portgroup"`
	DVPort     string `json:"dvport,omitempty"`
	MAC        string `json:"mac"`
	IP         string `json:"ip,omitempty"`
	TeamUplink string `json:"team_uplink,omitempty"`
	UplinkPort uint32 `json:"uplink_port,omitempty"`
}

// ParseVMPorts reads `esxcli network vm port list -w WORLD`: one block of
// "Key: Value" lines per port, blocks separated by blank lines.
func ParseVMPorts(out string) ([]VMPort, error) {
	const cmd = "esxcli network vm port list"
	var ports []VMPort
	var cur *VMPort
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			cur = nil
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s, line %d: want \"Key: Value\", got %q", cmd, n, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if key == "Port ID" {
			num, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s, line %d: port id %q", cmd, n, val)
			}
			ports = append(ports, VMPort{Port: uint32(num)})
			cur = &ports[len(ports)-1]
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("%s, line %d: %q before any Port ID", cmd, n, line)
		}
		switch key {
		case "vSwitch":
			cur.Switch = val
		case "Portgroup":
			cur.Portgroup = val
		case "DVPort ID":
			cur.DVPort = val
		case "MAC Address":
			cur.MAC = strings.ToLower(val)
		case "IP Address":
			cur.IP = val
		case "Team Uplink":
			if val != "all(0)" && val != "void" {
				cur.TeamUplink = val
			}
		case "Uplink Port ID":
			if num, err := strconv.ParseUint(val, 10, 32); err == nil {
				cur.UplinkPort = uint32(num)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return ports, nil
}
