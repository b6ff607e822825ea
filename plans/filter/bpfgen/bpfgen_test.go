package bpfgen

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/internal/lab/ciskip"
	"github.com/casecap/casecap/internal/lab/frames"
	"github.com/casecap/casecap/plans/filter"
)

var (
	macA = frames.MACA
	macB = frames.MACB
	macC = frames.MACC
)

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
	{"exclude every ssh from a client", filter.Filter{}, Options{Exclude: []Conn{{netip.MustParseAddrPort("198.18.0.1:0"), netip.MustParseAddrPort("198.18.0.11:22")}}}},
	{"tcp but not ssh", filter.Filter{Proto: u8(6)}, Options{Exclude: []Conn{{netip.MustParseAddrPort("198.18.0.1:50522"), netip.MustParseAddrPort("198.18.0.11:22")}}}},
	{"exclude ssh over ipv6", filter.Filter{}, Options{Exclude: []Conn{{netip.MustParseAddrPort("[2001:2::1]:50522"), netip.MustParseAddrPort("[2001:2::11]:22")}}}},
	{"exclude every ssh from an ipv6 client", filter.Filter{}, Options{Exclude: []Conn{{netip.MustParseAddrPort("[2001:2::1]:0"), netip.MustParseAddrPort("[2001:2::11]:22")}}}},
	{"exclude ssh over both", filter.Filter{}, Options{Exclude: []Conn{
		{netip.MustParseAddrPort("198.18.0.1:0"), netip.MustParseAddrPort("198.18.0.11:22")},
		{netip.MustParseAddrPort("[2001:2::1]:0"), netip.MustParseAddrPort("[2001:2::11]:22")}}}},
}

// TestMatchesTcpdump runs each program and tcpdump's compilation of the same
// expression over the corpus: both must keep exactly the same packets.
func TestMatchesTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		ciskip.Skipf(t, "tcpdump is not installed; ./test.sh installs it")
	}
	packets := frames.Corpus(false)
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
				a, errA := ourVM.Run(p.Data)
				b, errB := theirVM.Run(p.Data)
				if errA != nil || errB != nil {
					t.Fatalf("%s: run: %v / %v", p.Name, errA, errB)
				}
				if (a != 0) != (b != 0) || (a != 0 && a != b) {
					t.Errorf("%s: ours returns %d, tcpdump's %q returns %d", p.Name, a, expr, b)
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
	if _, err := Build(filter.Filter{}, Options{Exclude: []Conn{{netip.MustParseAddrPort("192.0.2.1:5"), netip.MustParseAddrPort("[::1]:22")}}}); err == nil {
		t.Error("an exclusion with one IPv4 and one IPv6 end: want an error")
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
