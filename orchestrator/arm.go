package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/casecap/casecap/agent"
	"github.com/casecap/casecap/agent/bpfgen"
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
func (o *Orchestrator) job(h *hostRun) *agent.Job {
	p := o.opt.Plan
	j := &agent.Job{Version: agent.JobVersion, Case: p.Case, Host: h.name(), StateDir: h.stateDir(p), CaseDir: h.caseDir(p)}
	hostNow := time.Now().Add(h.offset)
	for _, c := range h.plan.Captures {
		j.Captures = append(j.Captures, agent.JobCapture{
			Name: strings.TrimSuffix(c.File, ".pcapng"), File: c.File,
			Interface: c.Target.Name, Direction: direction(c.Points),
			Filter: c.Filter, ExcludeOwnSSH: c.ExcludeOwnSSH, Snaplen: c.Snaplen,
			Duration: c.Duration, Stop: hostNow.Add(c.Duration + armSlack),
			MaxPackets: c.MaxPackets, MaxBytes: c.MaxBytes, MinFree: c.MinFree, Buffer: c.Buffer,
		})
	}
	return j
}

// arm starts each host's agent on its job, sent on stdin with casecap's
// record of the run: one round trip per host. The agent stores both on the
// datastore, refuses to clobber an earlier run's files, and returns once
// every capture is armed.
func (o *Orchestrator) arm(ctx context.Context) {
	p := o.opt.Plan
	o.each(ctx, "arm", func(ctx context.Context, h *hostRun) error {
		h.record = &Record{Casecap: o.opt.Version, Case: p.Case, Host: h.name(), Address: h.plan.Address, Kind: h.kind,
			OS: h.os, Arch: h.arch, Agent: h.agent, ClockOffset: h.offset, RTT: h.rtt, ArmedAt: time.Now()}
		j := o.job(h)
		var err error
		if j.Record, err = json.Marshal(h.record); err != nil {
			return err
		}
		raw, err := json.Marshal(j)
		if err != nil {
			return err
		}
		began := time.Now()
		out, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "start", "-"), bytes.NewReader(raw))
		if err != nil {
			return err
		}
		h.armed = true
		// The round trip of a short command, for the begin margin: this
		// one's, less the time the agent spent arming.
		var ans struct {
			Arming time.Duration `json:"arming_ns"`
		}
		_ = json.Unmarshal(out, &ans)
		h.execLat = max(time.Since(began)-ans.Arming, 0)
		o.disp.HostPhase(h.name(), "armed")
		return nil
	})
}

// margin is how far ahead an agreed instant must be for every host to hear
// of it in time: the slowest round trip of a short agent command seen (arm,
// less the arming itself) and half as much again, plus three of the worst
// network round trips. A host that still hears late says so in its status.
func (o *Orchestrator) margin() time.Duration {
	var lat, rtt time.Duration
	for _, h := range o.live() {
		lat, rtt = max(lat, h.execLat), max(rtt, h.rtt)
	}
	return min(max(lat*3/2+3*rtt+20*time.Millisecond, 50*time.Millisecond), 5*time.Second)
}

// beginTogether starts every armed capture at one instant, each host told
// that instant on its own clock. It returns the instant (casecap's clock).
func (o *Orchestrator) beginTogether(ctx context.Context) time.Time {
	t0 := time.Now().Add(o.margin())
	o.each(ctx, "begin", func(ctx context.Context, h *hostRun) error {
		at := t0.Add(h.offset)
		if _, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "begin", "--at", at.Format(time.RFC3339Nano), h.stateDir(o.opt.Plan)), nil); err != nil {
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
	t1 := time.Now().Add(o.margin())
	o.each(ctx, "stop", func(ctx context.Context, h *hostRun) error {
		at := t1.Add(h.offset)
		_, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "stop", "--at", at.Format(time.RFC3339Nano), h.stateDir(o.opt.Plan)), nil)
		return err
	})
	return t1
}

// cleanup stops, with its own timeout, every agent that was armed: after an
// aborted run nothing is left running.
func (o *Orchestrator) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range o.hosts {
		if !h.armed || h.conn == nil {
			continue
		}
		if _, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "stop", h.stateDir(o.opt.Plan)), nil); err != nil {
			o.log.Error("cleanup: could not stop the agent", "host", h.name(), "err", err)
		}
	}
}
