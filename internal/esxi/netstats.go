package esxi

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// PortType is net-stats' Type column: what is attached to the port.
type PortType int

// Port types as net-stats -l prints them.
const (
	TypeVmk    PortType = 3 // a VMkernel adapter (vmk0...)
	TypeUplink PortType = 4 // a physical adapter (vmnic0...)
	TypeVNIC   PortType = 5 // a VM's virtual NIC
)

func (t PortType) String() string {
	switch t {
	case TypeVmk:
		return "vmk"
	case TypeUplink:
		return "uplink"
	case TypeVNIC:
		return "vnic"
	}
	return "type " + strconv.Itoa(int(t))
}

// Port is one line of `net-stats -l`.
type Port struct {
	Num     uint32   `json:"port"`
	Type    PortType `json:"type"`
	SubType int      `json:"subtype"`
	Switch  string   `json:"switch"`
	MAC     string   `json:"mac"`
	// Client is what the port serves: vmnic0, vmk1, or "VM name.ethN" for a
	// VM's vNIC (a VM name may hold spaces and dots), or the VM's name
	// alone: public net-stats output shows vNIC ports without their vNIC's
	// name too (docs/esxi.md).
	Client string `json:"client"`
}

// vnicSuffix is what follows a VM's name in a vNIC port's client name.
var vnicSuffix = regexp.MustCompile(`\.(eth\d+)$`)

// VM and VNIC split a vNIC port's client name before its ".ethN":
// "NSX Manager.eth0" is VM "NSX Manager", vNIC "eth0". A client name
// without one is the VM's name alone, its vNIC unnamed ("": the dots of
// "ubuntu-18.04" are the VM's). Other ports have no VM.
func (p Port) VM() string {
	if p.Type != TypeVNIC {
		return ""
	}
	if m := vnicSuffix.FindStringIndex(p.Client); m != nil && m[0] > 0 {
		return p.Client[:m[0]]
	}
	return p.Client
}

// VNIC is the vNIC part of a VM port's client name ("eth0"), or "" where
// net-stats does not name it.
func (p Port) VNIC() string {
	if p.Type != TypeVNIC {
		return ""
	}
	if m := vnicSuffix.FindStringSubmatchIndex(p.Client); m != nil && m[0] > 0 {
		return p.Client[m[2]:m[3]]
	}
	return ""
}

// netStatsLine is one port line: the switch name runs up to the MAC
// address, the client name is the rest of the line (it may hold spaces).
var netStatsLine = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S.*?)\s+([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})(?:\s+(.*?))?\s*$`)

// ParseNetStats reads `net-stats -l`: a header line (PortNum Type SubType
// SwitchName MACAddress ClientName), then one port per line.
func ParseNetStats(out string) ([]Port, error) {
	var ports []Port
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	header := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !header {
			if f := strings.Fields(line); len(f) < 6 || f[0] != "PortNum" || f[1] != "Type" {
				return nil, fmt.Errorf("net-stats -l, line %d: want the header PortNum Type SubType SwitchName MACAddress ClientName, got %q", n, line)
			}
			header = true
			continue
		}
		m := netStatsLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("net-stats -l, line %d: cannot read %q", n, line)
		}
		num, err1 := strconv.ParseUint(m[1], 10, 32)
		typ, err2 := strconv.Atoi(m[2])
		sub, err3 := strconv.Atoi(m[3])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("net-stats -l, line %d: numbers out of range in %q", n, line)
		}
		ports = append(ports, Port{Num: uint32(num), Type: PortType(typ), SubType: sub, Switch: m[4], MAC: strings.ToLower(m[5]), Client: m[6]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("net-stats -l: %w", err)
	}
	if !header {
		return nil, fmt.Errorf("net-stats -l printed nothing")
	}
	return ports, nil
}
