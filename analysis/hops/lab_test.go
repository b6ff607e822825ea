//go:build linux

package hops_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
// p50 latency the delay within 2 ms, and no loss on the other hops (nor
// reordering, nor duplicates, anywhere).
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
	// A receiver on h03 (no port-unreachable chatter), a sender on h01.
	var rx *net.UDPConn
	if err := lab.InHost(path.B, func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: path.BAddr.AsSlice(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	var tx *net.UDPConn
	if err := lab.InHost(path.A, func() (err error) {
		tx, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: path.BAddr.AsSlice(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	const stream = 61
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			tx.Write(seqcast.Packet{Stream: stream, Seq: seq, Sent: time.Now()}.Marshal(nil))
		}
	}()

	var sb strings.Builder
	fmt.Fprintf(&sb, "case: PATH\ndatastore: %s\nduration: 3s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", l.Datastore, l.ClientKey, l.KnownHosts)
	for _, h := range []struct {
		host *lab.Host
		ifs  []string
	}{{path.A, []string{lab.PathIf}}, {path.R, []string{lab.RouterIn, lab.RouterOut}}, {path.B, []string{lab.PathIf}}} {
		fmt.Fprintf(&sb, "  - name: %s\n    kind: linux\n    address: %s\n    captures:\n", h.host.Name, h.host.Addr)
		for _, i := range h.ifs {
			fmt.Fprintf(&sb, "      - { interface: %s, filter: { udpport: 9999 } }\n", i)
		}
	}
	p, err := plans.Parse("path.yaml", []byte(sb.String()))
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
	stop()
	st := path.Stats()
	t.Logf("router: forwarded %d, dropped %d", st.Forwarded, st.Dropped)

	caseDir := filepath.Join(out, p.CaseDir())
	c, err := casedir.Open(caseDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hops.Analyze(c, hops.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	r.WriteText(&text)
	t.Logf("\n%s", text.String())

	in, outName := "h02.r0.RxTx", "h02.r1.RxTx"
	if len(r.Paths) == 0 || strings.Join(r.Paths[0].Points, " > ") != "h01.p0.RxTx > "+in+" > "+outName+" > h03.p0.RxTx" {
		t.Fatalf("paths: %+v", r.Paths)
	}
	// The truth from the files' sequence numbers: what r0 saw and r1
	// did not.
	sIn, err1 := seqcast.ReadFile(filepath.Join(caseDir, in+".pcapng"), stream)
	sOut, err2 := seqcast.ReadFile(filepath.Join(caseDir, outName+".pcapng"), stream)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	truth := int64(sIn.Distinct) - int64(sOut.Distinct)
	for _, h := range r.Hops {
		if h.Reordered != 0 || h.Duplicates != 0 {
			t.Errorf("%s > %s: %d reordered, %d duplicates; the path neither reorders nor duplicates", h.From, h.To, h.Reordered, h.Duplicates)
		}
		switch {
		case h.From == in && h.To == outName:
			// The in-flight edge: packets at r0 in the last 20 ms are not
			// counted (they would reach r1 after its end), and r1 holds the
			// first 20 ms of packets r0 saw before its window... both ends
			// are within a few packets of the sequence numbers' count.
			if d := int64(h.Lost) - truth; d < -2 || d > 2 || h.Latency == nil || math.Abs(h.Latency.P50-20) > 2 {
				t.Errorf("router hop: lost %d (the files' sequence numbers: %d), latency %+v; want the loss and a p50 of 20 ms", h.Lost, truth, h.Latency)
			}
			if ratio := float64(h.Lost) / float64(h.Packets); math.Abs(ratio-1.0/dropEvery) > 0.005 {
				t.Errorf("router hop: loss %.4f, the router drops 1 in %d", ratio, dropEvery)
			}
		default:
			if h.Lost != 0 {
				t.Errorf("%s > %s: %d lost, want none", h.From, h.To, h.Lost)
			}
		}
	}
	if w := r.Worst(); w == nil || w.From != in || w.To != outName {
		t.Errorf("the worst hop: %+v, want %s > %s", w, in, outName)
	}
}
