//go:build linux

package capture_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/capture"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/plans/filter"
)

// TestRingKeepsAroundTheTrigger: a ring capture of a numbered stream
// rotates and deletes segments while it runs, a packet rule fires on a
// packet sent at a moment the capture does not know, and the file holds
// the stream from that packet's time - keep to its time + post, the
// trigger packet included, and nothing else; the segments are gone.
// Without a trigger, the file holds the last keep before the stop.
func TestRingKeepsAroundTheTrigger(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const interval = 5 * time.Millisecond
	go seqcast.Send(ctx, seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 3, Interval: interval})

	udp := uint8(17)
	rulePort := uint16(9998)
	keep, post := time.Second, 500*time.Millisecond
	dir := t.TempDir()
	arm := func(name string, stop time.Time, watch bool) (*capture.Capture, chan agentproto.TriggerPacket) {
		fired := make(chan agentproto.TriggerPacket, 1)
		s := capture.Spec{
			Name: name, File: filepath.Join(dir, name+".pcapng"), Host: "lab", Case: "ring", Interface: l.Hosts[0].Veth,
			Filter: filter.Filter{Proto: &udp}, Stop: stop, Version: "test",
			Ring:    &agentproto.Ring{Keep: keep, Segment: 200 * time.Millisecond},
			RingDir: filepath.Join(dir, "ring", name),
		}
		if watch {
			s.Watch = []capture.PacketWatch{{ID: "until[0]", Filter: filter.Filter{UDPPort: &rulePort}}}
			s.OnPacket = func(_ string, p agentproto.TriggerPacket) { fired <- p }
		}
		c, err := capture.Arm(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return c, fired
	}
	deadline := time.Now().Add(30 * time.Second)
	trig, fired := arm("lab.trig.RxTx", deadline, true)
	plainStop := time.Now().Add(4 * time.Second)
	plain, _ := arm("lab.plain.RxTx", plainStop, false)

	var wg sync.WaitGroup
	var trigSt, plainSt agentproto.CaptureStatus
	wg.Add(2)
	go func() { defer wg.Done(); trigSt = trig.Run(context.Background()) }()
	go func() { defer wg.Done(); plainSt = plain.Run(context.Background()) }()

	// Well past keep + the grace, segments have been deleted.
	time.Sleep(4500 * time.Millisecond)
	rs := trig.Status().Ring
	if rs == nil || rs.Deleted == 0 || rs.Segments > 20 {
		t.Fatalf("ring status %+v after 4.5 s: want segments deleted, at most keep + grace + one segment of them", rs)
	}
	if _, err := seqcast.Send(ctx, seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), rulePort), Stream: 4, Interval: interval, Count: 1}); err != nil {
		t.Fatal(err)
	}
	var tp agentproto.TriggerPacket
	select {
	case tp = <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("the packet rule did not fire")
	}
	at := tp.Time
	trig.Trigger(at, at.Add(post))
	wg.Wait()
	cancel()

	if trigSt.StopReason != agentproto.StopTrigger || trigSt.Error != "" {
		t.Fatalf("triggered capture: %+v", trigSt)
	}
	if len(tp.Data) == 0 || tp.Capture != "lab.trig.RxTx" {
		t.Errorf("trigger packet %+v", tp)
	}
	check := func(name string, st agentproto.CaptureStatus, from, to time.Time) {
		t.Helper()
		file := filepath.Join(dir, name+".pcapng")
		got, err := seqcast.ReadFile(file, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Contiguous() {
			t.Errorf("%s: stream not contiguous: %+v", name, got)
		}
		// The file starts within a few packets after from and ends within
		// a few before to.
		if d := got.FirstSeen.Sub(from); d < 0 || d > 4*interval {
			t.Errorf("%s: first packet at %v, %v after the ring's start: want within %v", name, got.FirstSeen, d, 4*interval)
		}
		if d := to.Sub(got.LastSeen); d < 0 || d > 4*interval {
			t.Errorf("%s: last packet at %v, %v before the end: want within %v", name, got.LastSeen, d, 4*interval)
		}
		if uint64(got.Packets+got.Other) != st.Packets || !st.Start.Equal(from) {
			t.Errorf("%s: status %d packets from %v, file %d from %v", name, st.Packets, st.Start, got.Packets+got.Other, from)
		}
		if _, err := os.Stat(filepath.Join(dir, "ring", name)); !os.IsNotExist(err) {
			t.Errorf("%s: the segments are still there (%v)", name, err)
		}
		t.Logf("%s: packets %d..%d (%d), %v to %v", name, got.First, got.Last, got.Packets, got.FirstSeen.Sub(from), to.Sub(got.LastSeen))
	}
	check("lab.trig.RxTx", trigSt, at.Add(-keep), at.Add(post))
	check("lab.plain.RxTx", plainSt, plainStop.Add(-keep), plainStop)
	if s, err := seqcast.ReadFile(filepath.Join(dir, "lab.trig.RxTx.pcapng"), 4); err != nil || s.Packets != 1 {
		t.Errorf("the trigger packet is not in the file once: %+v %v", s, err)
	}
}
