package packetkey

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0, 0x50, 0x56, 1, 2, 3}
	macB = net.HardwareAddr{0, 0x50, 0x56, 4, 5, 6}
	ipA  = net.IP{198, 18, 0, 11}
	ipB  = net.IP{198, 18, 0, 12}
)

// frame serializes layers, lengths and checksums computed.
func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

type udpPacket struct {
	ttl, tos uint8
	id       uint16
	vlan     bool
	macs     [2]net.HardwareAddr
	payload  []byte
}

// udpFrame is a numbered UDP datagram from A to B, as seen at one point.
func udpFrame(t testing.TB, u udpPacket) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: u.ttl, TOS: u.tos, Id: u.id, Protocol: layers.IPProtocolUDP, SrcIP: ipA, DstIP: ipB, Flags: layers.IPv4DontFragment}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	udp.SetNetworkLayerForChecksum(ip)
	eth := &layers.Ethernet{SrcMAC: u.macs[0], DstMAC: u.macs[1], EthernetType: layers.EthernetTypeIPv4}
	if u.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		return frame(t, eth, &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, udp, gopacket.Payload(u.payload))
	}
	return frame(t, eth, ip, udp, gopacket.Payload(u.payload))
}

// TestSamePacketAcrossTheNetwork: what a hop changes (TTL, DSCP/ECN,
// checksums, MAC addresses, a VLAN tag) leaves the key as it was; what
// makes another packet (its IP ID, its payload) changes it.
func TestSamePacketAcrossTheNetwork(t *testing.T) {
	var d Decoder
	payload := []byte("casecap seq 0000001 and some more bytes of payload")
	base := udpPacket{ttl: 64, id: 7, macs: [2]net.HardwareAddr{macA, macB}, payload: payload}
	p, ok := d.Decode(layers.LinkTypeEthernet, udpFrame(t, base))
	if !ok {
		t.Fatal("not decoded")
	}
	want := Flow{Src: netip.MustParseAddr("198.18.0.11"), Dst: netip.MustParseAddr("198.18.0.12"), Proto: 17, SrcPort: 40000, DstPort: 9999}
	if p.Key.Flow != want || p.Key.IPID != 7 || p.Key.Len != uint32(len(payload)) || p.Data || p.IPLen != 20+8+len(payload) {
		t.Fatalf("decoded %+v", p)
	}
	for name, other := range map[string]udpPacket{
		"after a router (TTL, MACs)": {ttl: 63, id: 7, macs: [2]net.HardwareAddr{macB, macA}, payload: payload},
		"re-marked (DSCP, ECN)":      {ttl: 64, tos: 0xb8 | 1, id: 7, macs: base.macs, payload: payload},
		"on a VLAN":                  {ttl: 64, id: 7, vlan: true, macs: base.macs, payload: payload},
	} {
		q, ok := d.Decode(layers.LinkTypeEthernet, udpFrame(t, other))
		if !ok || q.Key != p.Key {
			t.Errorf("%s: key %+v, want %+v", name, q.Key, p.Key)
		}
	}
	for name, other := range map[string]udpPacket{
		"another IP ID":   {ttl: 64, id: 8, macs: base.macs, payload: payload},
		"another payload": {ttl: 64, id: 7, macs: base.macs, payload: []byte("casecap seq 0000002 and some more bytes of payload")},
	} {
		if q, _ := d.Decode(layers.LinkTypeEthernet, udpFrame(t, other)); q.Key == p.Key {
			t.Errorf("%s: the same key", name)
		}
	}
	// Cut by a snaplen: the lengths come from the headers.
	full := udpFrame(t, base)
	if q, ok := d.Decode(layers.LinkTypeEthernet, full[:14+20+8+40]); !ok || q.Key != p.Key {
		t.Errorf("cut to 82 bytes: %+v, want %+v", q.Key, p.Key)
	}
}

// vxlan wraps an inner Ethernet frame in VXLAN over UDP 4789 between two
// hosts' underlay addresses.
func vxlan(t testing.TB, vni uint32, inner []byte) []byte {
	outerIP := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 999, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 19, 0, 1}, DstIP: net.IP{198, 19, 0, 2}}
	udp := &layers.UDP{SrcPort: 51000, DstPort: 4789}
	udp.SetNetworkLayerForChecksum(outerIP)
	return frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, outerIP, udp,
		&layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
}

// geneve wraps an inner Ethernet frame in Geneve over UDP 6081, with one
// option (gopacket does not write Geneve: the header is made by hand).
func geneve(t testing.TB, vni uint32, inner []byte) []byte {
	h := []byte{0x01, 0x00, 0x65, 0x58, 0, 0, 0, 0, // version 0, 1 word of options; protocol: Ethernet
		0x01, 0x02, 0x03, 0x01, 0xde, 0xad, 0xbe, 0xef} // an option: class 0x0102, type 3, 1 word
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	outerIP := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 1000, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 19, 0, 1}, DstIP: net.IP{198, 19, 0, 2}}
	udp := &layers.UDP{SrcPort: 51001, DstPort: 6081}
	udp.SetNetworkLayerForChecksum(outerIP)
	return frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, outerIP, udp, gopacket.Payload(append(h, inner...)))
}

// TestTunnelsTakenOff: an uplink's capture of overlay traffic (VXLAN,
// Geneve) names the packets the vNIC's capture names, and says which
// tunnel carried them.
func TestTunnelsTakenOff(t *testing.T) {
	var d Decoder
	inner := udpFrame(t, udpPacket{ttl: 64, id: 42, macs: [2]net.HardwareAddr{macA, macB}, payload: []byte("overlay payload, the same at the vNIC")})
	plain, _ := d.Decode(layers.LinkTypeEthernet, inner)
	for name, f := range map[string][]byte{"vxlan": vxlan(t, 5001, inner), "geneve": geneve(t, 5001, inner)} {
		p, ok := d.Decode(layers.LinkTypeEthernet, f)
		if !ok || p.Key != plain.Key {
			t.Errorf("%s: key %+v, want the inner packet's %+v", name, p.Key, plain.Key)
			continue
		}
		if len(p.Tunnels) != 1 || p.Tunnels[0].Kind != name || p.Tunnels[0].VNI != 5001 || p.Tunnels[0].Outer.Dst != netip.MustParseAddr("198.19.0.2") {
			t.Errorf("%s: tunnels %+v", name, p.Tunnels)
		}
	}
	// VXLAN in VXLAN: both taken off, outermost first.
	p, ok := d.Decode(layers.LinkTypeEthernet, vxlan(t, 1, vxlan(t, 2, inner)))
	if !ok || p.Key != plain.Key || len(p.Tunnels) != 2 || p.Tunnels[0].VNI != 1 || p.Tunnels[1].VNI != 2 {
		t.Errorf("nested: %+v %+v", p.Key, p.Tunnels)
	}
}

// tcpFrame is a TCP segment from A to B carrying n bytes from seq.
func tcpFrame(t testing.TB, id uint16, seq uint32, n int, syn, fin bool) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolTCP, SrcIP: ipA, DstIP: ipB, Flags: layers.IPv4DontFragment}
	tcp := &layers.TCP{SrcPort: 50000, DstPort: 443, Seq: seq, Ack: 77, ACK: true, SYN: syn, FIN: fin, Window: 512}
	tcp.SetNetworkLayerForChecksum(ip)
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(int(seq) + i)
	}
	return frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, tcp, gopacket.Payload(data))
}

// TestTCPByByteRange: a large segment before segmentation offload (at a
// vNIC) and the MSS-sized segments after it (on the wire, each with its
// own IP ID) name the same bytes; a segment without data is named by its
// key, SYN and FIN taking one sequence number each.
func TestTCPByByteRange(t *testing.T) {
	var d Decoder
	big, ok := d.Decode(layers.LinkTypeEthernet, tcpFrame(t, 100, 1000, 4000, false, false))
	if !ok || !big.Data {
		t.Fatalf("the large segment: %+v", big)
	}
	flow, seq, end := big.Range()
	if seq != 1000 || end != 5000 || flow.SrcPort != 50000 || big.Key.IPID != 0 {
		t.Errorf("the large segment: %+v [%d, %d)", flow, seq, end)
	}
	at := uint32(1000)
	for i, n := range []int{1448, 1448, 1104} {
		p, ok := d.Decode(layers.LinkTypeEthernet, tcpFrame(t, uint16(100+i), at, n, false, false))
		f, s, e := p.Range()
		if !ok || !p.Data || f != flow || s != at || e != at+uint32(n) || p.Key.IPID != 0 || p.Key.Hash != 0 {
			t.Errorf("wire segment %d: %+v [%d, %d)", i, p.Key, s, e)
		}
		at += uint32(n)
	}
	if at != end {
		t.Errorf("the wire segments end at %d, the large one at %d", at, end)
	}
	syn, _ := d.Decode(layers.LinkTypeEthernet, tcpFrame(t, 1, 999, 0, true, false))
	if syn.Data || syn.Key.Len != 1 || syn.Key.IPID != 1 || syn.Key.Flags&flagSYN == 0 {
		t.Errorf("a SYN: %+v", syn)
	}
	ack1, _ := d.Decode(layers.LinkTypeEthernet, tcpFrame(t, 5, 5000, 0, false, false))
	ack2, _ := d.Decode(layers.LinkTypeEthernet, tcpFrame(t, 6, 5000, 0, false, false))
	if ack1.Data || ack1.Key == ack2.Key {
		t.Errorf("two pure ACKs with their own IP IDs: %+v %+v", ack1.Key, ack2.Key)
	}
}

// TestIPv6Fragments: IPv6 (its extension headers skipped to the transport
// header), IPv4 fragments (each named by ID and offset), Linux cooked
// captures, and what is not IP.
func TestIPv6Fragments(t *testing.T) {
	var d Decoder
	src, dst := net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Destination, SrcIP: src, DstIP: dst, TrafficClass: 0x28}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	udp.SetNetworkLayerForChecksum(ip6)
	dopts := []byte{byte(layers.IPProtocolUDP), 0, 1, 4, 0, 0, 0, 0} // destination options: PadN
	f := frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}, ip6, gopacket.Payload(dopts))
	u := frame(t, udp, gopacket.Payload("v6 payload"))
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	f = append(f, u...)
	binary.BigEndian.PutUint16(f[14+4:], uint16(len(dopts)+len(u)))
	p, ok := d.Decode(layers.LinkTypeEthernet, f)
	if !ok || p.Key.Flow.Proto != 17 || p.Key.Flow.DstPort != 2 || p.Key.Len != 10 || p.Key.Flow.Src != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("IPv6 with destination options: %+v", p.Key)
	}

	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 9, Protocol: layers.IPProtocolUDP, SrcIP: ipA, DstIP: ipB, Flags: layers.IPv4MoreFragments}
	first := frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, gopacket.Payload(make([]byte, 64)))
	ip.Flags, ip.FragOffset = 0, 8
	later := frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip, gopacket.Payload(make([]byte, 64)))
	a, ok1 := d.Decode(layers.LinkTypeEthernet, first)
	b, ok2 := d.Decode(layers.LinkTypeEthernet, later)
	if !ok1 || !ok2 || a.Key == b.Key || a.Key.IPID != 9 || b.Key.FragOff != 8 || a.Key.FragOff != 1<<13 {
		t.Errorf("fragments: %+v %+v", a.Key, b.Key)
	}

	// A Linux cooked header (gopacket does not write one): incoming, from
	// an Ethernet address, IPv4.
	sll := []byte{0, 0, 0, 1, 0, 6, 0, 0x50, 0x56, 1, 2, 3, 0, 0, 0x08, 0x00}
	sll = append(sll, udpFrame(t, udpPacket{ttl: 64, id: 7, macs: [2]net.HardwareAddr{macA, macB}, payload: []byte("cooked")})[14:]...)
	if p, ok := d.Decode(layers.LinkTypeLinuxSLL, sll); !ok || p.Key.IPID != 7 || p.Key.Len != 6 {
		t.Errorf("a Linux cooked frame: %+v %v", p.Key, ok)
	}
	arp := frame(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: 1, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB})
	if _, ok := d.Decode(layers.LinkTypeEthernet, arp); ok {
		t.Error("ARP was taken for an IP packet")
	}
}

// FuzzDecode: any bytes, any link type: no panic, no endless loop, and a
// decoded packet's tunnels are bounded.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(1), udpFrame(f, udpPacket{ttl: 64, id: 1, macs: [2]net.HardwareAddr{macA, macB}, payload: []byte("seed")}))
	f.Add(uint8(1), vxlan(f, 3, udpFrame(f, udpPacket{ttl: 64, id: 1, macs: [2]net.HardwareAddr{macA, macB}, payload: []byte("seed")})))
	f.Add(uint8(1), geneve(f, 3, tcpFrame(f, 1, 1, 10, false, true)))
	f.Add(uint8(113), []byte{0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd})
	f.Add(uint8(101), []byte{0x60, 0, 0, 0, 0, 0, 0, 64})
	f.Fuzz(func(t *testing.T, link uint8, b []byte) {
		var d Decoder
		p, ok := d.Decode(layers.LinkType(link), b)
		if ok && len(p.Tunnels) > maxLayers {
			t.Errorf("%d tunnels", len(p.Tunnels))
		}
	})
}

// BenchmarkDecode: a TCP segment in VXLAN, as an uplink sees overlay
// traffic; no allocation per packet.
func BenchmarkDecode(b *testing.B) {
	f := vxlan(b, 7, tcpFrame(b, 1, 1000, 1448, false, false))
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		if _, ok := d.Decode(layers.LinkTypeEthernet, f); !ok {
			b.Fatal("not decoded")
		}
	}
}
