//go:build linux

package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/plans/filter"
)

// liveResult is what a reader of a live stream got.
type liveResult struct {
	packets  int
	firstLag time.Duration // from the first packet's timestamp to its arrival here
	drops    uint64
	status   *agentproto.CaptureStatus
	err      error
}

// readLive reads a one-capture live stream: its pcapng pieces through
// pcapgo, as casecap would, its drop counts and its final status; stall
// makes it stop reading for a while after its first frame.
func readLive(r io.Reader, stall time.Duration) liveResult {
	var res liveResult
	br := bufio.NewReader(r)
	pr, pw := io.Pipe()
	got := make(chan liveResult, 1)
	go func() {
		var g liveResult
		ng, err := pcapgo.NewNgReader(pr, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			g.err = err
			got <- g
			io.Copy(io.Discard, pr)
			return
		}
		for {
			_, ci, err := ng.ReadPacketData()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					g.err = err
				}
				got <- g
				io.Copy(io.Discard, pr)
				return
			}
			if g.packets == 0 {
				g.firstLag = time.Since(ci.Timestamp)
			}
			g.packets++
		}
	}()
	first := true
	for {
		f, err := agentproto.ReadFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				res.err = err
			}
			break
		}
		switch f.Kind {
		case agentproto.FramePackets:
			pw.Write(f.Payload)
		case agentproto.FrameDrops:
			res.drops = binary.LittleEndian.Uint64(f.Payload)
		case agentproto.FrameStatus:
			res.status = new(agentproto.CaptureStatus)
			json.Unmarshal(f.Payload, res.status)
		case agentproto.FrameError:
			res.err = errors.New(string(f.Payload))
		}
		if first && stall > 0 {
			first = false
			time.Sleep(stall)
		}
	}
	pw.Close()
	g := <-got
	res.packets, res.firstLag = g.packets, g.firstLag
	if res.err == nil {
		res.err = g.err
	}
	return res
}

func liveJob(l *lab.Lab) *agentproto.Job {
	port := uint16(9999)
	return &agentproto.Job{Version: agentproto.JobVersion, Case: "live", Host: "lab", StateDir: "/nonexistent/state", CaseDir: "/nonexistent/case",
		Captures: []agentproto.JobCapture{{Name: "lab.veth.RxTx", File: "lab.veth.RxTx.pcapng", Interface: l.Hosts[0].Veth,
			Filter: filter.Filter{UDPPort: &port}, Stop: time.Now().Add(time.Minute)}}}
}

// TestLive: a live capture streams its packets as they come (the first
// within a second of its stamp), as pcapng that pcapgo reads, stops when
// its context ends, writes nothing on the host, and ends with its status.
func TestLive(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 1)
	labtest.Stream(t, l, 5, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Live(ctx, liveJob(l), pw, Options{Version: "test"}); pw.Close() }()
	res := make(chan liveResult, 1)
	go func() { res <- readLive(pr, 0) }()
	time.Sleep(2 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.status == nil || r.packets < 1000 || uint64(r.packets) != r.status.Packets || r.drops != 0 {
		t.Fatalf("live stream: %d packets, %d dropped, status %+v, err %v", r.packets, r.drops, r.status, r.err)
	}
	if r.firstLag > time.Second || r.status.StopReason != agentproto.StopSignal {
		t.Errorf("the first packet came %v after its stamp; stop reason %s", r.firstLag, r.status.StopReason)
	}
	if m, _ := filepath.Glob("/nonexistent/*"); len(m) > 0 {
		t.Errorf("live wrote on the host: %v", m)
	}
}

// TestLiveStalledReader: a reader that stops reading makes the stream
// drop (counted, and said), never the capture: the capture's kernel
// counters show no drop, and the stream stays readable.
func TestLiveStalledReader(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Live(ctx, liveJob(l), pw, Options{Version: "test"}); pw.Close() }()
	res := make(chan liveResult, 1)
	go func() { res <- readLive(pr, 3*time.Second) }()
	time.Sleep(300 * time.Millisecond)
	sent, err := seqcast.Flood(context.Background(), seqcast.FloodOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 6, Rate: 50_000, Count: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil || r.status == nil {
		t.Fatalf("live stream: %+v", r)
	}
	if r.drops == 0 || r.status.Drops != 0 || r.status.Packets < sent.Packets*99/100 || uint64(r.packets)+r.drops != r.status.Packets {
		t.Fatalf("sent %d; the capture kept %d (kernel drops %d); the stream carried %d and dropped %d: want the stream, not the capture, to drop",
			sent.Packets, r.status.Packets, r.status.Drops, r.packets, r.drops)
	}
	t.Logf("sent %d; the capture kept %d; the stream carried %d and dropped %d", sent.Packets, r.status.Packets, r.packets, r.drops)
}
