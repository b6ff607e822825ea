//go:build linux

package hops_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/analysis/hops"
	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// TestAnalyzeRoutedPath: the truth on the lab. A numbered UDP stream goes
// from h01 through h02, a router whose forwarder drops one packet in 50
// and delays every one by 20 ms, to h03. casecap captures every interface
// of the path; analyze finds the path's order from the data, names the
// router's hop as the one that lost, its loss equal to the count the
// sequence numbers in the two files give (within the in-flight edge), its
// p50 latency the delay within 2 ms, and no loss, reordering or duplicates
// on the other hops. A TCP bulk flow goes the same way, in 64 KB segments
// where it leaves h01 (segmentation offload) and MSS pieces past the
// router: matched whole, it loses only on the router's hop.
func TestAnalyzeRoutedPath(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	ctx := context.Background()
	const delay, dropEvery = 20 * time.Millisecond, 50
	path, err := l.NewPath(ctx, l.Hosts[0], l.Hosts[1], l.Hosts[2], lab.PathOptions{Delay: delay, DropEvery: dropEvery})
	if err != nil {
		t.Fatal(err)
	}
	defer path.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	const stream = 61
	udpStream(t, sctx, path.A, path.B, path.BAddr, stream)

	// A TCP bulk flow too, h01 to h03: h01 hands 64 KB segments to its
	// link (segmentation offload on), the router cuts them to MSS size.
	var ln net.Listener
	if err := lab.InHost(path.B, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(path.BAddr.String(), "5001"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	var bulk net.Conn
	if err := lab.InHost(path.A, func() (err error) {
		bulk, err = net.DialTimeout("tcp4", net.JoinHostPort(path.BAddr.String(), "5001"), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer bulk.Close()
	go func() {
		// About 4 MB/s: what four captures of it keep up with on a busy
		// two-core machine (a capture's own drops would be loss here).
		chunk := make([]byte, 64<<10)
		tick := time.NewTicker(16 * time.Millisecond)
		defer tick.Stop()
		for sctx.Err() == nil {
			if _, err := bulk.Write(chunk); err != nil {
				return
			}
			<-tick.C
		}
	}()

	caseDir := runCase(t, ctx, l, "PATH", []hostIfs{{path.A, []string{lab.PathIf}}, {path.R, []string{lab.RouterIn, lab.RouterOut}}, {path.B, []string{lab.PathIf}}})
	stop()
	path.Close()
	st := path.Stats()
	t.Logf("router: forwarded %d, dropped %d", st.Forwarded, st.Dropped)

	c := openCase(t, caseDir)
	r, err := hops.Analyze(c, hops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	r.WriteText(&text)
	t.Logf("\n%s", text.String())

	// The paths, found from the data: the stream's and the bulk flow's
	// one way, exactly (the router's 20 ms orders it beyond any clock's
	// doubt); the bulk flow's acknowledgements the other way, through
	// the same four points. On the way back no hop delays: two points on
	// two hosts a few microseconds apart are closer than their clocks'
	// uncertainty (40 to 120 us here), and may come in either order; the
	// router's two points share one clock, and r1 comes before r0.
	in, outName := "h02.r0.RxTx", "h02.r1.RxTx"
	forward := "h01.p0.RxTx > " + in + " > " + outName + " > h03.p0.RxTx"
	if len(r.Paths) != 2 {
		t.Fatalf("paths: %+v, want the flows' way and the acknowledgements'", r.Paths)
	}
	var back []string
	for _, p := range r.Paths {
		if strings.Join(p.Points, " > ") != forward {
			back = p.Points
		}
	}
	fwdFound := strings.Join(r.Paths[0].Points, " > ") == forward || strings.Join(r.Paths[1].Points, " > ") == forward
	sorted := slices.Sorted(slices.Values(back))
	if !fwdFound || !slices.Equal(sorted, []string{"h01.p0.RxTx", in, outName, "h03.p0.RxTx"}) || slices.Index(back, outName) > slices.Index(back, in) {
		t.Fatalf("paths: %+v; want %s, and back through the same points, %s before %s", r.Paths, forward, outName, in)
	}
	// The truth from the files' sequence numbers: the stream's packets
	// r0 saw and r1 did not, but for those r0 saw in its last 50 ms (in
	// flight when r1 stopped).
	atIn := seqTimes(t, filepath.Join(caseDir, in+".pcapng"), stream)
	atOut := seqTimes(t, filepath.Join(caseDir, outName+".pcapng"), stream)
	var last time.Time
	for _, at := range atIn {
		if at.After(last) {
			last = at
		}
	}
	truth := int64(0)
	for seq, at := range atIn {
		if _, ok := atOut[seq]; !ok && at.Before(last.Add(-50*time.Millisecond)) {
			truth++
		}
	}
	var udpLost, udpPackets uint64
	for _, f := range r.Flows {
		if strings.HasPrefix(f.Flow, "udp ") {
			if f.From != in || f.To != outName {
				t.Errorf("UDP lost on %s > %s: %+v", f.From, f.To, f)
			}
			udpLost, udpPackets = f.Lost, f.Packets
		}
	}
	// The in-flight edge: packets at r0 in the last 20 ms are not counted
	// (they would reach r1 after its end): the count is within a few of
	// what the sequence numbers give.
	t.Logf("UDP: lost %d of %d at the router; the files' sequence numbers: %d", udpLost, udpPackets, truth)
	if d := int64(udpLost) - truth; d < -2 || d > 2 {
		t.Errorf("UDP: lost %d at the router, the files' sequence numbers say %d", udpLost, truth)
	}
	if ratio := float64(udpLost) / float64(udpPackets); math.Abs(ratio-1.0/dropEvery) > 0.01 {
		t.Errorf("UDP: loss %.4f at the router, which drops 1 in %d", ratio, dropEvery)
	}
	for _, h := range r.Hops {
		if h.From == in && h.To == outName {
			if h.Latency == nil || math.Abs(h.Latency.P50-20) > 2 {
				t.Errorf("router hop: latency %+v, want a p50 of 20 ms", h.Latency)
			}
			continue
		}
		// (Reordering is the lab's own: veth hands packets sent from two
		// CPUs at once to per-CPU queues, which may swap them.)
		if h.Lost != 0 || h.Duplicates != 0 {
			t.Errorf("%s > %s: %d lost, %d duplicates; want none off the router", h.From, h.To, h.Lost, h.Duplicates)
		}
	}
	if w := r.Worst(); w == nil || w.From != in || w.To != outName {
		t.Errorf("the worst hop: %+v, want %s > %s", w, in, outName)
	}
	// The TCP flow: its segments were 64 KB where it left h01 and MSS
	// sized past the router, and matched whole (no loss before or after
	// the router); the router hop lost what the router dropped of it.
	if big, small := largest(t, filepath.Join(caseDir, "h01.p0.RxTx.pcapng")), largest(t, filepath.Join(caseDir, outName+".pcapng")); big <= 1514 || small > 1514 {
		t.Errorf("largest frames: %d at h01 (want segmentation offload's), %d past the router (want the MTU's)", big, small)
	}
	var tcpDrops int
	for _, d := range path.Drops() {
		if d.TCP && r.Window != nil && !d.At.Before(r.Window.Start) && d.At.Before(r.Window.Stop) {
			tcpDrops++
		}
	}
	var tcpLost uint64
	for _, f := range r.Flows {
		if strings.HasPrefix(f.Flow, "tcp ") {
			if f.From != in || f.To != outName {
				t.Errorf("TCP lost on %s > %s: %+v", f.From, f.To, f)
			}
			tcpLost += f.Lost
		}
	}
	// The unit is the segment as h01 handed it over (64 KB): one that
	// lost any of its MSS pieces on the router and had them sent again
	// counts once. So analyze counts some loss, and no more than the
	// router's drops. (Counting the wire packets lost within such a
	// segment is still to do: issue 14.)
	t.Logf("TCP: the router dropped %d of its pieces inside the window; analyze counts %d segments lost", tcpDrops, tcpLost)
	if tcpDrops == 0 || tcpLost == 0 || tcpLost > uint64(tcpDrops) {
		t.Errorf("TCP: analyze counts %d lost at the router, which dropped %d of its pieces inside the window", tcpLost, tcpDrops)
	}
}

// seqTimes reads a capture's packets of the numbered stream: when it saw
// each sequence number first.
func seqTimes(t *testing.T, file string, stream uint32) map[uint64]time.Time {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]time.Time{}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			return out
		}
		payload, ok := seqcast.UDPPayload(r.LinkType(), data)
		if p, ok2 := seqcast.ParsePayload(payload); ok && ok2 && p.Stream == stream {
			if _, seen := out[p.Seq]; !seen {
				out[p.Seq] = ci.Timestamp
			}
		}
	}
}

// largest is the largest frame of a capture file.
func largest(t *testing.T, file string) int {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, ci, err := r.ZeroCopyReadPacketData()
		if err != nil {
			return n
		}
		n = max(n, ci.Length)
	}
}

// openCase opens a case folder whose captures lost nothing themselves:
// the premise of comparing analyze's loss with the router's.
func openCase(t *testing.T, dir string) *casedir.Case {
	c, err := casedir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range c.Captures {
		if cp.Drops > 0 {
			t.Fatalf("%s dropped %d packets itself: the machine was too busy for this test's truth", cp.Name, cp.Drops)
		}
	}
	return c
}

// udpStream sends a numbered stream (one packet a millisecond, UDP port
// 9999) from a socket in from to to, where a socket in dst receives it
// (no port-unreachable chatter), until ctx ends.
func udpStream(t *testing.T, ctx context.Context, from, dst *lab.Host, to netip.Addr, stream uint32) {
	var rx *net.UDPConn
	if err := lab.InHost(dst, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: to.AsSlice(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	var tx *net.UDPConn
	if err := lab.InHost(from, func() (err error) {
		tx, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: to.AsSlice(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			tx.Write(seqcast.Packet{Stream: stream, Seq: seq, Sent: time.Now()}.Marshal(nil))
		}
	}()
}

// hostIfs is a host and the interfaces a case captures there.
type hostIfs struct {
	host *lab.Host
	ifs  []string
}

// runCase runs casecap on the hosts' interfaces for 3 s (no filter: the
// path's links carry the test's flows only) and returns the case folder.
func runCase(t *testing.T, ctx context.Context, l *lab.Lab, caseID string, hs []hostIfs) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "case: %s\ndatastore: %s\nduration: 3s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", caseID, l.Datastore, l.ClientKey, l.KnownHosts)
	for _, h := range hs {
		fmt.Fprintf(&sb, "  - name: %s\n    kind: linux\n    address: %s\n    captures:\n", h.host.Name, h.host.Addr)
		for _, i := range h.ifs {
			fmt.Fprintf(&sb, "      - { interface: %s }\n", i)
		}
	}
	p, err := plans.Parse(strings.ToLower(caseID)+".yaml", []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	bin := agenttest.Binary(t)
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, Version: "test",
		AgentBinary: func(string) ([]byte, error) { return os.ReadFile(bin) }})
	if _, err := o.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	return filepath.Join(out, p.CaseDir())
}

// TestAnalyzeVXLAN: an overlay (VXLAN between h01 and h03, over the
// routed path whose router drops one packet in 25 and delays by 10 ms),
// captured on the overlay devices and on every underlay interface:
// analyze takes the tunnel off, so the overlay's packets are the same
// packets at all six points, in one path from h01's overlay device to
// h03's, and the router's hop is the one that lost.
func TestAnalyzeVXLAN(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	ctx := context.Background()
	path, err := l.NewPath(ctx, l.Hosts[0], l.Hosts[1], l.Hosts[2], lab.PathOptions{Delay: 10 * time.Millisecond, DropEvery: 25})
	if err != nil {
		t.Fatal(err)
	}
	defer path.Close()
	ov, err := path.AddVXLAN(ctx, 4242)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	udpStream(t, sctx, path.A, path.B, ov.BOverlay, 62)
	caseDir := runCase(t, ctx, l, "VXLAN", []hostIfs{{path.A, []string{ov.If, lab.PathIf}}, {path.R, []string{lab.RouterIn, lab.RouterOut}}, {path.B, []string{lab.PathIf, ov.If}}})
	stop()
	c := openCase(t, caseDir)
	r, err := hops.Analyze(c, hops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	r.WriteText(&text)
	t.Logf("\n%s", text.String())
	want := "h01.vx0.RxTx > h01.p0.RxTx > h02.r0.RxTx > h02.r1.RxTx > h03.p0.RxTx > h03.vx0.RxTx"
	if len(r.Paths) == 0 || strings.Join(r.Paths[0].Points, " > ") != want {
		t.Fatalf("paths: %+v, want %s first", r.Paths, want)
	}
	for _, h := range r.Hops {
		router := h.From == "h02.r0.RxTx" && h.To == "h02.r1.RxTx"
		switch {
		case router && (h.Lost == 0 || math.Abs(h.Loss-1.0/25) > 0.015 || h.Latency == nil || math.Abs(h.Latency.P50-10) > 2):
			t.Errorf("router hop: %+v %+v; want 1 in 25 lost, 10 ms", h, h.Latency)
		case !router && h.Lost != 0:
			t.Errorf("%s > %s: %d lost, want none off the router", h.From, h.To, h.Lost)
		}
	}
	if w := r.Worst(); w == nil || w.From != "h02.r0.RxTx" {
		t.Errorf("the worst hop: %+v", w)
	}
}
