package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// armSlack is how long armed captures wait for their begin before their
// hard deadline ends them anyway (if casecap died in between).
const armSlack = 2 * time.Minute

// direction maps Linux points to the agent's direction.
func direction(points []string) bpfgen.Direction {
	rx, tx := slices.Contains(points, "Rx"), slices.Contains(points, "Tx")
	switch {
	case rx && !tx:
		return bpfgen.In
	case tx && !rx:
		return bpfgen.Out
	}
	return bpfgen.Both
}

// job is what the agent on h runs: every capture armed, waiting for begin.
func (o *Orchestrator) job(h *hostRun) *agentproto.Job {
	p := o.opt.Plan
	j := &agentproto.Job{Version: agentproto.JobVersion, Case: p.Case, Host: h.name(), StateDir: h.stateDir(p), CaseDir: h.caseDir(p)}
	hostNow := time.Now().Add(h.offset)
	j.ESXi = h.esxi
	for _, c := range h.captures {
		jc := agentproto.JobCapture{
			Name: strings.TrimSuffix(c.File, ".pcapng"), File: c.File,
			Interface: c.Target.Name, Direction: direction(c.Points),
			Filter: c.Filter, ExcludeOwnSSH: c.ExcludeOwnSSH, Snaplen: c.Snaplen,
			Duration: c.Duration, Stop: hostNow.Add(c.Duration + armSlack),
			MaxPackets: c.MaxPackets, MaxBytes: c.MaxBytes, MinFree: c.MinFree, Buffer: c.Buffer,
		}
		if pc, ok := h.pktcaps[c.File]; ok {
			jc.Pktcap = &pc
		}
		j.Captures = append(j.Captures, jc)
	}
	return j
}

// arm starts each host's agent on its job, sent on stdin with casecap's
// record of the run: one round trip per host. The agent stores both on the
// datastore, refuses to clobber an earlier run's files, and answers once
// every capture is armed. The session stays open for the begin (see held).
func (o *Orchestrator) arm(ctx context.Context) {
	p := o.opt.Plan
	o.each(ctx, "arm", func(ctx context.Context, h *hostRun) error {
		h.record = &Record{Casecap: o.opt.Version, Case: p.Case, Host: h.name(), Address: h.plan.Address, Kind: h.kind,
			OS: h.os, Arch: h.arch, Agent: h.agent, ClockOffset: h.offset, RTT: h.rtt, ArmedAt: time.Now(),
			Mode: h.mode, Captures: h.captures}
		j := o.job(h)
		var err error
		if j.Record, err = json.Marshal(h.record); err != nil {
			return err
		}
		if h.mode == modeSSH {
			if err := o.armSSH(ctx, h, j.Record); err != nil {
				return err
			}
			o.disp.HostPhase(h.name(), "armed (ssh mode)")
			return nil
		}
		raw, err := json.Marshal(j)
		if err != nil {
			return err
		}
		began := time.Now()
		hs, err := startHeld(ctx, h.conn, append(slices.Clone(h.agent), "start", "--hold", "-"))
		if err != nil {
			return err
		}
		// From here on something may run there, answer or not: an aborted
		// start stops it.
		h.armed = true
		ans, err := hs.send(append(raw, '\n'))
		if err != nil {
			return err
		}
		var armed struct {
			Arming time.Duration `json:"arming_ns"`
		}
		if err := json.Unmarshal(ans, &armed); err != nil {
			hs.close()
			return fmt.Errorf("the agent's answer to start: %q: %w", bytes.TrimSpace(ans), err)
		}
		// The round trip of a short command, for the stop margin: this
		// one's, less the time the agent spent arming.
		h.execLat = max(time.Since(began)-armed.Arming, 0)
		if err := h.hold(hs); err != nil {
			return err
		}
		o.disp.HostPhase(h.name(), "armed")
		return nil
	})
}

// hold keeps an armed host's session for its begin, once it has measured
// the session's own latency, now, under the load of every host arming:
// what a begin line will cost. From here on the session outlives the arm
// phase: the begin or a cleanup closes it.
func (h *hostRun) hold(hs *held) error {
	pinged := time.Now()
	if ans, err := hs.send([]byte("ping\n")); err != nil || string(ans) != "pong\n" {
		hs.close()
		return fmt.Errorf("the held session does not answer (%q): %v", ans, err)
	}
	h.lineLat = time.Since(pinged)
	if !hs.unhook() {
		hs.close() // the phase ended (another host failed first): no begin will come
		return errInterrupted
	}
	h.held = hs
	return nil
}

// held is the session that armed a host's captures, kept open for their
// begin: one line each way on an open session, instead of a new session
// and a new process per host at the moment that matters. Its end before a
// begin disarms the host's captures.
type held struct {
	proc   hosts.Process
	out    *bufio.Reader
	once   sync.Once
	result error // the process's exit, once ended
	// cancel ends the session; unhook stops the arm phase's context from
	// ending it (it returns false if that already happened).
	cancel context.CancelFunc
	unhook func() bool
}

// startHeld starts the session that will be held: a context of its own,
// which the phase's context ends only until the host is armed (a failure
// elsewhere then cuts the arming short), so that it lives past the phase.
func startHeld(phase context.Context, c hosts.Conn, argv []string) (*held, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(phase))
	unhook := context.AfterFunc(phase, cancel)
	proc, err := c.Start(ctx, argv)
	if err != nil {
		unhook()
		cancel()
		return nil, err
	}
	return &held{proc: proc, out: bufio.NewReader(proc.Stdout()), cancel: cancel, unhook: unhook}, nil
}

// send writes a line and reads the answer line; when the far end has gone,
// the error is its exit status and stderr.
func (hs *held) send(line []byte) ([]byte, error) {
	_, werr := hs.proc.Stdin().Write(line)
	ans, rerr := hs.out.ReadBytes('\n')
	if werr == nil && rerr == nil {
		return ans, nil
	}
	if err := hs.close(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("the agent's start ended without answering: %v", errors.Join(werr, rerr))
}

// close ends the session (once; later calls return the same result); the
// captures stay armed until a begin from another session, a stop, or their
// hard deadline.
func (hs *held) close() error {
	hs.once.Do(func() {
		hs.proc.Stdin().Close()
		hs.result = hs.proc.Wait()
		if hs.cancel != nil {
			hs.cancel()
		}
	})
	return hs.result
}

// rounds is how many batches of at most Parallel hosts a phase takes.
func (o *Orchestrator) rounds() time.Duration {
	n := len(o.live())
	return time.Duration(max(1, (n+o.opt.Parallel-1)/o.opt.Parallel))
}

// stopMargin is how far ahead an instant told by a new agent command per
// host must be for every host to hear of it in time: the slowest round trip
// of a short agent command seen (arm, less the arming itself), once per
// batch of hosts and half as much again, plus three of the worst network
// round trips. A host that still hears late says so in its status.
func (o *Orchestrator) stopMargin() time.Duration {
	var lat, rtt time.Duration
	for _, h := range o.live() {
		lat, rtt = max(lat, h.execLat), max(rtt, h.rtt)
	}
	return clampMargin(lat*o.rounds() + lat/2 + 3*rtt + 20*time.Millisecond)
}

// beginMargin is the same for a begin told on the held sessions: their
// slowest ping under load, once per batch of hosts and once more, plus
// three network round trips.
func (o *Orchestrator) beginMargin() time.Duration {
	var lat, rtt time.Duration
	for _, h := range o.live() {
		if h.held == nil {
			return o.stopMargin()
		}
		lat, rtt = max(lat, h.lineLat), max(rtt, h.rtt)
	}
	return clampMargin(lat*(o.rounds()+1) + 3*rtt + 20*time.Millisecond)
}

func clampMargin(d time.Duration) time.Duration {
	return min(max(d, 50*time.Millisecond), 5*time.Second)
}

// beginTogether starts every armed capture at one instant, each host told
// that instant on its own clock over its held session. It returns the
// instant (casecap's clock).
func (o *Orchestrator) beginTogether(ctx context.Context) time.Time {
	t0 := time.Now().Add(o.beginMargin())
	o.each(ctx, "begin", func(ctx context.Context, h *hostRun) error {
		at := t0.Add(h.offset).Format(time.RFC3339Nano)
		if h.mode == modeSSH {
			// The script starts pktcap-uw when the line arrives, and its
			// host's clock was not measured: send it half a round trip
			// before the instant.
			time.Sleep(time.Until(t0) - h.lineLat/2)
		}
		if hs := h.held; hs != nil {
			h.held = nil
			if _, err := hs.send([]byte("begin " + at + "\n")); err != nil {
				return err
			}
			if err := hs.close(); err != nil {
				return err
			}
		} else if _, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "begin", "--at", at, h.stateDir(o.opt.Plan)), nil); err != nil {
			return err
		}
		if late := time.Since(t0); late > 0 {
			// The agent keeps packets by timestamp from t0 on, but those it
			// read before hearing of t0 were already dropped; its status
			// says by how much it was late.
			o.log.Warn("begin may have reached the host after the agreed instant", "host", h.name(), "late", late)
		}
		o.disp.HostPhase(h.name(), "capturing")
		return nil
	})
	return t0
}

// stopTogether stops every capture at one instant (a few round trips from
// now), each host told that instant on its own clock.
func (o *Orchestrator) stopTogether(ctx context.Context) time.Time {
	t1 := time.Now().Add(o.stopMargin())
	o.each(ctx, "stop", func(ctx context.Context, h *hostRun) error {
		if h.mode == modeSSH {
			time.Sleep(time.Until(t1))
			return o.requestStopSSH(h)
		}
		at := t1.Add(h.offset)
		out, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "stop", "--at", at.Format(time.RFC3339Nano), h.stateDir(o.opt.Plan)), nil)
		if err != nil {
			return err
		}
		// No agent there to stop: it ended; if its captures had not, it died.
		var ans struct {
			Running bool `json:"running"`
		}
		if json.Unmarshal(out, &ans) == nil && !ans.Running {
			h.agentGone = !finished(h.status)
		}
		return nil
	})
	return t1
}

// cleanup stops, with its own timeout, every agent that was armed on the
// hosts given, all at once: after an aborted run nothing is left running,
// and a host that failed once armed (in a partial run) is not left waiting
// for a begin.
func (o *Orchestrator) cleanup(hs []*hostRun) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o.eachQuiet(ctx, hs, func(h *hostRun) {
		if h.held != nil {
			h.held.close()
			h.held = nil
		}
		if !h.armed {
			return
		}
		if h.mode == modeSSH {
			if err := o.requestStopSSH(h); err != nil {
				o.log.Error("cleanup: could not stop the captures", "host", h.name(), "err", err)
			}
			return
		}
		// Waiting for the agent to end: captures that never began leave no
		// file, so that nothing of this start is in the way of the next.
		if _, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "stop", "--wait", "10s", h.stateDir(o.opt.Plan)), nil); err != nil {
			o.log.Error("cleanup: could not stop the agent", "host", h.name(), "err", err)
		}
	})
}
