//go:build linux

package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casecap/casecap/internal/agent/capture"
	"github.com/casecap/casecap/internal/agent/pktcap"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// liveQueue is the live stream's way out: frames queue here, one
// goroutine writes them to the session. A capture never waits for it:
// when the queue is full (the reader is slow), a piece of packets is
// dropped and counted, never the capture's own packets.
type liveQueue struct {
	frames  chan []byte
	dropped []atomic.Uint64 // packets dropped from the stream, per capture
}

// liveQueueFrames bounds the queue: at most this many pieces (of up to
// 64 KiB each) wait for the reader.
const liveQueueFrames = 64

// liveWriter is one capture's pcapng stream, as frames on the queue.
type liveWriter struct {
	q       *liveQueue
	index   int
	started bool
}

// Write queues a piece of the capture's stream. The first piece (the
// section and interface blocks) waits for room: without it the rest
// cannot be read. The others are dropped when there is none.
func (w *liveWriter) Write(p []byte) (int, error) {
	frame := agentproto.AppendFrame(nil, agentproto.FramePackets, w.index, p)
	if !w.started {
		w.started = true
		w.q.frames <- frame
		return len(p), nil
	}
	select {
	case w.q.frames <- frame:
	default:
		w.q.dropped[w.index].Add(countPackets(p))
	}
	return len(p), nil
}

// countPackets counts the enhanced packet blocks of whole pcapng blocks.
func countPackets(b []byte) uint64 {
	var n uint64
	for len(b) >= 12 {
		size := int(binary.LittleEndian.Uint32(b[4:]))
		if size < 12 || size > len(b) {
			break
		}
		if binary.LittleEndian.Uint32(b) == 6 {
			n++
		}
		b = b[size:]
	}
	return n
}

// Live runs a job's captures in the foreground, streaming their packets
// to out as frames (agentproto.AppendFrame) instead of writing files:
// casecap live. They start at once and run until ctx ends (casecap ended
// the session) or their stop; nothing is written on the host. Rings and
// triggers do not apply.
func Live(ctx context.Context, j *agentproto.Job, out io.Writer, opt Options) error {
	q := &liveQueue{frames: make(chan []byte, liveQueueFrames), dropped: make([]atomic.Uint64, len(j.Captures))}
	writerDone := make(chan error, 1)
	go func() {
		var err error
		for f := range q.frames {
			if err == nil {
				_, err = out.Write(f)
			}
		}
		writerDone <- err
	}()
	fail := func(err error) error {
		q.frames <- agentproto.AppendFrame(nil, agentproto.FrameError, 0xFFFF, []byte(err.Error()))
		close(q.frames)
		<-writerDone
		return err
	}
	if opt.Tcpdump == "" {
		opt.Tcpdump, _ = exec.LookPath("tcpdump")
	}
	own, haveOwn := bpfgen.ParseSSHConnection(opt.SSHConn)
	var caps []*capture.Capture
	var srcs []*pktcap.Stream
	stopAll := func() {
		for _, c := range caps {
			c.RequestStop(time.Unix(0, 1), agentproto.StopSignal)
			c.Run(context.Background())
		}
		for _, s := range srcs {
			s.End()
		}
	}
	for i, jc := range j.Captures {
		spec := capture.Spec{
			Name: jc.Name, Host: j.Host, Case: j.Case, Interface: jc.Interface, Direction: jc.Direction,
			Filter: jc.Filter, Exclude: jc.Exclude, Snaplen: jc.Snaplen, Stop: jc.Stop,
			MaxPackets: jc.MaxPackets, MaxBytes: jc.MaxBytes, Tcpdump: opt.Tcpdump, Version: opt.Version,
			Live: &liveWriter{q: q, index: i},
		}
		if jc.Buffer > 0 {
			spec.Buffer.BlockSize = 1 << 20
			spec.Buffer.Blocks = int(max(1, jc.Buffer>>20))
		}
		if jc.ExcludeOwnSSH && haveOwn {
			spec.Exclude = append(spec.Exclude, own)
		}
		if jc.Pktcap != nil {
			// ESXi: pktcap-uw's stream, the same way rings read it.
			src, cmdline, note, err := openPktcapStream(j, jc, opt)
			if err != nil {
				stopAll()
				return fail(fmt.Errorf("%s: %w", jc.Name, err))
			}
			srcs = append(srcs, src)
			spec.Source, spec.Note, spec.SourceFilter = src, note, cmdline
			spec.Interface = "pktcap-uw session " + jc.Name
		}
		c, err := capture.Arm(ctx, spec)
		if err != nil {
			stopAll()
			return fail(fmt.Errorf("%s: %w", jc.Name, err))
		}
		caps = append(caps, c)
	}
	// The stream's drop counts, twice a second while anything changed.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	sent := make([]uint64, len(caps))
	sendDrops := func(block bool) {
		for i := range caps {
			if n := q.dropped[i].Load(); n != sent[i] {
				f := agentproto.AppendFrame(nil, agentproto.FrameDrops, i, binary.LittleEndian.AppendUint64(nil, n))
				if block {
					q.frames <- f
				} else {
					select {
					case q.frames <- f:
					default:
						continue
					}
				}
				sent[i] = n
			}
		}
	}
	var wg sync.WaitGroup
	final := make([]agentproto.CaptureStatus, len(caps))
	for i, c := range caps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			final[i] = c.Run(ctx)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			sendDrops(false)
		}
	}
	for _, s := range srcs {
		s.End()
	}
	// The last words wait for room, but not for ever: a reader that
	// stopped reading must not keep the agent.
	last := make(chan struct{})
	go func() {
		sendDrops(true)
		for i, st := range final {
			b, _ := json.Marshal(st)
			q.frames <- agentproto.AppendFrame(nil, agentproto.FrameStatus, i, b)
		}
		close(last)
	}()
	select {
	case <-last:
		close(q.frames)
		return <-writerDone
	case <-time.After(5 * time.Second):
		return fmt.Errorf("the live stream's reader stopped reading")
	}
}
