package esxisim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/casecap/casecap/internal/esxi"
)

// Tools are the commands this package imitates.
var Tools = []string{"pktcap-uw", "net-stats", "esxcli", "vsish", "vmware", "uname"}

// IsTool reports whether a program name (argv[0]) is one of Tools.
func IsTool(argv0 string) bool { return slices.Contains(Tools, filepath.Base(argv0)) }

// Main runs the tool argv[0] names and returns its exit status.
func Main(argv []string, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	inv, err := loadInventory()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	args := argv[1:]
	logCall(argv)
	switch name {
	case "pktcap-uw":
		return pktcap(inv, args, stdout, stderr)
	case "net-stats":
		return netStats(inv, args, stdout, stderr)
	case "esxcli":
		return esxcli(inv, args, stdout, stderr)
	case "vsish":
		return vsish(inv, args, stdout, stderr)
	case "vmware":
		if len(args) == 1 && (args[0] == "-v" || args[0] == "--version") {
			fmt.Fprintln(stdout, inv.Version)
			return 0
		}
		fmt.Fprintln(stderr, "Usage: vmware -v")
		return 1
	case "uname":
		return uname(inv, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "%s: not simulated\n", name)
	return 127
}

// CallsPath is the log of every call of the simulated tools on a lab ESXi
// host, one JSON array (the argv) per line: what casecap asked of the
// host, for tests to check (it never changes a setting such as
// execInstalledOnly, for one).
const CallsPath = "/usr/local/bin/.esxi-calls.log"

func logCall(argv []string) {
	path := CallsPath
	if p := os.Getenv(inventoryEnv); p != "" {
		path = filepath.Join(filepath.Dir(p), filepath.Base(CallsPath))
	}
	b, _ := json.Marshal(append([]string{filepath.Base(argv[0])}, argv[1:]...))
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
		f.Write(append(b, '\n'))
		f.Close()
	}
}

func netStats(inv *Inventory, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "-l" {
		fmt.Fprintf(stderr, "net-stats: only -l is simulated, not %q\n", strings.Join(args, " "))
		return 1
	}
	fmt.Fprintf(stdout, "%-16s %4s %7s %-16s %-18s %s\n", "PortNum", "Type", "SubType", "SwitchName", "MACAddress", "ClientName")
	for _, p := range inv.Ports {
		fmt.Fprintf(stdout, "%-16d %4d %7d %-16s %-18s %s\n", p.Num, p.Type, p.SubType, p.Switch, p.MAC, p.Client)
	}
	return 0
}

func esxcli(inv *Inventory, args []string, stdout, stderr io.Writer) int {
	switch {
	case slices.Equal(args, []string{"network", "vm", "list"}):
		type vm struct {
			world    int
			name     string
			ports    int
			networks []string
		}
		var vms []*vm
		byWorld := map[int]*vm{}
		for _, p := range inv.Ports {
			if p.Type != esxi.TypeVNIC {
				continue
			}
			v := byWorld[p.World]
			if v == nil {
				v = &vm{world: p.World, name: p.VM()}
				byWorld[p.World] = v
				vms = append(vms, v)
			}
			// One network per port, repeated as real output repeats it
			// ("Server Network, Server Network": docs/esxi.md).
			v.ports++
			v.networks = append(v.networks, p.Portgroup)
		}
		if len(vms) == 0 {
			return 0
		}
		wn := len("Name")
		for _, v := range vms {
			wn = max(wn, len(v.name))
		}
		row := func(a, b, c, d string) { fmt.Fprintf(stdout, "%8s  %-*s  %9s  %s\n", a, wn, b, c, d) }
		fmt.Fprintf(stdout, "%-8s  %-*s  %-9s  %s\n", "World ID", wn, "Name", "Num Ports", "Networks")
		fmt.Fprintf(stdout, "%s  %s  %s  %s\n", strings.Repeat("-", 8), strings.Repeat("-", wn), strings.Repeat("-", 9), strings.Repeat("-", 20))
		for _, v := range vms {
			row(fmt.Sprint(v.world), v.name, fmt.Sprint(v.ports), strings.Join(v.networks, ", "))
		}
		return 0
	case len(args) == 6 && slices.Equal(args[:5], []string{"network", "vm", "port", "list", "-w"}):
		found := false
		for _, p := range inv.Ports {
			if p.Type != esxi.TypeVNIC || fmt.Sprint(p.World) != args[5] {
				continue
			}
			if found {
				fmt.Fprintln(stdout)
			}
			found = true
			uplinkPort := uint32(0)
			for _, u := range inv.Ports {
				if u.Type == esxi.TypeUplink && u.Client == p.TeamUplink {
					uplinkPort = u.Num
				}
			}
			fmt.Fprintf(stdout, "   Port ID: %d\n   vSwitch: %s\n   Portgroup: %s\n   DVPort ID: \n   MAC Address: %s\n   IP Address: %s\n   Team Uplink: %s\n   Uplink Port ID: %d\n   Active Filters: \n",
				p.Num, p.Switch, p.Portgroup, p.MAC, p.IP, p.TeamUplink, uplinkPort)
		}
		if !found {
			fmt.Fprintf(stderr, "Error: Invalid World ID %s\n", args[5])
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "Error: Unknown command or namespace %s\n", strings.Join(args, " "))
	return 1
}

func vsish(inv *Inventory, args []string, stdout, stderr io.Writer) int {
	if len(args) != 3 || args[0] != "-e" || args[1] != "get" {
		fmt.Fprintf(stderr, "vsish: only -e get PATH is simulated, not %q\n", strings.Join(args, " "))
		return 1
	}
	// vNIC and vmk ports have a team uplink (NSX reads it for its VTEP
	// vmks: docs/esxi.md).
	for _, p := range inv.Ports {
		if (p.Type == esxi.TypeVNIC || p.Type == esxi.TypeVmk) && p.TeamUplink != "" && args[2] == esxi.TeamUplinkPath(p.Switch, p.Num) {
			fmt.Fprintln(stdout, p.TeamUplink)
			return 0
		}
	}
	fmt.Fprintf(stderr, "VSISHPath_Form():Extraneous '%s' in path.\nInvalid path: %s\n", filepath.Base(args[2]), args[2])
	return 1
}

func uname(inv *Inventory, args []string, stdout, stderr io.Writer) int {
	v, _ := esxi.ParseVersion(inv.Version)
	release := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Update)
	if len(args) == 0 {
		args = []string{"-s"}
	}
	var out []string
	for _, a := range args {
		switch a {
		case "-s":
			out = append(out, "VMkernel")
		case "-r":
			out = append(out, release)
		case "-m", "-p", "-i":
			out = append(out, inv.Machine)
		case "-n":
			h, _ := os.Hostname()
			out = append(out, h)
		case "-a":
			h, _ := os.Hostname()
			out = append(out, "VMkernel", h, release, fmt.Sprintf("#1 SMP Release build-%d", v.Build), inv.Machine, inv.Machine, inv.Machine, "ESXi")
		default:
			fmt.Fprintf(stderr, "uname: invalid option -- '%s'\n", strings.TrimLeft(a, "-"))
			return 1
		}
	}
	fmt.Fprintln(stdout, strings.Join(out, " "))
	return 0
}
