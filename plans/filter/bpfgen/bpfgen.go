package bpfgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/plans/filter"
)

// Layout is what the socket's packets start with.
type Layout int

const (
	// Ethernet: a SOCK_RAW socket on an Ethernet (or loopback) device; frames
	// start with a 14-byte Ethernet header, VLAN tags usually stripped into
	// the kernel's metadata.
	Ethernet Layout = iota
	// Cooked: a SOCK_DGRAM socket (the "any" interface, or devices without
	// Ethernet headers); packets start at the network header and the
	// EtherType comes from the kernel's metadata.
	Cooked
)

// Direction selects packets by the way they cross the interface.
type Direction int

// Directions.
const (
	Both Direction = iota
	In             // received (every packet type but outgoing)
	Out            // sent by this host
)

// Conn is TCP traffic to leave out of a capture, such as the SSH sessions
// casecap itself runs over. A zero client port means every connection from
// that client to the server's port.
type Conn struct {
	Client netip.AddrPort `json:"client"`
	Server netip.AddrPort `json:"server"`
}

// Options complete a filter into a capture program.
type Options struct {
	Layout    Layout
	Direction Direction
	Snaplen   int    // 0: whole packets
	Exclude   []Conn // TCP connections to leave out (IPv4 or IPv6)
}

// WholePacket is the snap length used for "whole packets", as tcpdump does.
const WholePacket = 262144

// Kernel packet types (linux/if_packet.h).
const packetOutgoing = 4

const (
	ethIPv4  = 0x0800
	ethIPv6  = 0x86dd
	ethVLAN  = 0x8100
	ethQinQ  = 0x88a8
	protoTCP = 6
	protoUDP = 17
	protoSCT = 132
	memEther = 0 // scratch memory: the EtherType
	memL3    = 1 // the network header's offset
	memTmp   = 2
)

// snap is the program's accept value.
func (o Options) snap() uint32 {
	if o.Snaplen <= 0 {
		return WholePacket
	}
	return uint32(o.Snaplen)
}

// Build compiles a structured filter. A filter with a raw expr cannot be
// compiled here: use Expression and Compile.
func Build(f filter.Filter, opt Options) ([]bpf.Instruction, error) {
	if f.Expr != "" {
		return nil, errors.New("a raw pcap-filter expression needs tcpdump to compile it")
	}
	if opt.Layout == Cooked && f.NeedsMAC() {
		return nil, errors.New("MAC addresses are not available on this interface (no Ethernet header): drop mac, srcmac and dstmac")
	}
	for _, c := range opt.Exclude {
		if c.Client.Addr().Is4() != c.Server.Addr().Is4() {
			return nil, fmt.Errorf("a connection to leave out has one IPv4 and one IPv6 end: %v", c)
		}
	}
	a := newAsm()
	const reject = "reject"

	switch opt.Direction {
	case In:
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.jumpIf(bpf.JumpEqual, packetOutgoing, reject, "")
	case Out:
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.jumpIf(bpf.JumpNotEqual, packetOutgoing, reject, "")
	}

	needL3 := f.EthType != nil || f.NeedsIPv4() || len(opt.Exclude) > 0 || f.VLAN != nil
	if needL3 {
		preamble(a, f, opt, reject)
	}
	for _, c := range opt.Exclude {
		exclude(a, c, reject)
	}
	if opt.Layout == Ethernet {
		macs(a, f, reject)
	}
	if f.EthType != nil {
		a.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memEther})
		a.jumpIf(bpf.JumpNotEqual, uint32(*f.EthType), reject, "")
	}
	if f.NeedsIPv4() {
		ipv4(a, f, reject)
	}
	a.emit(bpf.RetConstant{Val: opt.snap()})
	a.label(reject)
	a.emit(bpf.RetConstant{Val: 0})
	return a.assemble()
}

// preamble stores the EtherType in M[0] and the network header's offset in
// M[1] (and X), matching the VLAN on the way when the filter names one.
func preamble(a *asm, f filter.Filter, opt Options, reject string) {
	done := a.fresh("l3_")
	if opt.Layout == Cooked {
		if f.VLAN != nil {
			a.emit(bpf.LoadExtension{Num: bpf.ExtVLANTagPresent})
			a.jumpIf(bpf.JumpEqual, 0, reject, "")
			a.emit(bpf.LoadExtension{Num: bpf.ExtVLANTag}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0fff})
			a.jumpIf(bpf.JumpNotEqual, uint32(*f.VLAN), reject, "")
		}
		a.emit(bpf.LoadExtension{Num: bpf.ExtProto}, bpf.LoadConstant{Dst: bpf.RegX, Val: 0})
	} else if f.VLAN == nil {
		a.emit(bpf.LoadAbsolute{Off: 12, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 14})
	} else {
		// Tag in the kernel's metadata (the usual case on Linux): the frame
		// holds the inner EtherType. Otherwise the tag is still in the frame.
		inline, tagged := a.fresh("inline_"), a.fresh("tagged_")
		a.emit(bpf.LoadExtension{Num: bpf.ExtVLANTagPresent})
		a.jumpIf(bpf.JumpEqual, 0, inline, "")
		a.emit(bpf.LoadExtension{Num: bpf.ExtVLANTag}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0fff})
		a.jumpIf(bpf.JumpNotEqual, uint32(*f.VLAN), reject, "")
		a.emit(bpf.LoadAbsolute{Off: 12, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 14})
		a.goTo(done)
		a.label(inline)
		a.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
		a.jumpIf(bpf.JumpEqual, ethVLAN, tagged, "")
		a.jumpIf(bpf.JumpNotEqual, ethQinQ, reject, "")
		a.label(tagged)
		a.emit(bpf.LoadAbsolute{Off: 14, Size: 2}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0fff})
		a.jumpIf(bpf.JumpNotEqual, uint32(*f.VLAN), reject, "")
		a.emit(bpf.LoadAbsolute{Off: 16, Size: 2}, bpf.LoadConstant{Dst: bpf.RegX, Val: 18})
	}
	a.label(done)
	a.emit(bpf.StoreScratch{Src: bpf.RegA, N: memEther}, bpf.TXA{}, bpf.StoreScratch{Src: bpf.RegA, N: memL3})
}

// toL4 moves X from the IPv4 header to the transport header (X += IHL*4).
func toL4(a *asm) {
	a.emit(
		bpf.LoadIndirect{Off: 0, Size: 1},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		bpf.StoreScratch{Src: bpf.RegA, N: memTmp},
		bpf.TXA{},
		bpf.LoadScratch{Dst: bpf.RegX, N: memTmp},
		bpf.ALUOpX{Op: bpf.ALUOpAdd},
		bpf.TAX{},
	)
}

// requireIPv4 rejects non-IPv4 packets and leaves X at the IPv4 header.
func requireIPv4(a *asm, fail string) {
	a.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memEther})
	a.jumpIf(bpf.JumpNotEqual, ethIPv4, fail, "")
	a.emit(bpf.LoadScratch{Dst: bpf.RegX, N: memL3})
}

// notFragment rejects IPv4 fragments after the first (they have no ports).
func notFragment(a *asm, fail string) {
	a.emit(bpf.LoadIndirect{Off: 6, Size: 2})
	a.jumpIf(bpf.JumpBitsSet, 0x1fff, fail, "")
}

func ip4(addr netip.Addr) uint32 { b := addr.As4(); return binary.BigEndian.Uint32(b[:]) }

// exclude rejects the packets of one TCP connection, both ways.
func exclude(a *asm, c Conn, reject string) {
	if !c.Client.Addr().Is4() {
		exclude6(a, c, reject)
		return
	}
	keep, fromClient := a.fresh("keep_"), a.fresh("fromclient_")
	cl, sv := ip4(c.Client.Addr()), ip4(c.Server.Addr())
	requireIPv4(a, keep)
	a.emit(bpf.LoadIndirect{Off: 9, Size: 1})
	a.jumpIf(bpf.JumpNotEqual, protoTCP, keep, "")
	notFragment(a, keep)
	a.emit(bpf.LoadIndirect{Off: 12, Size: 4})
	a.jumpIf(bpf.JumpEqual, cl, fromClient, "")
	a.jumpIf(bpf.JumpNotEqual, sv, keep, "")
	a.emit(bpf.LoadIndirect{Off: 16, Size: 4})
	a.jumpIf(bpf.JumpNotEqual, cl, keep, "")
	toL4(a)
	tcpPorts(a, 0, c.Server.Port(), c.Client.Port(), keep, reject)
	a.label(fromClient)
	a.emit(bpf.LoadIndirect{Off: 16, Size: 4})
	a.jumpIf(bpf.JumpNotEqual, sv, keep, "")
	toL4(a)
	tcpPorts(a, 0, c.Client.Port(), c.Server.Port(), keep, reject)
	a.label(keep)
}

// tcpPorts goes to reject if the TCP ports at X+off are src and dst (a
// zero port matches any), else to keep.
func tcpPorts(a *asm, off uint32, src, dst uint16, keep, reject string) {
	if src != 0 {
		a.emit(bpf.LoadIndirect{Off: off, Size: 2})
		a.jumpIf(bpf.JumpNotEqual, uint32(src), keep, "")
	}
	if dst != 0 {
		a.emit(bpf.LoadIndirect{Off: off + 2, Size: 2})
		a.jumpIf(bpf.JumpNotEqual, uint32(dst), keep, "")
	}
	a.goTo(reject)
}

// exclude6 rejects the packets of one IPv6 TCP connection, both ways: TCP
// right after the fixed IPv6 header (no extension headers: SSH has no use
// for them), addresses at 8 and 24, the TCP header at 40. A packet it does
// not recognise is kept.
func exclude6(a *asm, c Conn, reject string) {
	keep, fromServer := a.fresh("keep6_"), a.fresh("fromserver6_")
	a.emit(bpf.LoadScratch{Dst: bpf.RegA, N: memEther})
	a.jumpIf(bpf.JumpNotEqual, ethIPv6, keep, "")
	a.emit(bpf.LoadScratch{Dst: bpf.RegX, N: memL3})
	a.emit(bpf.LoadIndirect{Off: 6, Size: 1})
	a.jumpIf(bpf.JumpNotEqual, protoTCP, keep, "")
	addr6(a, 8, c.Client.Addr(), fromServer)
	addr6(a, 24, c.Server.Addr(), keep)
	tcpPorts(a, 40, c.Client.Port(), c.Server.Port(), keep, reject)
	a.label(fromServer)
	addr6(a, 8, c.Server.Addr(), keep)
	addr6(a, 24, c.Client.Addr(), keep)
	tcpPorts(a, 40, c.Server.Port(), c.Client.Port(), keep, reject)
	a.label(keep)
}

// addr6 jumps to fail unless the 16 bytes at X+off are addr.
func addr6(a *asm, off uint32, addr netip.Addr, fail string) {
	b := addr.As16()
	for i := range uint32(4) {
		a.emit(bpf.LoadIndirect{Off: off + 4*i, Size: 4})
		a.jumpIf(bpf.JumpNotEqual, binary.BigEndian.Uint32(b[4*i:]), fail, "")
	}
}

func macWords(m filter.MAC) (uint32, uint32) {
	return binary.BigEndian.Uint32(m[:4]), uint32(binary.BigEndian.Uint16(m[4:]))
}

// macAt jumps to fail unless the 6 bytes at off are m.
func macAt(a *asm, off uint32, m filter.MAC, fail string) {
	hi, lo := macWords(m)
	a.emit(bpf.LoadAbsolute{Off: off, Size: 4})
	a.jumpIf(bpf.JumpNotEqual, hi, fail, "")
	a.emit(bpf.LoadAbsolute{Off: off + 4, Size: 2})
	a.jumpIf(bpf.JumpNotEqual, lo, fail, "")
}

func macs(a *asm, f filter.Filter, reject string) {
	if !f.MAC.IsZero() {
		ok, trySrc := a.fresh("macok_"), a.fresh("macsrc_")
		hi, lo := macWords(f.MAC)
		a.emit(bpf.LoadAbsolute{Off: 0, Size: 4})
		a.jumpIf(bpf.JumpNotEqual, hi, trySrc, "")
		a.emit(bpf.LoadAbsolute{Off: 4, Size: 2})
		a.jumpIf(bpf.JumpEqual, lo, ok, "")
		a.label(trySrc)
		macAt(a, 6, f.MAC, reject)
		a.label(ok)
	}
	if !f.SrcMAC.IsZero() {
		macAt(a, 6, f.SrcMAC, reject)
	}
	if !f.DstMAC.IsZero() {
		macAt(a, 0, f.DstMAC, reject)
	}
}

// eitherWord jumps to fail unless the 32- or 16-bit word at X+off1 or
// X+off2 equals val.
func eitherWord(a *asm, off1, off2 uint32, size int, val uint32, fail string) {
	ok := a.fresh("ok_")
	a.emit(bpf.LoadIndirect{Off: off1, Size: size})
	a.jumpIf(bpf.JumpEqual, val, ok, "")
	a.emit(bpf.LoadIndirect{Off: off2, Size: size})
	a.jumpIf(bpf.JumpNotEqual, val, fail, "")
	a.label(ok)
}

func prefix(a *asm, off uint32, p netip.Prefix, reject string) {
	bits := p.Bits()
	if bits == 0 {
		return // any IPv4 address: nothing to load (as tcpdump's optimiser does)
	}
	a.emit(bpf.LoadIndirect{Off: off, Size: 4})
	if bits < 32 {
		a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ^uint32(0) << (32 - bits)})
	}
	a.jumpIf(bpf.JumpNotEqual, ip4(p.Masked().Addr()), reject, "")
}

func ipv4(a *asm, f filter.Filter, reject string) {
	requireIPv4(a, reject)
	if f.IP.IsValid() {
		eitherWord(a, 12, 16, 4, ip4(f.IP), reject)
	}
	if f.SrcIP.IsValid() {
		prefix(a, 12, f.SrcIP, reject)
	}
	if f.DstIP.IsValid() {
		prefix(a, 16, f.DstIP, reject)
	}
	if f.Proto != nil {
		a.emit(bpf.LoadIndirect{Off: 9, Size: 1})
		a.jumpIf(bpf.JumpNotEqual, uint32(*f.Proto), reject, "")
	}
	if !f.NeedsL4() {
		return
	}
	// The transport protocol each port field implies.
	if f.TCPPort != nil {
		a.emit(bpf.LoadIndirect{Off: 9, Size: 1})
		a.jumpIf(bpf.JumpNotEqual, protoTCP, reject, "")
	}
	if f.UDPPort != nil || f.VXLAN != nil {
		a.emit(bpf.LoadIndirect{Off: 9, Size: 1})
		a.jumpIf(bpf.JumpNotEqual, protoUDP, reject, "")
	}
	if f.Port != nil || f.SrcPort != nil || f.DstPort != nil {
		ok := a.fresh("l4proto_")
		a.emit(bpf.LoadIndirect{Off: 9, Size: 1})
		a.jumpIf(bpf.JumpEqual, protoTCP, ok, "")
		a.jumpIf(bpf.JumpEqual, protoUDP, ok, "")
		a.jumpIf(bpf.JumpNotEqual, protoSCT, reject, "")
		a.label(ok)
	}
	notFragment(a, reject)
	toL4(a)
	for _, p := range []*uint16{f.Port, f.TCPPort, f.UDPPort} {
		if p != nil {
			eitherWord(a, 0, 2, 2, uint32(*p), reject)
		}
	}
	if f.SrcPort != nil {
		a.emit(bpf.LoadIndirect{Off: 0, Size: 2})
		a.jumpIf(bpf.JumpNotEqual, uint32(*f.SrcPort), reject, "")
	}
	if f.DstPort != nil {
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2})
		a.jumpIf(bpf.JumpNotEqual, uint32(*f.DstPort), reject, "")
	}
	if f.VXLAN != nil {
		a.emit(bpf.LoadIndirect{Off: 2, Size: 2})
		a.jumpIf(bpf.JumpNotEqual, filter.VXLANPort, reject, "")
		a.emit(bpf.LoadIndirect{Off: 12, Size: 4}, bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 8})
		a.jumpIf(bpf.JumpNotEqual, *f.VXLAN, reject, "")
	}
}

// Expression is the whole capture filter in pcap-filter syntax: direction,
// the filter, and the connections left out. It is what the pcapng file's
// interface block records, what validate shows, and what tcpdump compiles
// when the filter has a raw expr.
func Expression(f filter.Filter, opt Options) string {
	var terms []string
	switch opt.Direction {
	case In:
		terms = append(terms, "inbound")
	case Out:
		terms = append(terms, "outbound")
	}
	if e := f.Expression(); e != "" {
		if len(terms) > 0 || len(opt.Exclude) > 0 {
			e = "(" + e + ")"
		}
		terms = append(terms, e)
	}
	for _, c := range opt.Exclude {
		terms = append(terms, "not "+connExpr(c))
	}
	return strings.Join(terms, " and ")
}

// connExpr is a Conn in pcap-filter syntax.
func connExpr(c Conn) string {
	end := func(dir string, ap netip.AddrPort) string {
		if ap.Port() == 0 {
			return fmt.Sprintf("%s host %s", dir, ap.Addr())
		}
		return fmt.Sprintf("%s host %s and %s port %d", dir, ap.Addr(), dir, ap.Port())
	}
	return fmt.Sprintf("(tcp and ((%s and %s) or (%s and %s)))",
		end("src", c.Client), end("dst", c.Server), end("src", c.Server), end("dst", c.Client))
}

var directionNames = [...]string{Both: "both", In: "in", Out: "out"}

// MarshalText writes both, in or out.
func (d Direction) MarshalText() ([]byte, error) {
	if int(d) < 0 || int(d) >= len(directionNames) {
		return nil, fmt.Errorf("bad direction %d", int(d))
	}
	return []byte(directionNames[d]), nil
}

// UnmarshalText reads what MarshalText wrote.
func (d *Direction) UnmarshalText(b []byte) error {
	for i, n := range directionNames {
		if n == string(b) {
			*d = Direction(i)
			return nil
		}
	}
	return fmt.Errorf("bad direction %q: want both, in or out", b)
}
