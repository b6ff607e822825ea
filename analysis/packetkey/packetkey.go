// Package packetkey says which packet a captured frame is, by what does
// not change on the way between capture points, so that analyze can find
// the same packet at every point that saw it. Kept: addresses, protocol,
// ports, the IPv4 ID, TCP sequence and acknowledgement numbers and flags,
// and a hash of the start of the payload. Ignored: TTL and hop limit,
// checksums, DSCP and ECN, MAC addresses, VLAN tags. Tunnels are taken off
// first (VXLAN on UDP 4789, Geneve on UDP 6081), so that an uplink's
// capture of overlay traffic names the packets the vNIC's capture names.
// TCP segments that carry data are named by the byte range they carry, so
// that one large segment before segmentation offload and the MSS-sized
// segments after it are the same bytes.
package packetkey

import (
	"hash/maphash"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Flow is a packet's five-tuple (the innermost one, past any tunnel).
type Flow struct {
	Src, Dst         netip.Addr
	Proto            uint8 // IP protocol number
	SrcPort, DstPort uint16
}

// Key names a packet exactly: two frames with equal keys are the same
// packet (or a repeat of it: a retransmission, a duplicate).
type Key struct {
	Flow    Flow
	IPID    uint16 // IPv4; 0 for IPv6
	FragOff uint16 // IPv4 fragment offset (8-byte units) and more-fragments bit
	Seq     uint32 // TCP
	Ack     uint32 // TCP
	Flags   uint8  // TCP: FIN SYN RST PSH ACK URG
	Len     uint32 // payload length past the transport header (or the IP payload's, for others)
	Hash    uint64 // of the first HashBytes of that payload
}

// HashBytes is how much of a payload's start goes into Key.Hash (less
// where the capture's snaplen cut it: captures of one path should keep at
// least the headers and this much).
const HashBytes = 32

// Tunnel is a tunnel taken off a packet.
type Tunnel struct {
	Kind  string // "vxlan" or "geneve"
	VNI   uint32
	Outer Flow // the underlay's five-tuple
}

// Packet is what a frame was decoded to.
type Packet struct {
	Key Key
	// Data says the packet is a TCP segment that carries data: it is
	// named by its byte range, [Key.Seq, Key.Seq+Key.Len) of its flow,
	// rather than by Key alone (see Range).
	Data bool
	// Tunnels taken off, outermost first (most packets: none).
	Tunnels []Tunnel
	// IPLen is the innermost IP packet's length (header included).
	IPLen int
}

// Range is a TCP data segment's byte range in its flow's sequence space.
func (p *Packet) Range() (flow Flow, seq, end uint32) {
	return p.Key.Flow, p.Key.Seq, p.Key.Seq + p.Key.Len
}

var seed = maphash.MakeSeed()

// Decoder decodes frames; it reuses its layers, so one Decoder serves one
// goroutine, and a Packet's Tunnels are valid until its next Decode.
type Decoder struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	ip4   layers.IPv4
	ip6   layers.IPv6
	tcp   layers.TCP
	udp   layers.UDP
	vxlan layers.VXLAN
	gen   layers.Geneve
	tun   []Tunnel
}

// maxLayers bounds the layers a frame may stack (tunnels in tunnels):
// malformed input must not loop.
const maxLayers = 16

// Decode decodes a frame of the link type; ok is false for a frame that is
// not IP (ARP, LLDP...) or too short to say which packet it is.
func (d *Decoder) Decode(link layers.LinkType, frame []byte) (p Packet, ok bool) {
	var typ gopacket.LayerType
	switch link {
	case layers.LinkTypeEthernet:
		typ = layers.LayerTypeEthernet
	case layers.LinkTypeLinuxSLL:
		typ = layers.LayerTypeLinuxSLL
	case layers.LinkTypeRaw, layers.LinkTypeIPv4:
		typ = ipVersion(frame)
	case layers.LinkTypeIPv6:
		typ = layers.LayerTypeIPv6
	default:
		return p, false
	}
	d.tun = d.tun[:0]
	data := frame
	var inner Flow // the last IP packet's addresses and protocol
	haveIP := false
	declared := 0 // the IP payload's length as its header says (the capture may hold less)
	for range maxLayers {
		switch typ {
		case layers.LayerTypeEthernet:
			if d.eth.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			typ, data = d.eth.NextLayerType(), d.eth.Payload
		case layers.LayerTypeDot1Q:
			if d.dot1q.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			typ, data = d.dot1q.NextLayerType(), d.dot1q.Payload
		case layers.LayerTypeLinuxSLL:
			if d.sll.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			typ, data = d.sll.NextLayerType(), d.sll.Payload
		case layers.LayerTypeIPv4:
			if d.ip4.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			ip := &d.ip4
			src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
			dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
			inner, haveIP = Flow{Src: src, Dst: dst, Proto: uint8(ip.Protocol)}, true
			p = Packet{Key: Key{Flow: inner, IPID: ip.Id, FragOff: ip.FragOffset | uint16(ip.Flags&layers.IPv4MoreFragments)<<13}, IPLen: int(ip.Length)}
			declared = int(ip.Length) - int(ip.IHL)*4
			if ip.FragOffset != 0 {
				// A later fragment: no transport header; its bytes say
				// which packet it is with the ID and offset.
				return p.payload(ip.Payload, declared).withTunnels(d), true
			}
			typ, data = ip.NextLayerType(), ip.Payload
			if ip.Flags&layers.IPv4MoreFragments != 0 {
				typ = gopacket.LayerTypeFragment
			}
		case layers.LayerTypeIPv6:
			if d.ip6.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			ip := &d.ip6
			src, _ := netip.AddrFromSlice(ip.SrcIP.To16())
			dst, _ := netip.AddrFromSlice(ip.DstIP.To16())
			next, payload := ip.NextHeader, ip.Payload
			declared = int(ip.Length)
			if ip.HopByHop != nil {
				// gopacket takes a hop-by-hop header off the payload
				// itself (it may hold a jumbogram's length).
				next, declared = ip.HopByHop.NextHeader, len(ip.Payload)
			}
			// The other extension headers, to the transport header.
			n := len(payload)
			next, payload = skipIPv6Extensions(next, payload)
			declared -= n - len(payload)
			inner, haveIP = Flow{Src: src, Dst: dst, Proto: uint8(next)}, true
			p = Packet{Key: Key{Flow: inner}, IPLen: int(ip.Length) + 40}
			switch next {
			case layers.IPProtocolTCP:
				typ = layers.LayerTypeTCP
			case layers.IPProtocolUDP:
				typ = layers.LayerTypeUDP
			default:
				typ = gopacket.LayerTypePayload
			}
			data = payload
		case layers.LayerTypeTCP:
			if d.tcp.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			t := &d.tcp
			p.Key.Flow.SrcPort, p.Key.Flow.DstPort = uint16(t.SrcPort), uint16(t.DstPort)
			p.Key.Seq, p.Key.Ack, p.Key.Flags = t.Seq, t.Ack, tcpFlags(t)
			n := declared - int(t.DataOffset)*4
			p = p.payload(t.Payload, n)
			p.Data = n > 0
			if p.Data {
				// Named by its byte range: the IP ID changes when the
				// segment is cut in pieces (each piece its own ID), and
				// the hash of a piece's start is another piece's.
				p.Key.IPID, p.Key.Hash = 0, 0
			}
			return p.withTunnels(d), true
		case layers.LayerTypeUDP:
			if d.udp.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
				return p, false
			}
			u := &d.udp
			p.Key.Flow.SrcPort, p.Key.Flow.DstPort = uint16(u.SrcPort), uint16(u.DstPort)
			switch u.DstPort {
			case 4789:
				if d.vxlan.DecodeFromBytes(u.Payload, gopacket.NilDecodeFeedback) == nil && d.vxlan.ValidIDFlag {
					d.tun = append(d.tun, Tunnel{Kind: "vxlan", VNI: d.vxlan.VNI, Outer: p.Key.Flow})
					typ, data = layers.LayerTypeEthernet, d.vxlan.Payload
					continue
				}
			case 6081:
				if d.gen.DecodeFromBytes(u.Payload, gopacket.NilDecodeFeedback) == nil {
					d.tun = append(d.tun, Tunnel{Kind: "geneve", VNI: d.gen.VNI, Outer: p.Key.Flow})
					typ, data = d.gen.NextLayerType(), d.gen.Payload
					continue
				}
			}
			n := int(u.Length) - 8
			if u.Length == 0 {
				n = declared - 8 // a jumbogram, or a large UDP segment before segmentation offload
			}
			return p.payload(u.Payload, n).withTunnels(d), true
		default:
			// ICMP, a first fragment, any other protocol: named by the IP
			// packet's addresses, ID and the start of its payload.
			if !haveIP {
				return p, false
			}
			return p.payload(data, declared).withTunnels(d), true
		}
	}
	return p, false
}

// payload fills in the payload's length (n, as the headers say: the
// capture may hold less of it) and the hash of its start.
func (p Packet) payload(b []byte, n int) Packet {
	p.Key.Len = uint32(max(n, 0))
	if p.Key.Flow.Proto == uint8(layers.IPProtocolTCP) {
		if p.Key.Flags&flagSYN != 0 {
			p.Key.Len++ // SYN and FIN take a sequence number each
		}
		if p.Key.Flags&flagFIN != 0 {
			p.Key.Len++
		}
	}
	p.Key.Hash = maphash.Bytes(seed, b[:min(len(b), HashBytes)])
	return p
}

func (p Packet) withTunnels(d *Decoder) Packet {
	if len(d.tun) > 0 {
		p.Tunnels = d.tun
	}
	return p
}

// TCP flags as Key keeps them.
const (
	flagFIN = 1 << iota
	flagSYN
	flagRST
	flagPSH
	flagACK
	flagURG
)

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	for _, b := range []struct {
		on  bool
		bit uint8
	}{{t.FIN, flagFIN}, {t.SYN, flagSYN}, {t.RST, flagRST}, {t.PSH, flagPSH}, {t.ACK, flagACK}, {t.URG, flagURG}} {
		if b.on {
			f |= b.bit
		}
	}
	return f
}

// ipVersion is the layer a raw IP frame starts with.
func ipVersion(b []byte) gopacket.LayerType {
	if len(b) > 0 && b[0]>>4 == 6 {
		return layers.LayerTypeIPv6
	}
	return layers.LayerTypeIPv4
}

// skipIPv6Extensions walks IPv6 extension headers (hop-by-hop, routing,
// destination options; a fragment header ends the walk: the transport
// header is in the first fragment only) to the transport protocol.
func skipIPv6Extensions(next layers.IPProtocol, b []byte) (layers.IPProtocol, []byte) {
	for range maxLayers {
		switch next {
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination:
			if len(b) < 8 {
				return next, b
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n {
				return next, b
			}
			next, b = layers.IPProtocol(b[0]), b[n:]
		default:
			return next, b
		}
	}
	return next, b
}
