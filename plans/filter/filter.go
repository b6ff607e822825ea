// Package filter is a capture's structured packet filter: the plan's filter
// keys as plain values, shown in the plan's own words (String) and in
// pcap-filter syntax (Expression), the form tcpdump, Wireshark's if_filter
// and pktcap-uw's --rcf understand. It is a leaf package: the plan decoder,
// the orchestrator and the capture agent share it without pulling each other in.
package filter

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Filter is a structured packet filter; zero fields match everything. All
// set fields must match (AND). Address, protocol and port fields match IPv4.
type Filter struct {
	IP      netip.Addr   `json:"ip,omitzero"`
	SrcIP   netip.Prefix `json:"srcip,omitzero"`
	DstIP   netip.Prefix `json:"dstip,omitzero"`
	MAC     MAC          `json:"mac,omitzero"`
	SrcMAC  MAC          `json:"srcmac,omitzero"`
	DstMAC  MAC          `json:"dstmac,omitzero"`
	EthType *uint16      `json:"ethtype,omitempty"`
	VLAN    *uint16      `json:"vlan,omitempty"`
	Proto   *uint8       `json:"proto,omitempty"`
	Port    *uint16      `json:"port,omitempty"`
	SrcPort *uint16      `json:"srcport,omitempty"`
	DstPort *uint16      `json:"dstport,omitempty"`
	TCPPort *uint16      `json:"tcpport,omitempty"`
	UDPPort *uint16      `json:"udpport,omitempty"`
	VXLAN   *uint32      `json:"vxlan,omitempty"`
	Expr    string       `json:"expr,omitempty"`
}

// VXLANPort is the IANA VXLAN UDP port, where vxlan filters look.
const VXLANPort = 4789

// Protocols are the IP protocol names filters accept and print.
var Protocols = map[string]uint8{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
	"ospf": 89, "pim": 103, "vrrp": 112, "sctp": 132,
}

// ProtoName names an IP protocol number, or prints the number.
func ProtoName(p uint8) string {
	for name, n := range Protocols {
		if n == p {
			return name
		}
	}
	return strconv.Itoa(int(p))
}

// IsZero reports whether the filter matches everything.
func (f Filter) IsZero() bool { return f.String() == "" }

// NeedsIPv4 reports whether any field looks inside an IPv4 header.
func (f Filter) NeedsIPv4() bool {
	return f.IP.IsValid() || f.SrcIP.IsValid() || f.DstIP.IsValid() || f.Proto != nil || f.NeedsL4()
}

// NeedsL4 reports whether any field looks at TCP/UDP ports or VXLAN.
func (f Filter) NeedsL4() bool {
	return f.Port != nil || f.SrcPort != nil || f.DstPort != nil || f.TCPPort != nil || f.UDPPort != nil || f.VXLAN != nil
}

// NeedsMAC reports whether any field looks at Ethernet addresses.
func (f Filter) NeedsMAC() bool { return !f.MAC.IsZero() || !f.SrcMAC.IsZero() || !f.DstMAC.IsZero() }

// String is the filter in the plan's own words: "ip=192.0.2.10 proto=icmp".
func (f Filter) String() string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if f.IP.IsValid() {
		add("ip", f.IP.String())
	}
	if f.SrcIP.IsValid() {
		add("srcip", prefixString(f.SrcIP))
	}
	if f.DstIP.IsValid() {
		add("dstip", prefixString(f.DstIP))
	}
	for _, m := range []struct {
		k string
		v MAC
	}{{"mac", f.MAC}, {"srcmac", f.SrcMAC}, {"dstmac", f.DstMAC}} {
		if !m.v.IsZero() {
			add(m.k, m.v.String())
		}
	}
	if f.EthType != nil {
		add("ethtype", fmt.Sprintf("0x%04x", *f.EthType))
	}
	if f.VLAN != nil {
		add("vlan", strconv.Itoa(int(*f.VLAN)))
	}
	if f.Proto != nil {
		add("proto", ProtoName(*f.Proto))
	}
	for _, p := range f.ports() {
		add(p.key, strconv.Itoa(int(*p.val)))
	}
	if f.VXLAN != nil {
		add("vxlan", strconv.FormatUint(uint64(*f.VXLAN), 10))
	}
	if f.Expr != "" {
		add("expr", strconv.Quote(f.Expr))
	}
	return strings.Join(parts, " ")
}

type portField struct {
	key string
	val *uint16
}

func (f Filter) ports() []portField {
	var out []portField
	for _, p := range []portField{{"port", f.Port}, {"srcport", f.SrcPort}, {"dstport", f.DstPort}, {"tcpport", f.TCPPort}, {"udpport", f.UDPPort}} {
		if p.val != nil {
			out = append(out, p)
		}
	}
	return out
}

// Expression is the filter in pcap-filter syntax, with the same meaning as
// the BPF program the agent builds from it: every field ANDed, address,
// protocol and port fields on IPv4 only, ports never on IP fragments. The
// raw expr, if any, is ANDed last. Empty for a filter that matches everything.
func (f Filter) Expression() string {
	var terms []string
	add := func(format string, args ...any) { terms = append(terms, fmt.Sprintf(format, args...)) }
	if f.VLAN != nil {
		add("vlan %d", *f.VLAN) // first: in pcap-filter, vlan shifts what follows
	}
	if !f.MAC.IsZero() {
		add("ether host %s", f.MAC)
	}
	if !f.SrcMAC.IsZero() {
		add("ether src %s", f.SrcMAC)
	}
	if !f.DstMAC.IsZero() {
		add("ether dst %s", f.DstMAC)
	}
	if f.EthType != nil {
		add("ether proto 0x%04x", *f.EthType)
	}
	if f.NeedsIPv4() {
		add("ip")
	}
	if f.IP.IsValid() {
		add("host %s", f.IP)
	}
	if f.SrcIP.IsValid() {
		add("src net %s", f.SrcIP)
	}
	if f.DstIP.IsValid() {
		add("dst net %s", f.DstIP)
	}
	if f.Proto != nil {
		add("ip proto %d", *f.Proto)
	}
	if f.Port != nil {
		add("port %d", *f.Port)
	}
	if f.SrcPort != nil {
		add("src port %d", *f.SrcPort)
	}
	if f.DstPort != nil {
		add("dst port %d", *f.DstPort)
	}
	if f.TCPPort != nil {
		add("tcp port %d", *f.TCPPort)
	}
	if f.UDPPort != nil {
		add("udp port %d", *f.UDPPort)
	}
	if f.VXLAN != nil {
		add("udp dst port %d and udp[12:4] >> 8 = %d", VXLANPort, *f.VXLAN)
	}
	if f.Expr != "" {
		add("(%s)", f.Expr)
	}
	return strings.Join(terms, " and ")
}

// prefixString shows a /32 as a plain address.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// MAC is a 6-byte Ethernet address that is comparable and JSON-friendly.
type MAC [6]byte

// ParseMAC reads aa:bb:cc:dd:ee:ff (or the other forms net.ParseMAC takes).
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("want a MAC address such as 00:50:56:aa:bb:cc, got %q", s)
	}
	return MAC(hw), nil
}

// IsZero reports whether the MAC is unset.
func (m MAC) IsZero() bool { return m == MAC{} }

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// MarshalText prints aa:bb:cc:dd:ee:ff in JSON.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	*m = v
	return err
}
