package esxi

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/casecap/casecap/plans/filter"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

func sample(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseNetStats(t *testing.T) {
	ports, err := ParseNetStats(sample(t, "net-stats-l.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 9 {
		t.Fatalf("got %d ports, want 9", len(ports))
	}
	cases := []struct {
		i          int
		num        uint32
		typ        PortType
		sw, client string
		vm, vnic   string
	}{
		{0, 33554434, TypeUplink, "vSwitch0", "vmnic0", "", ""},
		{1, 33554435, TypeVmk, "vSwitch0", "vmk0", "", ""},
		{2, 33554436, TypeVNIC, "vSwitch0", "app01.eth0", "app01", "eth0"},
		{6, 67108879, TypeVNIC, "DvsPortset-0", "NSX Manager.eth0", "NSX Manager", "eth0"},
		{7, 67108880, TypeVNIC, "DvsPortset-0", "db.v2 (clone).eth0", "db.v2 (clone)", "eth0"},
	}
	for _, c := range cases {
		p := ports[c.i]
		if p.Num != c.num || p.Type != c.typ || p.Switch != c.sw || p.Client != c.client || p.VM() != c.vm || p.VNIC() != c.vnic {
			t.Errorf("port %d: got %+v (vm %q vnic %q), want %d %v %s %q vm %q vnic %q", c.i, p, p.VM(), p.VNIC(), c.num, c.typ, c.sw, c.client, c.vm, c.vnic)
		}
	}
	if ports[6].MAC != "00:50:56:b3:aa:01" {
		t.Errorf("MAC %q", ports[6].MAC)
	}
	for _, bad := range []string{"", "hello\n", "PortNum Type SubType SwitchName MACAddress ClientName\n123 x 0 vSwitch0 00:50:56:01:aa:10 vmnic0\n",
		"PortNum Type SubType SwitchName MACAddress ClientName\n99999999999 4 0 vSwitch0 00:50:56:01:aa:10 vmnic0\n"} {
		if _, err := ParseNetStats(bad); err == nil {
			t.Errorf("ParseNetStats(%q) accepted it", bad)
		}
	}
}

func TestParseVMList(t *testing.T) {
	vms, err := ParseVMList(sample(t, "esxcli-vm-list.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []VM{
		{World: 2101234, Name: "app01", Ports: 2, Networks: []string{"VM Network", "Backup"}},
		{World: 2101567, Name: "NSX Manager", Ports: 1, Networks: []string{"dvpg-mgmt"}},
		{World: 2102001, Name: "db.v2 (clone)", Ports: 1, Networks: []string{"dvpg-db"}},
	}
	if len(vms) != len(want) {
		t.Fatalf("got %+v", vms)
	}
	for i := range want {
		if vms[i].World != want[i].World || vms[i].Name != want[i].Name || vms[i].Ports != want[i].Ports || !slices.Equal(vms[i].Networks, want[i].Networks) {
			t.Errorf("vm %d: got %+v, want %+v", i, vms[i], want[i])
		}
	}
	if vms, err := ParseVMList(""); err != nil || len(vms) != 0 {
		t.Errorf("no VMs: %v %v", vms, err)
	}
	if _, err := ParseVMList("Name  World\n----  -----\nx  1\n"); err == nil {
		t.Error("wrong columns accepted")
	}
}

func TestParseVMPorts(t *testing.T) {
	ports, err := ParseVMPorts(sample(t, "esxcli-vm-port-list.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0].Port != 33554436 || ports[0].TeamUplink != "vmnic0" || ports[0].Switch != "vSwitch0" ||
		ports[0].Portgroup != "VM Network" || ports[0].UplinkPort != 33554434 || ports[1].TeamUplink != "" || ports[1].MAC != "00:50:56:a1:2e:90" {
		t.Errorf("got %+v", ports)
	}
	if _, err := ParseVMPorts("vSwitch: x\n"); err == nil {
		t.Error("a block without Port ID was accepted")
	}
}

func TestParseTeamUplink(t *testing.T) {
	for in, want := range map[string]string{"vmnic2\n": "vmnic2", "\n  vmnic0  \n": "vmnic0"} {
		if got, err := ParseTeamUplink(in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "void\n", "VSI_NODE_net_portsets not found\n"} {
		if got, err := ParseTeamUplink(bad); err == nil {
			t.Errorf("%q gave %q", bad, got)
		}
	}
}

func TestParseVersion(t *testing.T) {
	v, err := ParseVersion("VMware ESXi 8.0.2 build-22380479\n")
	if err != nil || v.Major != 8 || v.Minor != 0 || v.Update != 2 || v.Build != 22380479 || !v.RawFilters() {
		t.Errorf("got %+v %v", v, err)
	}
	v, err = ParseVersion("VMware ESXi 6.7.0 build-8169922")
	if err != nil || v.RawFilters() || v.MultiplePoints() {
		t.Errorf("6.7: %+v %v", v, err)
	}
	if _, err := ParseVersion("Linux 6.1"); err == nil {
		t.Error("not ESXi, yet parsed")
	}
}

func inventory(t *testing.T) *Inventory {
	ports, err := ParseNetStats(sample(t, "net-stats-l.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return &Inventory{Host: "esxi01", Ports: ports}
}

func TestResolve(t *testing.T) {
	inv := inventory(t)
	if p, err := inv.VNIC("NSX Manager", "eth0"); err != nil || p.Num != 67108879 {
		t.Errorf("NSX Manager eth0: %+v %v", p, err)
	}
	if p, err := inv.VNIC("db.v2 (clone)", "eth0"); err != nil || p.Num != 67108880 {
		t.Errorf("db.v2 (clone): %+v %v", p, err)
	}
	errs := []struct {
		vm, vnic string
		want     []string
	}{
		{"nsx manager", "eth0", []string{`no VM "nsx manager" on esxi01`, `did you mean "NSX Manager"?`, `"app01" (eth0, eth1)`}},
		{"app1", "eth0", []string{`did you mean "app01"?`}},
		{"app01", "eth2", []string{`VM "app01" on esxi01 has no vNIC eth2; it has eth0, eth1`}},
	}
	for _, e := range errs {
		_, err := inv.VNIC(e.vm, e.vnic)
		for _, w := range e.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("VNIC(%q, %q): %v, want it to say %q", e.vm, e.vnic, err, w)
			}
		}
	}
	if p, err := inv.Uplink("vmnic2"); err != nil || p.Num != 50331650 {
		t.Errorf("vmnic2: %+v %v", p, err)
	}
	if _, err := inv.Uplink("vmnic9"); err == nil || !strings.Contains(err.Error(), "it has vmnic0, vmnic2, vmnic3") {
		t.Errorf("vmnic9: %v", err)
	}
	if _, err := inv.Vmk("vmk7"); err == nil || !strings.Contains(err.Error(), "vmk0, vmk1") {
		t.Errorf("vmk7: %v", err)
	}
	if _, err := inv.Switchport(1); err == nil || !strings.Contains(err.Error(), "67108879 (NSX Manager.eth0)") {
		t.Errorf("switchport 1: %v", err)
	}
}

func u8(v uint8) *uint8    { return &v }
func u16(v uint16) *uint16 { return &v }

var (
	v8   = Version{Major: 8, Minor: 0, Update: 2, Text: "VMware ESXi 8.0.2 build-22380479"}
	v6   = Version{Major: 6, Minor: 7, Text: "VMware ESXi 6.7.0 build-8169922"}
	ssh  = bpfgen.Conn{Client: netip.MustParseAddrPort("198.51.100.7:0"), Server: netip.MustParseAddrPort("192.0.2.50:22")}
	ssh6 = bpfgen.Conn{Client: netip.MustParseAddrPort("[2001:db8::7]:0"), Server: netip.MustParseAddrPort("[2001:db8::50]:22")}
)

func TestArgv(t *testing.T) {
	const out = "/vmfs/volumes/ds/Case_1/f.pcapng"
	cases := []struct {
		name string
		c    Capture
		v    Version
		want string
		note bool
	}{
		{"native filters only", Capture{Switchport: 67108879, Points: []string{"VnicTx", "VnicRx"}, Snaplen: 256, Filter: filter.Filter{IP: netip.MustParseAddr("192.0.2.10"), Proto: u8(1)}, Exclude: []bpfgen.Conn{ssh}}, v8,
			"pktcap-uw --switchport 67108879 --capture VnicTx,VnicRx -s 256 --ip 192.0.2.10 --proto 0x01 --ng -o " + out, false},
		{"udp port needs rcf", Capture{Uplink: "vmnic2", Points: []string{"UplinkRcvKernel"}, Filter: filter.Filter{UDPPort: u16(4789), SrcIP: netip.MustParsePrefix("10.0.0.0/8")}}, v8,
			"pktcap-uw --uplink vmnic2 --capture UplinkRcvKernel --srcip 10.0.0.0/8 --rcf ip and udp port 4789 --ng -o " + out, false},
		{"own ssh left out where the filter lets it through", Capture{Vmk: "vmk0", Dir: "inputAndOutput", Stage: "post", Count: 100, Exclude: []bpfgen.Conn{ssh}}, v8,
			"pktcap-uw --vmk vmk0 --dir 2 --stage 1 -c 100 --rcf not (tcp and ((src host 198.51.100.7 and dst host 192.0.2.50 and dst port 22) or (src host 192.0.2.50 and src port 22 and dst host 198.51.100.7))) --ng -o " + out, false},
		{"tcpport 22 catches ssh", Capture{Uplink: "vmnic0", Filter: filter.Filter{TCPPort: u16(22)}, Points: []string{"UplinkSndKernel"}, Exclude: []bpfgen.Conn{ssh}}, v8,
			"pktcap-uw --uplink vmnic0 --capture UplinkSndKernel --tcpport 22 --rcf not (tcp and ((src host 198.51.100.7 and dst host 192.0.2.50 and dst port 22) or (src host 192.0.2.50 and src port 22 and dst host 198.51.100.7))) --ng -o " + out, false},
		{"standalone point", Capture{Points: []string{"Drop"}}, v8, "pktcap-uw --capture Drop --ng -o " + out, false},
		{"own ssh over ipv6 left out", Capture{Vmk: "vmk0", Points: []string{"PortInput"}, Exclude: []bpfgen.Conn{ssh6}}, v8,
			"pktcap-uw --vmk vmk0 --capture PortInput --rcf not (tcp and ((src host 2001:db8::7 and dst host 2001:db8::50 and dst port 22) or (src host 2001:db8::50 and src port 22 and dst host 2001:db8::7))) --ng -o " + out, false},
		{"an ipv4 filter cannot let ssh over ipv6 in", Capture{Vmk: "vmk0", Points: []string{"PortInput"}, Filter: filter.Filter{IP: netip.MustParseAddr("192.0.2.10")}, Exclude: []bpfgen.Conn{ssh6}}, v8,
			"pktcap-uw --vmk vmk0 --capture PortInput --ip 192.0.2.10 --ng -o " + out, false},
		{"6.7 cannot leave ssh out: says so", Capture{Vmk: "vmk0", Points: []string{"PortInput"}, Exclude: []bpfgen.Conn{ssh}}, v6,
			"pktcap-uw --vmk vmk0 --capture PortInput --ng -o " + out, true},
	}
	for _, c := range cases {
		argv, note, err := Argv(c.c, out, c.v)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := strings.Join(argv, " "); got != c.want || (note != "") != c.note {
			t.Errorf("%s:\n got %s (note %q)\nwant %s (note %v)", c.name, got, note, c.want, c.note)
		}
	}
	bad := []struct {
		c    Capture
		v    Version
		want string
	}{
		{Capture{Switchport: 1, Points: []string{"VnicTx", "VnicRx"}}, v6, "one point per session"},
		{Capture{Vmk: "vmk0", Dir: "inputAndOutput"}, v6, "one direction per session"},
		{Capture{Uplink: "vmnic0", Points: []string{"UplinkRcv"}, Filter: filter.Filter{Port: u16(443)}}, v6, "no pcap-filter expressions"},
		{Capture{Uplink: "vmnic0", Vmk: "vmk0"}, v8, "one port"},
		{Capture{}, v8, "standalone points"},
	}
	for _, b := range bad {
		if _, _, err := Argv(b.c, out, b.v); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Argv(%+v): %v, want an error saying %q", b.c, err, b.want)
		}
	}
}

func FuzzParseNetStats(f *testing.F) {
	f.Add(sample(f, "net-stats-l.txt"))
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParseNetStats(s)
		if err == nil {
			for _, p := range ports {
				_, _ = p.VM(), p.VNIC()
			}
		}
	})
}

func FuzzParseVMList(f *testing.F) {
	f.Add(sample(f, "esxcli-vm-list.txt"))
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseVMList(s) })
}

func FuzzParseVMPorts(f *testing.F) {
	f.Add(sample(f, "esxcli-vm-port-list.txt"))
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseVMPorts(s) })
}

func FuzzParseTeamUplink(f *testing.F) {
	f.Add("vmnic0\n")
	f.Fuzz(func(t *testing.T, s string) {
		if u, err := ParseTeamUplink(s); err == nil && !uplinkName.MatchString(u) {
			t.Errorf("accepted %q", u)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add("VMware ESXi 8.0.2 build-22380479")
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseVersion(s) })
}
