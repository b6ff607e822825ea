package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
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

// arm writes each host's job and starts its agent, which returns once
// every capture is armed.
func (o *Orchestrator) arm(ctx context.Context) {
	p := o.opt.Plan
	o.each(ctx, "arm", func(ctx context.Context, h *hostRun) error {
		// Never clobber: files of an earlier run of this case stay put.
		for _, c := range h.plan.Captures {
			f := path.Join(h.caseDir(p), c.File)
			if _, err := h.conn.Stat(f); err == nil {
				return fmt.Errorf("%s already exists on the datastore (an earlier run of case %s): collect it, then remove it, or use another case id", f, p.Case)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("check %s: %w", f, err)
			}
		}
		dir := h.stateDir(p)
		if err := h.conn.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		h.record = &Record{Casecap: o.opt.Version, Case: p.Case, Host: h.name(), Address: h.plan.Address, Kind: h.kind,
			OS: h.os, Arch: h.arch, Agent: h.agent, ClockOffset: h.offset, RTT: h.rtt, ArmedAt: time.Now()}
		if err := o.writeRecord(h); err != nil {
			return err
		}
		raw, err := json.MarshalIndent(o.job(h), "", "  ")
		if err != nil {
			return err
		}
		jobFile := path.Join(dir, agent.JobFile)
		if err := h.conn.WriteFile(jobFile, bytes.NewReader(raw), 0o600); err != nil {
			return err
		}
		if _, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "start", jobFile), nil); err != nil {
			return err
		}
		h.armed = true
		o.disp.HostPhase(h.name(), "armed")
		return nil
	})
}

// margin is how far ahead an agreed instant must be for every host to hear
// of it in time: the slowest short agent command seen (check), twice, plus
// three of the worst round trips.
func (o *Orchestrator) margin() time.Duration {
	var lat, rtt time.Duration
	for _, h := range o.live() {
		lat, rtt = max(lat, h.execLat), max(rtt, h.rtt)
	}
	return min(max(2*lat+3*rtt+20*time.Millisecond, 50*time.Millisecond), 5*time.Second)
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
		h.record.Begin = t0
		if late := time.Since(t0); late > 0 {
			// The agent keeps packets by timestamp from t0 on, but those it
			// read before hearing of t0 were already dropped.
			h.record.BeginLate = late
			o.log.Warn("begin reached the host after the agreed instant", "host", h.name(), "late", late)
		}
		o.disp.HostPhase(h.name(), "capturing")
		return o.writeRecord(h)
	})
	return t0
}

// stopTogether stops every capture at one instant (a few round trips from
// now), each host told that instant on its own clock.
func (o *Orchestrator) stopTogether(ctx context.Context) time.Time {
	t1 := time.Now().Add(o.margin())
	o.each(ctx, "stop", func(ctx context.Context, h *hostRun) error {
		at := t1.Add(h.offset)
		if _, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "stop", "--at", at.Format(time.RFC3339Nano), h.stateDir(o.opt.Plan)), nil); err != nil {
			return err
		}
		if h.record != nil {
			h.record.Stop = t1
			return o.writeRecord(h)
		}
		return nil
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
