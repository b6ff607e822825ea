// Package frames builds Ethernet frames for tests: a mixed corpus that
// every filter test picks its packets out of (TCP, UDP, SCTP, ICMP, GRE,
// ARP, LLDP, IPv6, VXLAN, fragments, IP options, VLAN tags, truncated frames,
// both directions of an SSH session, over IPv4 and IPv6).
package frames

import (
	"encoding/binary"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frame is one named test frame.
type Frame struct {
	Name string
	Data []byte
}

// MACs used by the corpus.
var (
	MACA = net.HardwareAddr{0x00, 0x50, 0x56, 0xaa, 0x00, 0x01}
	MACB = net.HardwareAddr{0x00, 0x50, 0x56, 0xbb, 0x00, 0x02}
	MACC = net.HardwareAddr{0x02, 0xcc, 0x00, 0x00, 0x00, 0x03}
)

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(src, dst net.HardwareAddr, t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: t}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

// UDP is an Ethernet/IPv4/UDP frame from MACA to MACB.
func UDP(src, dst string, sp, dp uint16, payload []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
	_ = u.SetNetworkLayerForChecksum(ip)
	return serialize(eth(MACA, MACB, layers.EthernetTypeIPv4), ip, u, gopacket.Payload(payload))
}

// TCP is an Ethernet/IPv4/TCP frame from MACB to MACA.
func TCP(src, dst string, sp, dp uint16) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), ACK: true, Window: 100}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return serialize(eth(MACB, MACA, layers.EthernetTypeIPv4), ip, tc, gopacket.Payload("data"))
}

// TCP6 is an Ethernet/IPv6/TCP frame from MACB to MACA.
func TCP6(src, dst string, sp, dp uint16) []byte {
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	tc := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), ACK: true, Window: 100}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return serialize(eth(MACB, MACA, layers.EthernetTypeIPv6), ip, tc, gopacket.Payload("data"))
}

// VXLAN is a VXLAN header with vni and a short inner payload.
func VXLAN(vni uint32) []byte {
	return []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0, 0xde, 0xad}
}

// Tag returns frame with an 802.1Q tag for vid inserted after the MACs.
func Tag(frame []byte, vid uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, 0x8100)
	out = binary.BigEndian.AppendUint16(out, vid)
	return append(out, frame[12:]...)
}

// Untag splits an inline 802.1Q frame into its VLAN id and the frame without
// the tag; ok is false for an untagged frame.
func Untag(frame []byte) (vid uint16, inner []byte, ok bool) {
	if len(frame) < 18 || binary.BigEndian.Uint16(frame[12:]) != 0x8100 {
		return 0, frame, false
	}
	inner = append(append([]byte(nil), frame[:12]...), frame[16:]...)
	return binary.BigEndian.Uint16(frame[14:]) & 0x0fff, inner, true
}

// Corpus is the mixed stream. With tagged, it also holds VLAN-tagged
// copies of some frames (the VM tests leave them out: x/net/bpf's VM cannot
// run the kernel's VLAN extensions).
func Corpus(tagged bool) []Frame {
	fs := []Frame{
		{"udp a->b 53", UDP("192.0.2.10", "198.51.100.20", 40000, 53, []byte("dns"))},
		{"udp b->a 53", UDP("198.51.100.20", "192.0.2.10", 53, 40000, []byte("dns"))},
		{"udp c->d 443", UDP("192.0.2.77", "203.0.113.5", 5353, 443, []byte("q"))},
		{"tcp a->b 443", TCP("192.0.2.10", "198.51.100.20", 51000, 443)},
		{"tcp b->a 443", TCP("198.51.100.20", "192.0.2.10", 443, 51000)},
		{"tcp x->y 8000", TCP("10.1.2.3", "10.9.8.7", 33333, 8000)},
		{"ssh c->s", TCP("198.18.0.1", "198.18.0.11", 50522, 22)},
		{"ssh s->c", TCP("198.18.0.11", "198.18.0.1", 22, 50522)},
		{"ssh other client", TCP("198.18.0.1", "198.18.0.11", 50523, 22)},
		{"ssh half-swapped", TCP("198.18.0.1", "198.18.0.11", 22, 50522)},
		{"vxlan 5001", UDP("172.16.0.1", "172.16.0.2", 61000, 4789, VXLAN(5001))},
		{"vxlan 5002", UDP("172.16.0.1", "172.16.0.2", 61000, 4789, VXLAN(5002))},
		{"udp 4789 short", UDP("172.16.0.1", "172.16.0.2", 61000, 4789, []byte{8, 0})},
		{"icmp", serialize(eth(MACA, MACB, layers.EthernetTypeIPv4), ip4("192.0.2.10", "198.51.100.20", layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}, gopacket.Payload("ping"))},
		{"gre", serialize(eth(MACA, MACB, layers.EthernetTypeIPv4), ip4("192.0.2.10", "198.51.100.20", layers.IPProtocolGRE), gopacket.Payload("greeeeeeeeee"))},
		{"sctp 443", serialize(eth(MACC, MACA, layers.EthernetTypeIPv4), ip4("192.0.2.10", "198.51.100.20", layers.IPProtocolSCTP),
			gopacket.Payload([]byte{0x01, 0xbb, 0x01, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0}))},
		{"arp", serialize(eth(MACA, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, layers.EthernetTypeARP), &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: MACA, SourceProtAddress: net.ParseIP("192.0.2.10").To4(), DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP("192.0.2.1").To4()})},
		{"lldp", serialize(eth(MACC, net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, layers.EthernetType(0x88cc)), gopacket.Payload("lldp-ish-payload"))},
		{"truncated ip", UDP("192.0.2.10", "198.51.100.20", 40000, 53, nil)[:20]},
	}
	ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, HopLimit: 64, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	u6 := &layers.UDP{SrcPort: 40000, DstPort: 53}
	_ = u6.SetNetworkLayerForChecksum(ip6)
	fs = append(fs, Frame{"ipv6 udp 53", serialize(eth(MACA, MACB, layers.EthernetTypeIPv6), ip6, u6, gopacket.Payload("v6"))},
		Frame{"ssh6 c->s", TCP6("2001:2::1", "2001:2::11", 50522, 22)},
		Frame{"ssh6 s->c", TCP6("2001:2::11", "2001:2::1", 22, 50522)},
		Frame{"ssh6 other client", TCP6("2001:2::1", "2001:2::11", 50523, 22)},
		Frame{"ssh6 half-swapped", TCP6("2001:2::1", "2001:2::11", 22, 50522)},
		Frame{"ssh6 other server", TCP6("2001:2::1", "2001:2::12", 50522, 22)},
		Frame{"tcp6 443", TCP6("2001:2::1", "2001:2::11", 50522, 443)},
	)
	// IPv4 with options (IHL 6): ports sit 4 bytes further.
	opt := ip4("192.0.2.10", "198.51.100.20", layers.IPProtocolUDP)
	opt.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	u := &layers.UDP{SrcPort: 40000, DstPort: 53}
	_ = u.SetNetworkLayerForChecksum(opt)
	fs = append(fs, Frame{"udp with ip options", serialize(eth(MACA, MACB, layers.EthernetTypeIPv4), opt, u, gopacket.Payload("opts"))})
	// A non-first fragment whose bytes at the port offsets read 53.
	frag := ip4("192.0.2.10", "198.51.100.20", layers.IPProtocolUDP)
	frag.FragOffset = 100
	fs = append(fs, Frame{"udp fragment", serialize(eth(MACA, MACB, layers.EthernetTypeIPv4), frag, gopacket.Payload([]byte{0, 53, 0, 53, 0, 0, 0, 0}))})
	if tagged {
		fs = append(fs,
			Frame{"vlan100 udp a->b 53", Tag(fs[0].Data, 100)},
			Frame{"vlan100 tcp a->b 443", Tag(fs[3].Data, 100)},
			Frame{"vlan200 udp a->b 53", Tag(fs[0].Data, 200)},
			Frame{"vlan100 arp", Tag(fs[16].Data, 100)},
		)
	}
	return fs
}
