package esxi

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/casecap/casecap/internal/suggest"
)

// Commands that read a host's inventory, as argument lists.
var (
	NetStatsArgv = []string{"net-stats", "-l"}
	VMListArgv   = []string{"esxcli", "network", "vm", "list"}
	VersionArgv  = []string{"vmware", "-v"}
)

// VMPortsArgv lists a VM's ports (with their team uplinks).
func VMPortsArgv(world int) []string {
	return []string{"esxcli", "network", "vm", "port", "list", "-w", strconv.Itoa(world)}
}

// TeamUplinkArgv asks vsish for a port's active uplink.
func TeamUplinkArgv(vswitch string, port uint32) []string {
	return []string{"vsish", "-e", "get", TeamUplinkPath(vswitch, port)}
}

// Inventory is what one host has to capture on.
type Inventory struct {
	Host    string  `json:"host"`
	Version Version `json:"version"`
	Ports   []Port  `json:"ports"`
}

// Of returns the ports of one type, in port order.
func (inv *Inventory) Of(t PortType) []Port {
	var out []Port
	for _, p := range inv.Ports {
		if p.Type == t {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Num < out[j].Num })
	return out
}

// Switchport finds a port by number.
func (inv *Inventory) Switchport(num uint32) (Port, error) {
	for _, p := range inv.Ports {
		if p.Num == num {
			return p, nil
		}
	}
	return Port{}, fmt.Errorf("no switchport %d on %s; %s", num, inv.Host, inv.listPorts())
}

// Uplink finds a physical adapter's port by name.
func (inv *Inventory) Uplink(name string) (Port, error) {
	return inv.named(TypeUplink, name, "uplink")
}

// Vmk finds a VMkernel adapter's port by name.
func (inv *Inventory) Vmk(name string) (Port, error) {
	return inv.named(TypeVmk, name, "vmk")
}

func (inv *Inventory) named(t PortType, name, what string) (Port, error) {
	var names []string
	for _, p := range inv.Of(t) {
		if p.Client == name {
			return p, nil
		}
		names = append(names, p.Client)
	}
	if len(names) == 0 {
		return Port{}, fmt.Errorf("no %s %s on %s: it has none", what, name, inv.Host)
	}
	return Port{}, fmt.Errorf("no %s %s on %s; it has %s%s", what, name, inv.Host, strings.Join(names, ", "), suggest.DidYouMean(name, names))
}

// VNIC finds the switchport of a VM's vNIC. VM names are matched exactly
// (they may hold spaces and dots); a near miss is suggested. A port that
// net-stats lists without its vNIC's name is taken for the vNIC asked for
// when it is the VM's only such port and no port of the VM is named so.
func (inv *Inventory) VNIC(vm, vnic string) (Port, error) {
	var found, unnamed []Port
	vnics := map[string][]string{}
	var vms []string
	for _, p := range inv.Of(TypeVNIC) {
		name := p.VM()
		if _, ok := vnics[name]; !ok {
			vms = append(vms, name)
		}
		label := p.VNIC()
		if label == "" {
			label = fmt.Sprintf("unnamed (switchport %d)", p.Num)
		}
		vnics[name] = append(vnics[name], label)
		switch {
		case name == vm && p.VNIC() == vnic:
			found = append(found, p)
		case name == vm && p.VNIC() == "":
			unnamed = append(unnamed, p)
		}
	}
	if len(found) == 0 && len(unnamed) == 1 {
		found = unnamed
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var nums []string
		for _, p := range found {
			nums = append(nums, strconv.FormatUint(uint64(p.Num), 10))
		}
		return Port{}, fmt.Errorf("%s has %d ports for VM %q vNIC %s (%s): name the switchport instead", inv.Host, len(found), vm, vnic, strings.Join(nums, ", "))
	case vnics[vm] != nil:
		return Port{}, fmt.Errorf("VM %q on %s has no vNIC %s; it has %s", vm, inv.Host, vnic, strings.Join(vnics[vm], ", "))
	case len(vms) == 0:
		return Port{}, fmt.Errorf("no VM %q on %s: no VM there has a running vNIC", vm, inv.Host)
	}
	var list []string
	for _, name := range vms {
		list = append(list, fmt.Sprintf("%q (%s)", name, strings.Join(vnics[name], ", ")))
	}
	return Port{}, fmt.Errorf("no VM %q on %s; its VMs with running vNICs: %s%s", vm, inv.Host, strings.Join(list, ", "), suggest.DidYouMean(vm, vms))
}

func (inv *Inventory) listPorts() string {
	var parts []string
	for _, p := range inv.Ports {
		parts = append(parts, fmt.Sprintf("%d (%s)", p.Num, p.Client))
	}
	if len(parts) == 0 {
		return "it has no ports"
	}
	return "its ports: " + strings.Join(parts, ", ")
}

// VMs lists the VMs that have vNIC ports, with their vNICs, in name order.
func (inv *Inventory) VMs() map[string][]Port {
	out := map[string][]Port{}
	for _, p := range inv.Of(TypeVNIC) {
		out[p.VM()] = append(out[p.VM()], p)
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b Port) int { return strings.Compare(a.VNIC(), b.VNIC()) })
	}
	return out
}
