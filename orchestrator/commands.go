package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// ErrDetached says casecap stopped waiting (second Ctrl-C): the captures
// end on their own; collect them later.
var ErrDetached = errors.New("stopped waiting")

// prepare runs the phases before any capture exists. It returns false when
// the run must not go on (every host failed, or one did and partial runs
// are not allowed, or the case is another run's, or the start was called
// off).
func (o *Orchestrator) prepare(ctx context.Context) bool {
	return o.runPhases(ctx,
		phase{name: phaseConnect, host: o.connectHost},
		phase{name: phasePreflight, host: o.preflightHost},
		phase{name: phaseClaim, all: o.claim},
		phase{name: phaseInventory, host: o.inventoryHost},
		phase{name: phaseDeploy, all: o.deploy},
		phase{name: phaseCheck, host: o.checkHost},
	)
}

// window is the longest capture duration of the live hosts.
func (o *Orchestrator) window() time.Duration {
	var w time.Duration
	for _, h := range o.live() {
		for _, c := range h.facts.captures {
			w = max(w, c.Duration)
		}
	}
	return w
}

// startAll prepares, arms and begins; on a failure before the begin, or a
// signal, every armed agent is stopped, so that nothing is left running,
// and the case's claim is released. It returns the instant of the begin
// (casecap's clock) and the signals that came after it, for watch.
func (o *Orchestrator) startAll(ctx context.Context) (time.Time, []signal, error) {
	sctx, g := o.guardStart(ctx)
	o.failFast = !o.opt.AllowPartial
	defer func() { o.failFast = false }()
	abort := func(err error) (time.Time, []signal, error) {
		o.failFast = false
		g.end()
		o.cleanup(o.hosts)
		o.releaseClaims()
		if g.calledOffYet() || ctx.Err() != nil {
			return time.Time{}, nil, ErrCalledOff
		}
		return time.Time{}, nil, fmt.Errorf("nothing was started: %w", err)
	}
	if !o.prepare(sctx) {
		return abort(o.failures())
	}
	o.arming = newArmWait(o.live())
	if !o.runPhases(sctx, phase{name: phaseArm, host: o.armHost}) {
		return abort(o.failures())
	}
	if g.commit() {
		return abort(nil)
	}
	o.failFast = false
	o.cleanup(o.failed())
	// The begin runs to its end whatever comes: a signal from here on is
	// watch's to act on.
	t0 := o.beginTogether(ctx)
	o.markBegun(ctx, t0)
	return t0, g.end(), nil
}

// Run does the whole job: prepare, arm, begin together, watch, stop
// together, collect, write the case folder. The first interrupt stops every
// capture together (and still collects); a second stops waiting.
func (o *Orchestrator) Run(ctx context.Context) (*Manifest, error) {
	o.command = "run"
	defer o.disp.Close()
	defer o.closeAll()
	t0, pending, err := o.startAll(ctx)
	if err != nil {
		return o.manifest("run"), err
	}
	watched := time.Now()
	if o.watch(ctx, t0, o.window(), pending) {
		return o.manifest("run"), ErrDetached
	}
	o.log.Info("phase done", "phase", "watch", "took", time.Since(watched), "after window end", time.Since(t0.Add(o.window())))
	return o.collectAndWrite(ctx, "run")
}

// collectAndWrite collects into the case folder and writes its manifest,
// holding the folder against other casecaps for both.
func (o *Orchestrator) collectAndWrite(ctx context.Context, command string) (*Manifest, error) {
	unlock, err := o.lockCaseFolder(ctx)
	if err != nil {
		return o.manifest(command), err
	}
	defer unlock()
	o.collect(ctx)
	m := o.manifest(command)
	if err := o.writeCaseFolder(m); err != nil {
		return m, err
	}
	return m, errors.Join(o.failures(), o.captureFailures())
}

// Start prepares, arms and begins every capture, then returns: the captures
// stop by themselves at the end of their duration.
func (o *Orchestrator) Start(ctx context.Context) (*Manifest, error) {
	o.command = "start"
	defer o.disp.Close()
	defer o.closeAll()
	t0, pending, err := o.startAll(ctx)
	if err != nil {
		return o.manifest("start"), err
	}
	if len(pending) > 0 {
		o.log.Warn("a signal came once the captures had begun: they run on; casecap stop PLAN stops them")
	}
	// Return once every capture is running: past the agreed instant, and
	// one round of the agents' status later.
	sleep(ctx, time.Until(t0)+2*agentproto.StatusEvery)
	o.poll(ctx)
	return o.manifest("start"), errors.Join(o.failures(), o.captureFailures())
}

// captureFailures joins the errors of the captures that failed (a
// pktcap-uw the host refused, a full disk...), host by host: the command
// that sees them does not exit 0.
func (o *Orchestrator) captureFailures() error {
	var errs []error
	for _, h := range o.live() {
		if h.run.status == nil {
			continue
		}
		for _, c := range h.run.status.Captures {
			switch name := path.Base(c.File); {
			case c.State == agentproto.CaptureFailed:
				errs = append(errs, fmt.Errorf("%s: %s: %s", h.name(), name, c.Error))
			case h.run.asIs[name]:
				errs = append(errs, fmt.Errorf("%s: %s: %w", h.name(), name, errAsIs))
			}
		}
	}
	return errors.Join(errs...)
}

// attach connects to every host and reads what an earlier start recorded
// there (agent, clock offset) and the captures' status.
// Every host that answers is attached, whatever the others do: these
// commands report on each.
func (o *Orchestrator) attach(ctx context.Context) {
	o.each(ctx, phaseConnect, o.connectHost)
	o.each(ctx, phaseAttach, o.attachHost)
}

// attachHost reads the record of the run on a host and its status.
func (o *Orchestrator) attachHost(ctx context.Context, h *hostRun) error {
	r, err := o.readRecord(h)
	if err != nil {
		return fmt.Errorf("no run of case %s was started on this host: %w", o.opt.Plan.Case, err)
	}
	h.run.record, h.facts.agent, h.facts.kind, h.facts.os, h.facts.arch = r, r.Agent, r.Kind, r.OS, r.Arch
	h.facts.clock = clockReading{offset: r.ClockOffset, rtt: r.RTT}
	if h.drv, err = chooseDriver(r.Kind, r.Mode); err != nil {
		return err
	}
	if h.facts.captures, err = resolvedCaptures(h, r); err != nil {
		return err
	}
	st, err := o.readStatus(ctx, h)
	if err != nil {
		return fmt.Errorf("read the agent's status: %w", err)
	}
	h.run.status = st
	return nil
}

// Status reports every capture's state.
func (o *Orchestrator) Status(ctx context.Context) (*Manifest, error) {
	defer o.disp.Close()
	defer o.closeAll()
	o.attach(ctx)
	if o.spreadTrigger(ctx) != nil {
		o.poll(ctx)
	}
	o.each(ctx, phaseStatus, o.statusHost)
	return o.manifest("status"), errors.Join(o.failures(), o.captureFailures())
}

// statusHost asks a host whose captures have not all finished whether its
// agent still runs: that is known only on the host.
func (o *Orchestrator) statusHost(ctx context.Context, h *hostRun) error {
	if finished(h.run.status) {
		return nil
	}
	ended, err := h.drv.ended(ctx, o, h)
	if err != nil {
		return err
	}
	if ended {
		return errAgentGone
	}
	return nil
}

// errAgentGone: a host's agent (or ssh-mode script) ended before its
// captures did.
var errAgentGone = errors.New("the agent is gone but its captures did not finish (it was killed, or the host rebooted): collect what is there with casecap collect PLAN")

// Stop stops every capture together and waits for the agents to close
// their files. Stopping captures that already stopped is not an error.
func (o *Orchestrator) Stop(ctx context.Context) (*Manifest, error) {
	defer o.disp.Close()
	defer o.closeAll()
	o.attach(ctx)
	// Clocks drift: measure them again before agreeing on an instant.
	o.each(ctx, phaseStop, func(ctx context.Context, h *hostRun) error {
		return h.drv.measureClock(ctx, h)
	})
	o.stopTogether(ctx)
	deadline := time.Now().Add(o.opt.StopWait)
	for time.Now().Before(deadline) {
		o.poll(ctx)
		done := true
		for _, h := range o.live() {
			done = done && (finished(h.run.status) || h.run.agentGone)
		}
		if done || !sleep(ctx, pollInterval) {
			break
		}
	}
	// A host whose agent never said its captures stopped is not stopped:
	// stop says so rather than succeed (it may be stuck, or unreachable).
	for _, h := range o.live() {
		switch {
		case finished(h.run.status):
		case h.run.agentGone:
			o.fail(h, phaseStop, errAgentGone)
		default:
			o.fail(h, phaseStop, fmt.Errorf("its captures are still running %v after the stop was sent (see casecap status); the agent ends them at their window's end", o.opt.StopWait))
		}
	}
	return o.manifest("stop"), o.failures()
}

// Collect downloads every file into the case folder and writes the manifest.
func (o *Orchestrator) Collect(ctx context.Context) (*Manifest, error) {
	defer o.disp.Close()
	defer o.closeAll()
	o.attach(ctx)
	o.passOnTrigger(ctx)
	return o.collectAndWrite(ctx, "collect")
}

// passOnTrigger, for a later command (status, collect) of a case with rings
// or until: rules, passes a trigger that a host fired while no casecap
// ran on to the others, and waits for their captures to stop at its
// instant + post. A ring that rotated in between no longer holds the
// trigger's start: the manifest says so, per capture.
func (o *Orchestrator) passOnTrigger(ctx context.Context) {
	tr := o.spreadTrigger(ctx)
	if tr == nil {
		return
	}
	deadline := time.Now().Add(max(time.Until(tr.Local.Add(o.opt.Plan.Post)), 0) + o.opt.StopWait)
	for time.Now().Before(deadline) {
		o.poll(ctx)
		done := true
		for _, h := range o.live() {
			done = done && finished(h.run.status)
		}
		if done || !sleep(ctx, endPoll) {
			return
		}
	}
}
