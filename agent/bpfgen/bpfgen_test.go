package bpfgen

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/plans/filter"
)

var (
	macA = net.HardwareAddr{0x00, 0x50, 0x56, 0xaa, 0x00, 0x01}
	macB = net.HardwareAddr{0x00, 0x50, 0x56, 0xbb, 0x00, 0x02}
	macC = net.HardwareAddr{0x02, 0xcc, 0x00, 0x00, 0x00, 0x03}
)

type pkt struct {
	name string
	data []byte
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(src, dst net.HardwareAddr, t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: t}
}

func ip4hdr(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func udp(t testing.TB, src, dst string, sp, dp uint16, payload []byte) []byte {
	ip := ip4hdr(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	_ = u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(macA, macB, layers.EthernetTypeIPv4), ip, u, gopacket.Payload(payload))
}

func tcp(t testing.TB, src, dst string, sp, dp uint16) []byte {
	ip := ip4hdr(src, dst, layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), ACK: true, Window: 100}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(macB, macA, layers.EthernetTypeIPv4), ip, tc, gopacket.Payload("data"))
}

func vxlan(vni uint32) []byte {
	return []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0, 0xde, 0xad}
}

// corpus is a mixed stream: the filters under test must pick exactly their
// packets out of it.
func corpus(t testing.TB) []pkt {
	ps := []pkt{
		{"udp a->b 53", udp(t, "192.0.2.10", "198.51.100.20", 40000, 53, []byte("dns"))},
		{"udp b->a 53", udp(t, "198.51.100.20", "192.0.2.10", 53, 40000, []byte("dns"))},
		{"udp c->d 443", udp(t, "192.0.2.77", "203.0.113.5", 5353, 443, []byte("q"))},
		{"tcp a->b 443", tcp(t, "192.0.2.10", "198.51.100.20", 51000, 443)},
		{"tcp b->a 443", tcp(t, "198.51.100.20", "192.0.2.10", 443, 51000)},
		{"tcp x->y 8000", tcp(t, "10.1.2.3", "10.9.8.7", 33333, 8000)},
		{"ssh c->s", tcp(t, "198.18.0.1", "198.18.0.11", 50522, 22)},
		{"ssh s->c", tcp(t, "198.18.0.11", "198.18.0.1", 22, 50522)},
		{"ssh other client", tcp(t, "198.18.0.1", "198.18.0.11", 50523, 22)},
		{"ssh half-swapped", tcp(t, "198.18.0.1", "198.18.0.11", 22, 50522)},
		{"vxlan 5001", udp(t, "172.16.0.1", "172.16.0.2", 61000, 4789, vxlan(5001))},
		{"vxlan 5002", udp(t, "172.16.0.1", "172.16.0.2", 61000, 4789, vxlan(5002))},
		{"udp 4789 short", udp(t, "172.16.0.1", "172.16.0.2", 61000, 4789, []byte{8, 0})},
		{"icmp", serialize(t, eth(macA, macB, layers.EthernetTypeIPv4), ip4hdr("192.0.2.10", "198.51.100.20", layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}, gopacket.Payload("ping"))},
		{"gre", serialize(t, eth(macA, macB, layers.EthernetTypeIPv4), ip4hdr("192.0.2.10", "198.51.100.20", layers.IPProtocolGRE), gopacket.Payload("greeeeeeeeee"))},
		{"sctp 443", serialize(t, eth(macC, macA, layers.EthernetTypeIPv4), ip4hdr("192.0.2.10", "198.51.100.20", layers.IPProtocolSCTP),
			gopacket.Payload([]byte{0x01, 0xbb, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0}))},
		{"arp", serialize(t, eth(macA, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, layers.EthernetTypeARP), &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: macA, SourceProtAddress: net.ParseIP("192.0.2.10").To4(), DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP("192.0.2.1").To4()})},
		{"lldp", serialize(t, eth(macC, net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, layers.EthernetType(0x88cc)), gopacket.Payload("lldp-ish-payload"))},
		{"truncated ip", udp(t, "192.0.2.10", "198.51.100.20", 40000, 53, nil)[:20]},
		{"runt", []byte{1, 2, 3}},
	}
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	u6 := &layers.UDP{SrcPort: 40000, DstPort: 53}
	_ = u6.SetNetworkLayerForChecksum(ip6)
	ps = append(ps, pkt{"ipv6 udp 53", serialize(t, eth(macA, macB, layers.EthernetTypeIPv6), ip6, u6, gopacket.Payload("v6"))})
	// IPv4 with options (IHL 6): ports sit 4 bytes further.
	opt := ip4hdr("192.0.2.10", "198.51.100.20", layers.IPProtocolUDP)
	opt.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	u := &layers.UDP{SrcPort: 40000, DstPort: 53}
	_ = u.SetNetworkLayerForChecksum(opt)
	ps = append(ps, pkt{"udp with ip options", serialize(t, eth(macA, macB, layers.EthernetTypeIPv4), opt, u, gopacket.Payload("opts"))})
	// A non-first fragment whose bytes at the port offsets read 53.
	frag := ip4hdr("192.0.2.10", "198.51.100.20", layers.IPProtocolUDP)
	frag.FragOffset = 100
	ps = append(ps, pkt{"udp fragment", serialize(t, eth(macA, macB, layers.EthernetTypeIPv4), frag, gopacket.Payload([]byte{0, 53, 0, 53, 0, 0, 0, 0}))})
	return ps
}

func u16(v uint16) *uint16 { return &v }
func u8(v uint8) *uint8    { return &v }
func u32(v uint32) *uint32 { return &v }

func mac(hw net.HardwareAddr) filter.MAC { return filter.MAC(hw) }

// filters cover every structured key alone and in combination.
var filters = []struct {
	name string
	f    filter.Filter
	opt  Options
}{
	{"everything", filter.Filter{}, Options{}},
	{"ip", filter.Filter{IP: netip.MustParseAddr("192.0.2.10")}, Options{}},
	{"srcip host", filter.Filter{SrcIP: netip.MustParsePrefix("192.0.2.10/32")}, Options{}},
	{"dstip cidr", filter.Filter{DstIP: netip.MustParsePrefix("198.51.100.0/24")}, Options{}},
	{"srcip /0", filter.Filter{SrcIP: netip.MustParsePrefix("0.0.0.0/0")}, Options{}},
	{"srcip /8", filter.Filter{SrcIP: netip.MustParsePrefix("10.0.0.0/8")}, Options{}},
	{"proto icmp", filter.Filter{Proto: u8(1)}, Options{}},
	{"proto udp", filter.Filter{Proto: u8(17)}, Options{}},
	{"port 53", filter.Filter{Port: u16(53)}, Options{}},
	{"port 443 (tcp, udp, sctp)", filter.Filter{Port: u16(443)}, Options{}},
	{"srcport 53", filter.Filter{SrcPort: u16(53)}, Options{}},
	{"dstport 53", filter.Filter{DstPort: u16(53)}, Options{}},
	{"tcpport 443", filter.Filter{TCPPort: u16(443)}, Options{}},
	{"udpport 443", filter.Filter{UDPPort: u16(443)}, Options{}},
	{"vxlan 5001", filter.Filter{VXLAN: u32(5001)}, Options{}},
	{"mac", filter.Filter{MAC: mac(macA)}, Options{}},
	{"srcmac", filter.Filter{SrcMAC: mac(macC)}, Options{}},
	{"dstmac", filter.Filter{DstMAC: mac(macA)}, Options{}},
	{"ethtype arp", filter.Filter{EthType: u16(0x0806)}, Options{}},
	{"ethtype lldp", filter.Filter{EthType: u16(0x88cc)}, Options{}},
	{"ethtype ipv4 + proto", filter.Filter{EthType: u16(0x0800), Proto: u8(6)}, Options{}},
	{"ip + proto + port", filter.Filter{IP: netip.MustParseAddr("192.0.2.10"), Proto: u8(17), Port: u16(53)}, Options{}},
	{"srcip + dstport + mac", filter.Filter{SrcIP: netip.MustParsePrefix("192.0.2.0/24"), DstPort: u16(443), MAC: mac(macB)}, Options{}},
	{"KB: ip + icmp", filter.Filter{IP: netip.MustParseAddr("192.0.2.10"), Proto: u8(1)}, Options{}},
	{"snaplen 96", filter.Filter{Proto: u8(6)}, Options{Snaplen: 96}},
	{"exclude ssh", filter.Filter{}, Options{Exclude: []Conn{{netip.MustParseAddrPort("198.18.0.1:50522"), netip.MustParseAddrPort("198.18.0.11:22")}}}},
	{"tcp but not ssh", filter.Filter{Proto: u8(6)}, Options{Exclude: []Conn{{netip.MustParseAddrPort("198.18.0.1:50522"), netip.MustParseAddrPort("198.18.0.11:22")}}}},
}

// TestMatchesTcpdump runs each program and tcpdump's compilation of the same
// expression over the corpus: both must keep exactly the same packets.
func TestMatchesTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed; ./test.sh installs it")
	}
	packets := corpus(t)
	for _, fc := range filters {
		t.Run(fc.name, func(t *testing.T) {
			ours, err := Build(fc.f, fc.opt)
			if err != nil {
				t.Fatal(err)
			}
			expr := Expression(fc.f, fc.opt)
			args := []string{"-ddd", "-y", "EN10MB", "-s", fmt.Sprint(fc.opt.snap())}
			if expr != "" {
				args = append(args, "--", expr)
			}
			out, err := exec.CommandContext(context.Background(), tcpdump, args...).Output()
			if err != nil {
				t.Fatalf("tcpdump %v: %v", args, err)
			}
			raw, err := ParseDDD(out)
			if err != nil {
				t.Fatal(err)
			}
			theirs, ok := bpf.Disassemble(raw)
			if !ok {
				t.Fatalf("cannot disassemble tcpdump's program for %q", expr)
			}
			ourVM, err := bpf.NewVM(ours)
			if err != nil {
				t.Fatalf("our program does not verify: %v", err)
			}
			theirVM, err := bpf.NewVM(theirs)
			if err != nil {
				t.Fatalf("tcpdump's program: %v", err)
			}
			kept := 0
			for _, p := range packets {
				a, errA := ourVM.Run(p.data)
				b, errB := theirVM.Run(p.data)
				if errA != nil || errB != nil {
					t.Fatalf("%s: run: %v / %v", p.name, errA, errB)
				}
				if (a != 0) != (b != 0) || (a != 0 && a != b) {
					t.Errorf("%s: ours returns %d, tcpdump's %q returns %d", p.name, a, expr, b)
				}
				if a != 0 {
					kept++
				}
			}
			if fc.name != "everything" && kept == len(packets) {
				t.Errorf("filter %q keeps every packet of the corpus: the corpus does not test it", expr)
			}
			if kept == 0 {
				t.Errorf("filter %q keeps nothing of the corpus: the corpus does not test it", expr)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	if _, err := Build(filter.Filter{Expr: "tcp"}, Options{}); err == nil {
		t.Error("Build with a raw expr: want an error")
	}
	if _, err := Build(filter.Filter{MAC: mac(macA)}, Options{Layout: Cooked}); err == nil {
		t.Error("MAC filter on a cooked socket: want an error")
	}
	if _, err := Build(filter.Filter{}, Options{Exclude: []Conn{{netip.MustParseAddrPort("[::1]:5"), netip.MustParseAddrPort("[::1]:22")}}}); err == nil {
		t.Error("IPv6 exclusion: want an error")
	}
}

func TestExpression(t *testing.T) {
	cases := []struct {
		f    filter.Filter
		opt  Options
		want string
	}{
		{filter.Filter{}, Options{}, ""},
		{filter.Filter{}, Options{Direction: In}, "inbound"},
		{filter.Filter{IP: netip.MustParseAddr("192.0.2.10"), Proto: u8(1)}, Options{Direction: Out}, "outbound and (ip and host 192.0.2.10 and ip proto 1)"},
		{filter.Filter{VLAN: u16(100), UDPPort: u16(53), Expr: "not arp"}, Options{}, "vlan 100 and ip and udp port 53 and (not arp)"},
	}
	for _, c := range cases {
		if got := Expression(c.f, c.opt); got != c.want {
			t.Errorf("Expression(%v) = %q, want %q", c.f, got, c.want)
		}
	}
}

func FuzzParseDDD(f *testing.F) {
	f.Add([]byte("4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n"))
	f.Add([]byte("1\n6 0 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		prog, err := ParseDDD(b)
		if err == nil && len(prog) == 0 {
			t.Fatal("empty program without an error")
		}
	})
}
