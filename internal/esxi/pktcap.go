package esxi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/plans/filter"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// Pktcap is ESXi's capture tool, run by name from the PATH of the host's
// shell (/bin on ESXi).
const Pktcap = "pktcap-uw"

// Capture is one pktcap-uw session, resolved for one host: a port (or
// none, for standalone points), where on it, and what to keep.
type Capture struct {
	Switchport uint32        `json:"switchport,omitempty"`
	Uplink     string        `json:"uplink,omitempty"`
	Vmk        string        `json:"vmk,omitempty"`
	DVFilter   string        `json:"dvfilter,omitempty"`
	Points     []string      `json:"points,omitempty"`
	Dir        string        `json:"dir,omitempty"`   // input, output or inputAndOutput
	Stage      string        `json:"stage,omitempty"` // pre or post
	Snaplen    int           `json:"snaplen,omitempty"`
	Count      uint64        `json:"count,omitempty"`
	Filter     filter.Filter `json:"filter"`
	// Exclude are connections (casecap's own SSH sessions) to leave out,
	// should the filter let them through. They need --rcf (ESXi 7.0+).
	Exclude []bpfgen.Conn `json:"exclude,omitempty"`
}

var dirValues = map[string]string{"input": "0", "output": "1", "inputAndOutput": "2"}
var stageValues = map[string]string{"pre": "0", "post": "1"}

// Argv is the pktcap-uw command line for c, writing pcapng to out, in the
// order the KB writes it: port, points, snap length, count, filters,
// output. Filters pktcap-uw has flags for use them (--ip, --proto 0x01,
// ...); the others (port, udpport, srcport, dstport, vxlan, expr) and the
// exclusion of casecap's own SSH go into one --rcf pcap-filter expression,
// which pktcap-uw applies together with the flags. The note, when not
// empty, says what could not be honoured on this version.
func Argv(c Capture, out string, v Version) (argv []string, note string, err error) {
	argv = []string{Pktcap}
	targets := 0
	if c.Switchport != 0 {
		argv = append(argv, "--switchport", strconv.FormatUint(uint64(c.Switchport), 10))
		targets++
	}
	for _, t := range []struct{ flag, val string }{{"--uplink", c.Uplink}, {"--vmk", c.Vmk}, {"--dvfilter", c.DVFilter}} {
		if t.val != "" {
			argv = append(argv, t.flag, t.val)
			targets++
		}
	}
	if targets > 1 {
		return nil, "", errors.New("a pktcap-uw session has one port")
	}
	switch {
	case len(c.Points) > 0 && c.Dir != "":
		return nil, "", errors.New("give capture points or a direction, not both")
	case len(c.Points) > 1 && !v.MultiplePoints():
		return nil, "", fmt.Errorf("%s captures at one point per session: split %s into one capture each (several points need ESXi 7.0 or later)", v, strings.Join(c.Points, ","))
	case len(c.Points) > 0:
		argv = append(argv, "--capture", strings.Join(c.Points, ","))
	case c.Dir != "":
		d, ok := dirValues[c.Dir]
		if !ok {
			return nil, "", fmt.Errorf("direction %q: want input, output or inputAndOutput", c.Dir)
		}
		if d == "2" && !v.AtLeast(7, 0) {
			return nil, "", fmt.Errorf("%s captures one direction per session: split inputAndOutput into input and output (both at once needs ESXi 7.0 or later)", v)
		}
		argv = append(argv, "--dir", d)
		if c.Stage != "" {
			s, ok := stageValues[c.Stage]
			if !ok {
				return nil, "", fmt.Errorf("stage %q: want pre or post", c.Stage)
			}
			argv = append(argv, "--stage", s)
		}
	case targets == 0:
		return nil, "", errors.New("a capture without a port needs standalone points such as Drop")
	}
	if c.Snaplen > 0 {
		argv = append(argv, "-s", strconv.Itoa(c.Snaplen))
	}
	if c.Count > 0 {
		argv = append(argv, "-c", strconv.FormatUint(c.Count, 10))
	}
	native, rest := split(c.Filter)
	argv = append(argv, native...)
	var exclude []bpfgen.Conn
	for _, x := range c.Exclude {
		if couldMatch(c.Filter, x) {
			exclude = append(exclude, x)
		}
	}
	if rcf := bpfgen.Expression(rest, bpfgen.Options{Exclude: exclude}); rcf != "" {
		switch {
		case v.RawFilters():
			argv = append(argv, "--rcf", rcf)
		case !rest.IsZero():
			return nil, "", fmt.Errorf("%s has no pcap-filter expressions (--rcf, ESXi 7.0 or later) for %s: use ip, srcip, dstip, mac, ethtype, vlan, proto or tcpport", v, rest)
		default:
			note = fmt.Sprintf("%s cannot leave casecap's own SSH session out of this capture (--rcf needs ESXi 7.0 or later): its packets may appear", v)
		}
	}
	if out == "-" {
		// A stream (the agent reads it): classic pcap, as the KB's
		// `-o - | tcpdump-uw -r -` reads it.
		return append(argv, "-o", "-"), note, nil
	}
	return append(argv, "--ng", "-o", out), note, nil
}

// split separates the filter fields pktcap-uw has flags for from the rest.
func split(f filter.Filter) (flags []string, rest filter.Filter) {
	add := func(flag, val string) { flags = append(flags, flag, val) }
	if f.IP.IsValid() {
		add("--ip", f.IP.String())
	}
	if f.SrcIP.IsValid() {
		add("--srcip", prefix(f.SrcIP))
	}
	if f.DstIP.IsValid() {
		add("--dstip", prefix(f.DstIP))
	}
	if !f.MAC.IsZero() {
		add("--mac", f.MAC.String())
	}
	if !f.SrcMAC.IsZero() {
		add("--srcmac", f.SrcMAC.String())
	}
	if !f.DstMAC.IsZero() {
		add("--dstmac", f.DstMAC.String())
	}
	if f.EthType != nil {
		add("--ethtype", fmt.Sprintf("0x%04x", *f.EthType))
	}
	if f.VLAN != nil {
		add("--vlan", strconv.Itoa(int(*f.VLAN)))
	}
	if f.Proto != nil {
		add("--proto", fmt.Sprintf("0x%02x", *f.Proto))
	}
	if f.TCPPort != nil {
		add("--tcpport", strconv.Itoa(int(*f.TCPPort)))
	}
	rest = filter.Filter{Port: f.Port, SrcPort: f.SrcPort, DstPort: f.DstPort, UDPPort: f.UDPPort, VXLAN: f.VXLAN, Expr: f.Expr}
	return flags, rest
}

func prefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// couldMatch says whether the filter lets through a packet of connection x
// in either direction. Fields it cannot judge from an address and a port
// (MACs, VLAN, a raw expression) count as matching: leaving a connection
// out that could not appear anyway costs nothing but --rcf.
func couldMatch(f filter.Filter, x bpfgen.Conn) bool {
	if f.Expr != "" || f.NeedsMAC() || f.VLAN != nil {
		return true
	}
	prog, err := bpfgen.Build(f, bpfgen.Options{})
	if err != nil {
		return true
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		return true
	}
	client := x.Client
	if client.Port() == 0 {
		client = netip.AddrPortFrom(client.Addr(), 50000)
	}
	for _, frame := range [][]byte{tcpFrame(client, x.Server), tcpFrame(x.Server, client)} {
		if n, err := vm.Run(frame); err != nil || n > 0 {
			return true
		}
	}
	return false
}

// tcpFrame is a minimal Ethernet/IPv4/TCP or Ethernet/IPv6/TCP frame from
// src to dst.
func tcpFrame(src, dst netip.AddrPort) []byte {
	const eth, tcpLen = 14, 20
	ipLen, etherType := 20, uint16(0x0800)
	if !src.Addr().Is4() {
		ipLen, etherType = 40, 0x86dd
	}
	b := make([]byte, eth+ipLen+tcpLen)
	b[0], b[6] = 0x02, 0x02 // locally administered MACs
	binary.BigEndian.PutUint16(b[12:], etherType)
	ip := b[eth:]
	if src.Addr().Is4() {
		ip[0], ip[8], ip[9] = 0x45, 64, 6
		binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+tcpLen))
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
	} else {
		ip[0], ip[6], ip[7] = 0x60, 6, 64
		binary.BigEndian.PutUint16(ip[4:], tcpLen)
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	tcp := ip[ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	tcp[12], tcp[13] = 5<<4, 0x18
	return b
}

// Session is the pktcap-uw command line of one capture as casecap runs it,
// whichever drives it (the agent on the host, or ssh mode's script): the
// capture's packet limit as pktcap-uw's own -c where the session has no
// count, and, when asked, the SSH session casecap came through
// (SSH_CONNECTION as the host saw it) left out. A session that cannot be
// named is not left out, and the note says so.
func Session(c Capture, out string, v Version, maxPackets uint64, excludeOwnSSH bool, sshConnection string) (argv []string, note string, err error) {
	if c.Count == 0 {
		c.Count = maxPackets
	}
	own, haveOwn := bpfgen.ParseSSHConnection(sshConnection)
	if excludeOwnSSH && haveOwn {
		c.Exclude = append(slices.Clone(c.Exclude), own)
	}
	argv, note, err = Argv(c, out, v)
	if err != nil {
		return nil, "", err
	}
	if excludeOwnSSH && !haveOwn && strings.TrimSpace(sshConnection) != "" {
		note = strings.TrimPrefix(note+"; casecap's own SSH session could not be left out (SSH_CONNECTION "+strconv.Quote(sshConnection)+" unreadable): its packets may appear", "; ")
	}
	return argv, note, nil
}
