package orchestrator

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/live"
)

// LiveSink takes what casecap live streams: the capture points (once,
// before any packet), then pieces of each one's pcapng stream, the
// packets each stream dropped (its reader too slow), and each capture's
// final status. It is called from one goroutine per host.
type LiveSink interface {
	Captures(caps []live.Capture)
	Piece(capture int, b []byte)
	Dropped(capture int, total uint64)
	Ended(capture int, st agentproto.CaptureStatus)
}

// liveStopWait bounds how long, after Ctrl-C, casecap waits for each
// agent's last words (its captures' final status) before it ends the
// session anyway.
const liveStopWait = 10 * time.Second

// Live runs the plan's captures and streams their packets to sink until
// ctx ends (Ctrl-C) or every capture reaches its duration: connect,
// preflight, inventory, deploy and check as for run, then each host's
// agent runs its job in the foreground on the check's session, writing
// nothing on the host. Ending the session stops every capture there.
func (o *Orchestrator) Live(ctx context.Context, sink LiveSink) (*Manifest, error) {
	o.command = "live"
	defer o.disp.Close()
	defer o.closeAll()
	ok := o.runPhases(ctx,
		phase{name: phaseConnect, host: o.connectHost},
		phase{name: phasePreflight, host: o.preflightHost},
		phase{name: phaseInventory, host: o.inventoryHost},
		phase{name: phaseDeploy, all: o.deploy},
		phase{name: phaseCheck, host: o.checkHost},
	)
	if !ok {
		return o.manifest("live"), fmt.Errorf("nothing was started: %w", o.failures())
	}
	type hostJob struct {
		h     *hostRun
		job   *agentproto.Job
		first int // the index of its first capture in the sink
	}
	var jobs []hostJob
	var caps []live.Capture
	for _, h := range o.live() {
		j, err := o.liveJob(h)
		if err != nil {
			o.fail(h, phaseArm, err)
			continue
		}
		jobs = append(jobs, hostJob{h: h, job: j, first: len(caps)})
		for _, c := range j.Captures {
			caps = append(caps, live.Capture{Name: c.Name, Correction: h.facts.clock.correction()})
		}
	}
	if len(jobs) == 0 {
		return o.manifest("live"), fmt.Errorf("nothing was started: %w", o.failures())
	}
	sink.Captures(caps)
	var wg sync.WaitGroup
	for _, hj := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.liveHost(ctx, hj.h, hj.job, hj.first, sink); err != nil {
				o.fail(hj.h, phaseWatch, err)
			}
		}()
	}
	wg.Wait()
	return o.manifest("live"), o.failures()
}

// liveJob is a host's job for live: the plan's captures, starting at once
// and ending at their duration (on the host's clock), in no file.
func (o *Orchestrator) liveJob(h *hostRun) (*agentproto.Job, error) {
	var j *agentproto.Job
	switch d := h.drv.(type) {
	case linuxAgent:
		j = o.job(h, nil, nil)
	case *esxiAgent:
		j = o.job(h, nil, d.sessions)
	default:
		return nil, fmt.Errorf("casecap live needs casecap's agent on the host; in %s mode it cannot stream yet", h.drv.mode())
	}
	hostNow := time.Now().Add(h.facts.clock.correction())
	j.Until, j.Post = nil, 0
	for i := range j.Captures {
		c := &j.Captures[i]
		c.Stop, c.Duration, c.Ring = hostNow.Add(c.Duration), 0, nil
	}
	return j, j.Check()
}

// liveHost sends the job on the host's check session and reads its frames
// until the agent ends them; when ctx ends, it ends the session's input
// (which stops the captures) and waits a while for the last frames.
func (o *Orchestrator) liveHost(ctx context.Context, h *hostRun, j *agentproto.Job, first int, sink LiveSink) error {
	hs := h.run.held
	if hs == nil {
		return errors.New("no agent session held from check")
	}
	h.run.held = nil
	defer hs.close()
	raw, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if _, err := hs.proc.Stdin().Write(agentproto.LiveLine(raw)); err != nil {
		return fmt.Errorf("send the live job: %w", err)
	}
	o.disp.HostPhase(h.name(), "streaming")
	stopped := context.AfterFunc(ctx, func() {
		hs.proc.Stdin().Close() // the agent stops every capture and says its last
		time.AfterFunc(liveStopWait, hs.cancel)
	})
	defer stopped()
	ended := 0
	for {
		f, err := agentproto.ReadFrame(hs.out)
		if err != nil {
			if errors.Is(err, io.EOF) && ended == len(j.Captures) {
				return nil
			}
			if ctx.Err() != nil && ended == len(j.Captures) {
				return nil
			}
			return fmt.Errorf("the live stream ended before every capture's last word (%d of %d): %v", ended, len(j.Captures), err)
		}
		switch f.Kind {
		case agentproto.FramePackets:
			if f.Capture < len(j.Captures) {
				sink.Piece(first+f.Capture, f.Payload)
			}
		case agentproto.FrameDrops:
			if f.Capture < len(j.Captures) && len(f.Payload) == 8 {
				sink.Dropped(first+f.Capture, binary.LittleEndian.Uint64(f.Payload))
			}
		case agentproto.FrameStatus:
			var st agentproto.CaptureStatus
			if err := json.Unmarshal(f.Payload, &st); err == nil && f.Capture < len(j.Captures) {
				ended++
				sink.Ended(first+f.Capture, st)
			}
		case agentproto.FrameError:
			return errors.New(strings.TrimSpace(string(f.Payload)))
		}
	}
}
