package esxisim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/internal/agent/ring"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
	"github.com/casecap/casecap/plans/filter"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// session is one pktcap-uw command line, checked.
type session struct {
	switchport, uplink, vmk, dvfilter string
	points                            []string
	dir, stage                        string
	out                               string
	ng                                bool
	snaplen                           int
	count                             uint64
	terms                             []string // pcap-filter terms, ANDed
}

// Options that take a value, by every name pktcap-uw accepts for them.
var valued = map[string]string{
	"--switchport": "switchport", "--uplink": "uplink", "--vmk": "vmk", "--dvfilter": "dvfilter",
	"--capture": "capture", "--dir": "dir", "--stage": "stage",
	"-o": "outfile", "--outfile": "outfile", "-s": "snaplen", "--snaplen": "snaplen", "--snapLen": "snaplen",
	"-c": "count", "--count": "count",
	"--srcmac": "srcmac", "--dstmac": "dstmac", "--mac": "mac", "--ethtype": "ethtype", "--vlan": "vlan",
	"--srcip": "srcip", "--dstip": "dstip", "--ip": "ip", "--proto": "proto",
	"--srcport": "srcport", "--dstport": "dstport", "--tcpport": "tcpport", "--vxlan": "vxlan", "--rcf": "rcf",
	// Real options this simulator does not imitate: refused, never ignored.
	"-p": "-", "--port": "-", "--lifID": "-", "-f": "-", "-G": "-", "-C": "-", "--fcport": "-", "--overlay": "-",
}

var flags = map[string]string{
	"-P": "ng", "--ng": "ng", "-h": "help", "--console": "console",
	"-A": "-", "--availpoints": "-", "-F": "-", "-K": "-", "--kernelside": "-", "--trace": "-",
}

var (
	hexByte  = regexp.MustCompile(`^0x[0-9A-Fa-f]{1,2}$`)
	hexShort = regexp.MustCompile(`^0x[0-9A-Fa-f]{1,4}$`)
)

func parse(args []string) (*session, error) {
	s := &session{}
	seen := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if f, ok := flags[a]; ok {
			switch f {
			case "-":
				return nil, fmt.Errorf("option %s is not simulated in the lab", a)
			case "ng":
				s.ng = true
			case "help":
				return nil, errors.New("usage: pktcap-uw [--capture POINT[,POINT]... | --dir 0|1|2 [--stage 0|1]] [--switchport ID | --vmk VMK | --uplink VMNIC | --dvfilter NAME] [-s LEN] [-c N] [filters] [--ng] -o FILE")
			case "console":
				return nil, errors.New("console output is not simulated: use -o FILE")
			}
			continue
		}
		key, ok := valued[a]
		if !ok {
			return nil, fmt.Errorf("unrecognized option %q", a)
		}
		if key == "-" {
			return nil, fmt.Errorf("option %s is not simulated in the lab", a)
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("option %s needs a value", a)
		}
		if seen[key] {
			return nil, fmt.Errorf("option %s given twice", a)
		}
		seen[key] = true
		i++
		if err := s.set(key, args[i]); err != nil {
			return nil, fmt.Errorf("%s %q: %w", a, args[i], err)
		}
	}
	if s.out == "" {
		if s.ng {
			return nil, errors.New("-P/--ng only works with -o")
		}
		return nil, errors.New("no -o FILE: console output is not simulated")
	}
	targets := 0
	for _, t := range []string{s.switchport, s.uplink, s.vmk, s.dvfilter} {
		if t != "" {
			targets++
		}
	}
	if targets > 1 {
		return nil, errors.New("only one of --switchport, --uplink, --vmk, --dvfilter")
	}
	if len(s.points) > 0 && s.dir != "" {
		return nil, errors.New("--capture and --dir cannot be used together")
	}
	if s.stage != "" && s.dir == "" {
		return nil, errors.New("--stage needs --dir")
	}
	if targets == 0 && len(s.points) == 0 {
		return nil, errors.New("no port and no capture point: nothing to capture")
	}
	return s, nil
}

func (s *session) set(key, v string) error {
	num := func(lo, hi uint64) (uint64, error) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("want a number from %d to %d", lo, hi)
		}
		return n, nil
	}
	mac := func() (string, error) {
		if m, err := net.ParseMAC(v); err != nil || len(m) != 6 {
			return "", errors.New("want a MAC address xx:xx:xx:xx:xx:xx")
		}
		return v, nil
	}
	var err error
	var n uint64
	var m string
	switch key {
	case "switchport":
		_, err = num(1, 1<<32-1)
		s.switchport = v
	case "uplink":
		s.uplink = v
	case "vmk":
		s.vmk = v
	case "dvfilter":
		s.dvfilter = v
	case "capture":
		for _, p := range strings.Split(v, ",") {
			pt, ok := plans.LookupPoint(p)
			if !ok || pt.Platform != plans.PlatformESXi {
				return errors.New("invalid capture point name; pktcap-uw -A lists them")
			}
			if slices.Contains(s.points, p) {
				return fmt.Errorf("capture point %s twice", p)
			}
			s.points = append(s.points, p)
		}
	case "dir":
		d, ok := map[string]string{"0": "input", "input": "input", "1": "output", "output": "output", "2": "inputAndOutput", "inputAndOutput": "inputAndOutput"}[v]
		if !ok {
			return errors.New("want 0|input, 1|output or 2|inputAndOutput")
		}
		s.dir = d
	case "stage":
		d, ok := map[string]string{"0": "pre", "pre": "pre", "1": "post", "post": "post"}[v]
		if !ok {
			return errors.New("want 0|pre or 1|post")
		}
		s.stage = d
	case "outfile":
		s.out = v // "-": the packets go to standard output, as pcap
	case "snaplen":
		n, err = num(0, 65535)
		if err == nil && n != 0 && n < 24 {
			err = errors.New("the minimum snap length is 24 bytes (0: whole packets)")
		}
		s.snaplen = int(n)
	case "count":
		s.count, err = num(1, 1<<62)
	case "mac":
		m, err = mac()
		s.terms = append(s.terms, "ether host "+m)
	case "srcmac":
		m, err = mac()
		s.terms = append(s.terms, "ether src "+m)
	case "dstmac":
		m, err = mac()
		s.terms = append(s.terms, "ether dst "+m)
	case "ethtype":
		if !hexShort.MatchString(v) {
			return errors.New("want 0x and up to 4 hex digits")
		}
		s.terms = append(s.terms, "ether proto "+v)
	case "vlan":
		n, err = num(0, 4095)
		s.terms = append(s.terms, fmt.Sprintf("vlan %d", n))
	case "ip":
		a, perr := netip.ParseAddr(v)
		if perr != nil || !a.Is4() {
			return errors.New("want an IPv4 address x.x.x.x")
		}
		s.terms = append(s.terms, "ip host "+v)
	case "srcip", "dstip":
		p, perr := netip.ParsePrefix(v)
		if perr != nil {
			a, aerr := netip.ParseAddr(v)
			p, perr = netip.PrefixFrom(a, 32), aerr
		}
		if perr != nil || !p.Addr().Is4() {
			return errors.New("want x.x.x.x[/len]")
		}
		s.terms = append(s.terms, fmt.Sprintf("ip %s net %s", key[:3], p.Masked()))
	case "proto":
		if !hexByte.MatchString(v) {
			return errors.New("want 0x and up to 2 hex digits, such as 0x01")
		}
		p, _ := strconv.ParseUint(v[2:], 16, 8)
		s.terms = append(s.terms, fmt.Sprintf("ip proto %d", p))
	case "srcport", "dstport", "tcpport":
		n, err = num(0, 65535)
		s.terms = append(s.terms, map[string]string{"srcport": "tcp src port", "dstport": "tcp dst port", "tcpport": "tcp port"}[key]+" "+strconv.FormatUint(n, 10))
	case "vxlan":
		n, err = num(0, 1<<24-1)
		s.terms = append(s.terms, fmt.Sprintf("udp dst port %d and udp[12:4] >> 8 = %d", filter.VXLANPort, n))
	case "rcf":
		if strings.TrimSpace(v) == "" {
			return errors.New("empty filter")
		}
		s.terms = append(s.terms, "("+v+")")
	}
	return err
}

// place is where a session captures: an interface and the Linux direction
// of each point there.
type place struct {
	ifname string
	kind   plans.TargetKind
	dir    bpfgen.Direction
	none   bool // standalone points: nothing flows there in the lab
}

// resolve maps the session's port and points onto this host's interfaces.
func (s *session) resolve(inv *Inventory) (place, error) {
	var port *Port
	find := func(match func(Port) bool) *Port {
		for i := range inv.Ports {
			if match(inv.Ports[i]) {
				return &inv.Ports[i]
			}
		}
		return nil
	}
	switch {
	case s.switchport != "":
		port = find(func(p Port) bool { return strconv.FormatUint(uint64(p.Num), 10) == s.switchport })
		if port == nil {
			return place{}, fmt.Errorf("the switch port %s does not exist", s.switchport)
		}
	case s.uplink != "":
		port = find(func(p Port) bool { return p.Type == esxi.TypeUplink && p.Client == s.uplink })
		if port == nil {
			return place{}, fmt.Errorf("the uplink %s does not exist", s.uplink)
		}
	case s.vmk != "":
		port = find(func(p Port) bool { return p.Type == esxi.TypeVmk && p.Client == s.vmk })
		if port == nil {
			return place{}, fmt.Errorf("the vmk %s does not exist", s.vmk)
		}
	case s.dvfilter != "":
		return place{}, fmt.Errorf("the dvfilter %s does not exist", s.dvfilter)
	}
	if port == nil {
		for _, p := range s.points {
			if pt, _ := plans.LookupPoint(p); !slices.Contains(pt.Targets, plans.TargetNone) {
				return place{}, fmt.Errorf("capture point %s needs a port (--switchport, --uplink or --vmk)", p)
			}
		}
		return place{none: true}, nil
	}
	pl := place{ifname: port.Ifname, kind: map[esxi.PortType]plans.TargetKind{esxi.TypeUplink: plans.TargetUplink, esxi.TypeVmk: plans.TargetVmk, esxi.TypeVNIC: plans.TargetVM}[port.Type]}
	// "input" is into the virtual switch: received on an uplink or from a
	// VM's vNIC (the host side of its veth), sent by the host's stack on a vmk.
	input, output := bpfgen.In, bpfgen.Out
	if pl.kind == plans.TargetVmk {
		input, output = bpfgen.Out, bpfgen.In
	}
	in, out := false, false
	switch s.dir {
	case "", "input":
		in = len(s.points) == 0 || s.dir == "input"
	case "output":
		out = true
	case "inputAndOutput":
		in, out = true, true
	}
	for _, p := range s.points {
		pt, _ := plans.LookupPoint(p)
		if !slices.Contains(pt.Targets, pl.kind) {
			return place{}, fmt.Errorf("capture point %s is not supported on %s %s", p, pl.kind, port.Client)
		}
		switch p {
		case "UplinkRcv", "UplinkRcvKernel", "PortInput", "VnicTx", "Vmxnet3Tx", "TcpipTx", "EtherswitchDispath":
			in = true
		default:
			out = true
		}
	}
	switch {
	case in && out:
		pl.dir = bpfgen.Both
	case out:
		pl.dir = output
	default:
		pl.dir = input
	}
	return pl, nil
}

// program is the socket filter: the session's terms and its direction.
func (s *session) program(ctx context.Context, pl place) ([]bpf.RawInstruction, error) {
	opt := bpfgen.Options{Direction: pl.dir, Snaplen: s.snaplen}
	if len(s.terms) == 0 {
		prog, err := bpfgen.Build(filter.Filter{}, opt)
		if err != nil {
			return nil, err
		}
		return bpf.Assemble(prog)
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil, errors.New("the lab needs tcpdump to compile filters")
	}
	expr := bpfgen.Expression(filter.Filter{Expr: strings.Join(s.terms, " and ")}, opt)
	return bpfgen.Compile(ctx, tcpdump, pl.ifname, s.snaplen, expr)
}

// writer is pcap or pcapng.
type writer interface {
	write(ci gopacket.CaptureInfo, data []byte) error
	close() error
}

type pcapWriter struct {
	f io.WriteCloser
	w *pcapgo.Writer
}

func (p *pcapWriter) write(ci gopacket.CaptureInfo, data []byte) error {
	return p.w.WritePacket(ci, data)
}
func (p *pcapWriter) close() error { return p.f.Close() }

type ngWriter struct {
	f io.WriteCloser
	w *pcapgo.NgWriter
}

func (p *ngWriter) write(ci gopacket.CaptureInfo, data []byte) error {
	return p.w.WritePacket(ci, data)
}
func (p *ngWriter) close() error { return errors.Join(p.w.Flush(), p.f.Close()) }

// nopCloser is standard output, which the session does not close.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (s *session) create(ifname string, stdout io.Writer) (writer, error) {
	var f io.WriteCloser = nopCloser{stdout}
	if s.out != "-" {
		var err error
		if f, err = os.OpenFile(s.out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644); err != nil {
			return nil, err
		}
	} else if s.ng {
		return nil, errors.New("--ng with -o -: the stream is written as pcap (simulator's choice; unconfirmed on a real host)")
	}
	snap := uint32(s.snaplen)
	if snap == 0 {
		snap = bpfgen.WholePacket
	}
	if !s.ng {
		// pcapgo's Writer writes each packet through at once: a stream
		// on standard output carries it without delay.
		w := pcapgo.NewWriter(f)
		if err := w.WriteFileHeader(snap, layers.LinkTypeEthernet); err != nil {
			f.Close()
			return nil, err
		}
		return &pcapWriter{f, w}, nil
	}
	w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: ifname, LinkType: layers.LinkTypeEthernet, SnapLength: snap, TimestampResolution: 9},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "pktcap-uw (casecap lab simulator)"}})
	if err != nil {
		f.Close()
		return nil, err
	}
	return &ngWriter{f, w}, nil
}

func pktcap(inv *Inventory, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "pktcap-uw: %v\n", err)
		return 1
	}
	s, err := parse(args)
	if err != nil {
		return fail(err)
	}
	pl, err := s.resolve(inv)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	var r *ring.Ring
	if !pl.none {
		prog, err := s.program(ctx, pl)
		if err != nil {
			return fail(err)
		}
		if r, err = ring.Open(ring.Options{Interface: pl.ifname, Program: prog, BlockTimeout: 20 * time.Millisecond}); err != nil {
			return fail(err)
		}
		defer r.Close()
	}
	w, err := s.create(pl.ifname, stdout)
	if err != nil {
		return fail(err)
	}
	if s.out == "-" {
		stdout = stderr // the packets own standard output: messages go to stderr
	}
	if len(s.points) > 0 {
		fmt.Fprintf(stdout, "The session capture point is %s.\n", strings.Join(s.points, ","))
	}
	fmt.Fprintf(stdout, "pktcap: The output file is %s.\npktcap: Accept...\n", s.out)

	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	var dumped uint64
	var werr error
loop:
	for r != nil && (s.count == 0 || dumped < s.count) {
		select {
		case <-stop:
			break loop
		default:
		}
		p, err := r.Next(50 * time.Millisecond)
		if errors.Is(err, ring.ErrTimeout) {
			continue
		}
		if err != nil {
			werr = err
			break
		}
		ci := gopacket.CaptureInfo{Timestamp: p.Time(), CaptureLength: len(p.Data), Length: p.Length}
		if werr = w.write(ci, p.Data); werr != nil {
			break
		}
		dumped++
	}
	if r == nil {
		<-stop
	}
	var dropped uint64
	if r != nil {
		_, dropped, _ = r.Stats()
	}
	if err := w.close(); err != nil && werr == nil {
		werr = err
	}
	// As published: "Destroying session N." (docs/esxi.md).
	fmt.Fprintf(stdout, "Destroying session %d.\n\nDumped %d packet to file %s, dropped %d packets.\nDone.\n", os.Getpid()%100, dumped, s.out, dropped)
	if werr != nil {
		return fail(werr)
	}
	return 0
}
