package esxi

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// public reads a file of testdata/public: real output, as published
// (testdata/public/SOURCES.md says where each comes from).
func public(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "public", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestPublicNetStats: net-stats output from real hosts: large port
// numbers, type 0 and subtype 7 ports, VM names with spaces, dots and
// dashes, and a vNIC listed by its VM's name alone.
func TestPublicNetStats(t *testing.T) {
	type want struct {
		num      uint32
		typ      PortType
		vm, vnic string
	}
	for file, wants := range map[string][]want{
		"net-stats-l.esxi8-dvs.txt": {
			{2214592518, TypeUplink, "", ""}, {67108874, TypeVmk, "", ""}, {67108879, 0, "", ""},
			{67108880, TypeVNIC, "infravisor-pod", "eth0"}, {67108881, TypeVNIC, "vedge3", "eth4"},
		},
		"net-stats-l.nsx-v.txt": {
			{100663353, TypeVNIC, "sneaku-scan01", "eth1"},
			{100663356, TypeVNIC, "NSX_Controller_4e6a2ed1-f438-4791-a8ae-07bc782b3735", "eth0"},
			{100663359, TypeVNIC, "NSX Manager", "eth0"},
		},
		"net-stats-l.bare-vnic.txt": {
			{2248146958, TypeUplink, "", ""},
			{100663335, TypeVNIC, "6-vm-ubuntu-18.04-server-amd64-local-1196-01964aa9-e913-47f9-8439-80a4f5a59458", ""},
			{167772198, TypeVNIC, "6-vm-ubuntu-18.04-server-amd64-local-1196-01964aa9-e913-47f9-8439-80a4f5a59458", "eth1"},
		},
	} {
		ports, err := ParseNetStats(public(t, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, w := range wants {
			i := slices.IndexFunc(ports, func(p Port) bool { return p.Num == w.num })
			if i < 0 {
				t.Errorf("%s: no port %d in %+v", file, w.num, ports)
				continue
			}
			if p := ports[i]; p.Type != w.typ || p.VM() != w.vm || p.VNIC() != w.vnic {
				t.Errorf("%s: port %d is %v, VM %q vNIC %q; want %v, %q, %q", file, w.num, p.Type, p.VM(), p.VNIC(), w.typ, w.vm, w.vnic)
			}
		}
	}
	// The VM whose first vNIC net-stats does not name: its eth1 by name,
	// its unnamed port for eth0.
	ports, _ := ParseNetStats(public(t, "net-stats-l.bare-vnic.txt"))
	inv := &Inventory{Host: "h", Ports: ports}
	vm := "6-vm-ubuntu-18.04-server-amd64-local-1196-01964aa9-e913-47f9-8439-80a4f5a59458"
	for vnic, want := range map[string]uint32{"eth0": 100663335, "eth1": 167772198} {
		if p, err := inv.VNIC(vm, vnic); err != nil || p.Num != want {
			t.Errorf("VNIC(%s): %d %v, want switchport %d", vnic, p.Num, err, want)
		}
	}
}

// TestPublicEsxcli: esxcli's VM list (names with dots, duplicate networks,
// trailing blanks) and port list (an uplink port above 2^31, empty fields
// with and without a trailing blank).
func TestPublicEsxcli(t *testing.T) {
	for file, want := range map[string][]VM{
		"esxcli-vm-list.esxi67.txt": {
			{World: 4455488, Name: "ubuntu_gns3", Ports: 1, Networks: []string{"Server Network"}},
			{World: 4455345, Name: "gns3_vm", Ports: 2, Networks: []string{"Server Network", "Server Network"}},
		},
		"esxcli-vm-list.trailing-blanks.txt": {
			{World: 193286, Name: "wzh-centos-25.155", Ports: 1, Networks: []string{"VM Network"}},
			{World: 127634, Name: "DPMP3.0", Ports: 2, Networks: []string{"VM Network", "VM Network"}},
		},
	} {
		got, err := ParseVMList(public(t, file))
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: %+v %v", file, got, err)
		}
		for i := range want {
			if g, w := got[i], want[i]; g.World != w.World || g.Name != w.Name || g.Ports != w.Ports || !slices.Equal(g.Networks, w.Networks) {
				t.Errorf("%s: %+v, want %+v", file, g, w)
			}
		}
	}
	ports, err := ParseVMPorts(public(t, "esxcli-vm-port-list.two-ports.txt"))
	if err != nil || len(ports) != 2 {
		t.Fatalf("port list: %+v %v", ports, err)
	}
	if p := ports[0]; p.Port != 33554578 || p.Switch != "vSwitch0" || p.Portgroup != "Security_Lab_Site1_Outside" || p.MAC != "00:0c:29:47:03:dc" || p.TeamUplink != "vmnic0" || p.UplinkPort != 33554434 || p.DVPort != "" {
		t.Errorf("first port: %+v", p)
	}
	if p := ports[1]; p.Port != 67108881 || p.UplinkPort != 2214592517 || p.TeamUplink != "vmnic0" || p.DVPort != "" {
		t.Errorf("second port: %+v", p)
	}
}

// TestPublicVsishAndVersion: vsish's team uplink, vmware -v and -vl.
func TestPublicVsishAndVersion(t *testing.T) {
	if u, err := ParseTeamUplink(public(t, "vsish-teamUplink.txt")); err != nil || u != "vmnic2" {
		t.Errorf("team uplink: %q %v", u, err)
	}
	for file, want := range map[string]Version{
		"vmware-v.5.0.txt":  {Major: 5, Minor: 0, Update: 0, Build: 469512},
		"vmware-vl.6.5.txt": {Major: 6, Minor: 5, Update: 0, Build: 14320405},
	} {
		v, err := ParseVersion(public(t, file))
		if err != nil || v.Major != want.Major || v.Minor != want.Minor || v.Update != want.Update || v.Build != want.Build {
			t.Errorf("%s: %+v %v, want %+v", file, v, err, want)
		}
	}
}
