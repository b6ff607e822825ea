package live

import (
	"fmt"
	"io"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Printer writes one line per packet, like `tcpdump -enn`: the time
// (casecap's clock, microseconds), the capture's name, the direction, the
// link addresses, then the network and transport summary. gopacket
// decodes; only the wording is here.
type Printer struct {
	W        io.Writer
	Captures []Capture
	width    int
}

// Print writes p's line.
func (pr *Printer) Print(p Packet) {
	if pr.width == 0 {
		for _, c := range pr.Captures {
			pr.width = max(pr.width, len(c.Name))
		}
	}
	dir := "  "
	switch p.Dir {
	case 'I':
		dir = "In"
	case 'O':
		dir = "Out"
	}
	fmt.Fprintf(pr.W, "%s %-*s %-3s %s\n", p.Time.Local().Format("15:04:05.000000"), pr.width, pr.Captures[p.Capture].Name, dir, Summary(p.Data, p.Length, p.LinkType))
}

// Summary is a packet's one-line description.
func Summary(data []byte, length int, linkType uint16) string {
	first := gopacket.LayerType(layers.LayerTypeEthernet)
	if linkType == uint16(layers.LinkTypeLinuxSLL) {
		first = layers.LayerTypeLinuxSLL
	}
	pkt := gopacket.NewPacket(data, first, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var b strings.Builder
	if eth, ok := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
		fmt.Fprintf(&b, "%s > %s, ", eth.SrcMAC, eth.DstMAC)
	}
	if q, ok := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); ok {
		fmt.Fprintf(&b, "vlan %d, ", q.VLANIdentifier)
	}
	var src, dst string
	switch {
	case pkt.Layer(layers.LayerTypeIPv4) != nil:
		ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
		fmt.Fprintf(&b, "IPv4 ")
	case pkt.Layer(layers.LayerTypeIPv6) != nil:
		ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
		fmt.Fprintf(&b, "IPv6 ")
	}
	switch {
	case pkt.Layer(layers.LayerTypeTCP) != nil:
		t := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		fmt.Fprintf(&b, "%s.%d > %s.%d: TCP [%s] seq %d ack %d win %d, length %d", src, t.SrcPort, dst, t.DstPort, tcpFlags(t), t.Seq, t.Ack, t.Window, len(t.Payload))
	case pkt.Layer(layers.LayerTypeUDP) != nil:
		u := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		fmt.Fprintf(&b, "%s.%d > %s.%d: UDP, length %d", src, u.SrcPort, dst, u.DstPort, len(u.Payload))
	case pkt.Layer(layers.LayerTypeICMPv4) != nil:
		ic := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		fmt.Fprintf(&b, "%s > %s: ICMP %s, id %d, seq %d", src, dst, ic.TypeCode, ic.Id, ic.Seq)
	case pkt.Layer(layers.LayerTypeICMPv6) != nil:
		ic := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		fmt.Fprintf(&b, "%s > %s: ICMP6 %s", src, dst, ic.TypeCode)
	case pkt.Layer(layers.LayerTypeARP) != nil:
		a := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
		if a.Operation == layers.ARPRequest {
			fmt.Fprintf(&b, "ARP, Request who-has %d.%d.%d.%d tell %d.%d.%d.%d", a.DstProtAddress[0], a.DstProtAddress[1], a.DstProtAddress[2], a.DstProtAddress[3],
				a.SourceProtAddress[0], a.SourceProtAddress[1], a.SourceProtAddress[2], a.SourceProtAddress[3])
		} else {
			fmt.Fprintf(&b, "ARP, Reply %d.%d.%d.%d is-at %x", a.SourceProtAddress[0], a.SourceProtAddress[1], a.SourceProtAddress[2], a.SourceProtAddress[3], a.SourceHwAddress)
		}
	case src != "":
		fmt.Fprintf(&b, "%s > %s", src, dst)
	default:
		if eth, ok := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
			fmt.Fprintf(&b, "ethertype %s (%#04x)", eth.EthernetType, uint16(eth.EthernetType))
		} else {
			b.WriteString("unknown")
		}
	}
	fmt.Fprintf(&b, ", wire length %d", length)
	return b.String()
}

func tcpFlags(t *layers.TCP) string {
	var f []byte
	for _, x := range []struct {
		on bool
		c  byte
	}{{t.SYN, 'S'}, {t.FIN, 'F'}, {t.RST, 'R'}, {t.PSH, 'P'}, {t.ACK, '.'}, {t.URG, 'U'}} {
		if x.on {
			f = append(f, x.c)
		}
	}
	return string(f)
}
