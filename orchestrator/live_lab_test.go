//go:build linux

package orchestrator_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/live"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// liveSink keeps what casecap live streamed, in the order shown.
type liveSink struct {
	mu      sync.Mutex
	feed    *live.Feed
	caps    []live.Capture
	shown   []live.Packet
	ended   map[int]agentproto.CaptureStatus
	dropped map[int]uint64
}

func (s *liveSink) Captures(caps []live.Capture) {
	s.caps, s.ended, s.dropped = caps, map[int]agentproto.CaptureStatus{}, map[int]uint64{}
	s.feed = &live.Feed{Captures: caps, Out: func(p live.Packet) { s.mu.Lock(); s.shown = append(s.shown, p); s.mu.Unlock() }}
	s.feed.Start()
}
func (s *liveSink) Piece(i int, b []byte) { s.feed.Piece(i, b) }
func (s *liveSink) Dropped(i int, n uint64) {
	s.mu.Lock()
	s.dropped[i] = n
	s.mu.Unlock()
}
func (s *liveSink) Ended(i int, st agentproto.CaptureStatus) {
	s.mu.Lock()
	s.ended[i] = st
	s.mu.Unlock()
}

// agentsServing lists the agent processes still serving a session on
// this machine (the lab hosts' processes are visible from here).
func agentsServing() []string {
	var left []string
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if strings.Contains(args[0], "casecap-agent") && len(args) > 1 && args[1] == agentproto.CmdServe {
			left = append(left, filepath.Base(filepath.Dir(f))+": "+strings.Join(args, " "))
		}
	}
	return left
}

// TestLive is issue 16's end-to-end test on Linux hosts: casecap live on
// two hosts shows the numbered stream of both capture points in one time
// order, each packet within a second of its sending; Ctrl-C (the context)
// stops every capture, with its final word, and no agent is left running.
func TestLive(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 70, 2*time.Millisecond)
	p := labPlan(t, l, "LIVE", time.Minute, "      - interface: eth0\n        filter: { udpport: 9999 }\n")
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: t.TempDir(), AgentBinary: agentBinary(t), Version: "test",
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	ctx, cancel := context.WithCancel(context.Background())
	sink := &liveSink{}
	done := make(chan error, 1)
	began := time.Now()
	go func() { _, err := o.Live(ctx, sink); done <- err }()
	// The first packet shown: within a second of its sending (the
	// reordering delay is half of that).
	var firstLag time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && firstLag == 0; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("live ended before showing a packet: %v", err)
		default:
		}
		sink.mu.Lock()
		if len(sink.shown) > 0 {
			firstLag = time.Since(sink.shown[0].Time)
		}
		sink.mu.Unlock()
	}
	time.Sleep(2 * time.Second)
	sink.mu.Lock()
	lag := time.Since(sink.shown[len(sink.shown)-1].Time)
	sink.mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.feed.Close()
	t.Logf("live took %v to show its first packet, %v after it was stamped; the last shown then, %v after", time.Since(began), firstLag, lag)
	if firstLag <= 0 || firstLag > time.Second || lag > time.Second {
		t.Errorf("packets shown %v and %v after their stamp, want within a second", firstLag, lag)
	}
	var lines strings.Builder
	pr := &live.Printer{W: &lines, Captures: sink.caps}
	for _, pk := range sink.shown[:min(4, len(sink.shown))] {
		pr.Print(pk)
	}
	t.Logf("the first lines:\n%s", lines.String())
	per := map[int]int{}
	for i, pk := range sink.shown {
		per[pk.Capture]++
		if i > 0 && pk.Time.Before(sink.shown[i-1].Time) {
			t.Fatalf("packet %d shown out of time order", i)
		}
	}
	for i, c := range sink.caps {
		st, ok := sink.ended[i]
		if per[i] < 500 || !ok || st.StopReason != agentproto.StopSignal || st.Packets != uint64(per[i]) || sink.dropped[i] != 0 {
			t.Errorf("%s: shown %d, final %+v (%v), stream drops %d", c.Name, per[i], st, ok, sink.dropped[i])
		}
	}
	if left := agentsServing(); len(left) > 0 {
		t.Errorf("agents left running after live: %v", left)
	}
	if m, _ := filepath.Glob(filepath.Join(l.Datastore, "Case_LIVE")); len(m) > 0 {
		t.Errorf("live wrote a case folder on the datastore: %v", m)
	}
}

// TestLiveESXi: casecap live on the lab's ESXi hosts (agent mode): the
// agent reads pktcap-uw's stream; every VM's datagrams are shown, and no
// pktcap-uw is left running after Ctrl-C.
func TestLiveESXi(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 2, ESXi: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	var b strings.Builder
	fmt.Fprintf(&b, "case: LIVE-ESX\ndatastore: %s\nduration: 1m\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", lab.ESXiDatastore, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    kind: esxi\n    address: %s\n    captures:\n      - vm: %s\n        vnic: eth0\n        points: [VnicTx, VnicRx]\n        filter: { udpport: 9999 }\n", h.Name, h.Addr, h.VMs[0].Name)
	}
	file := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(file, []byte(b.String()), 0o600)
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: t.TempDir(), AgentBinary: agentBinary(t), Version: "test"})
	lctx, stop := context.WithCancel(context.Background())
	sink := &liveSink{}
	done := make(chan error, 1)
	go func() { _, err := o.Live(lctx, sink); done <- err }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		sink.mu.Lock()
		n := len(sink.shown)
		sink.mu.Unlock()
		if n > 0 {
			break
		}
	}
	time.Sleep(2 * time.Second)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.feed.Close()
	per := map[int]int{}
	for _, pk := range sink.shown {
		per[pk.Capture]++
	}
	for i, c := range sink.caps {
		if st, ok := sink.ended[i]; per[i] < 200 || !ok || st.Packets != uint64(per[i]) || !strings.Contains(st.Filter, "pktcap-uw") {
			t.Errorf("%s: shown %d, final %+v", c.Name, per[i], st)
		}
	}
	if left := streamingPktcaps(); len(left) > 0 {
		t.Errorf("pktcap-uw streams still running after live: %v", left)
	}
}
