package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans"
)

// Triggers (issue 15): each host's agent watches its rules and stops its
// own captures at trigger + post; casecap passes the earliest trigger any
// host reports on to every other host, at the same instant on each host's
// clock, so that every capture stops around the same moment. The
// earliest trigger wins everywhere, whatever order hosts hear of them in.

// firedTrigger is the trigger casecap passed on: where it fired, and its
// instant on casecap's clock.
type firedTrigger struct {
	agentproto.Trigger
	Local time.Time // At on casecap's clock
}

// jobRules are the plan's until: rules that host watches, in the agent's
// words: each named by its place in the plan.
func jobRules(p *plans.Plan, host string) []agentproto.Rule {
	var out []agentproto.Rule
	for _, r := range p.Until {
		if len(r.Hosts) > 0 && !contains(r.Hosts, host) {
			continue
		}
		ar := agentproto.Rule{ID: ruleID(p, r), DropsMin: r.DropsMin, Command: r.Command, Every: r.Every, LogFile: r.LogFile, LogMatch: r.LogMatch}
		if r.Packet != nil {
			ar.Packet = &agentproto.PacketRule{Filter: *r.Packet}
		}
		out = append(out, ar)
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// ruleID names a rule in the manifest and the summary: its place in the
// plan and what it watches.
func ruleID(p *plans.Plan, r plans.Rule) string {
	var what string
	switch {
	case r.Packet != nil:
		what = "packet " + r.Packet.String()
	case r.DropsMin > 0:
		what = fmt.Sprintf("drops >= %d", r.DropsMin)
	case r.Command != "":
		what = fmt.Sprintf("command %q every %v", r.Command, r.Every)
	case r.LogFile != "":
		what = fmt.Sprintf("log %s matches %q", r.LogFile, r.LogMatch)
	}
	return fmt.Sprintf("%s (%s:%d) %s", r.Path, p.File, r.Line, what)
}

// triggerer is a driver that can pass a trigger on to its host.
type triggerer interface {
	trigger(ctx context.Context, o *Orchestrator, h *hostRun, t agentproto.Trigger) error
}

// trigger passes a trigger to the agent: on the run's serve session, or
// with the agent's trigger command.
func (agentCmds) trigger(ctx context.Context, o *Orchestrator, h *hostRun, t agentproto.Trigger) error {
	var out []byte
	var err error
	if hs := h.run.held; hs != nil && hs.listening() {
		if out, err = sendWithin(ctx, hs, agentproto.TriggerLine(t)); err != nil {
			h.run.held = nil
		}
	}
	if out == nil {
		if out, err = h.conn.Run(ctx, h.facts.agent.Trigger(t, h.stateDir(o.opt.Plan)), nil); err != nil {
			return err
		}
	}
	var ans agentproto.TriggerAnswer
	if err := json.Unmarshal(out, &ans); err != nil {
		return fmt.Errorf("the agent's answer to the trigger: %q: %w", strings.TrimSpace(string(out)), err)
	}
	if !ans.Running {
		return errors.New("no agent runs there any more: its captures had ended")
	}
	return nil
}

// earliestTrigger is the earliest trigger the hosts' statuses report, on
// casecap's clock, or nil.
func (o *Orchestrator) earliestTrigger(hs []*hostRun) *firedTrigger {
	var best *firedTrigger
	for _, h := range hs {
		st := h.run.status
		if st == nil || st.Trigger == nil {
			continue
		}
		local := st.Trigger.At.Add(-h.facts.clock.correction())
		// On a tie, the record of the host where it fired: it has the
		// packet, and the rule's own words.
		origin := st.Trigger.Source != agentproto.TriggerPeer
		if best == nil || local.Before(best.Local) || (local.Equal(best.Local) && origin && best.Source == agentproto.TriggerPeer) {
			best = &firedTrigger{Trigger: *st.Trigger, Local: local}
		}
	}
	return best
}

// triggerPass bounds how long passing a trigger on may take per host.
const triggerPass = 10 * time.Second

// triggerRetry is how long a host whose status does not show the trigger
// passed on to it is left before it is passed on again.
const triggerRetry = 2 * time.Second

// spreadTrigger passes the earliest trigger the hosts report on to every
// host whose status does not show it (or an earlier one) yet: at once when
// it is new, again every triggerRetry while a host's status does not show
// it (a pass that failed, or was lost). It returns the trigger, nil before
// one fired.
func (o *Orchestrator) spreadTrigger(ctx context.Context) *firedTrigger {
	live := o.live()
	best := o.earliestTrigger(live)
	if best == nil {
		return o.trigger
	}
	if o.trigger == nil || best.Local.Before(o.trigger.Local) {
		o.trigger = best
		o.log.Info("trigger fired", "host", best.Host, "source", best.Source, "rule", best.Rule, "note", best.Note, "at", best.Local)
		o.disp.HostPhase(best.Host, fmt.Sprintf("trigger: %s; every capture stops %v after it", best.String(), o.opt.Plan.Post))
		for _, h := range live {
			h.run.triggerSent = time.Time{} // a new trigger: everyone again
		}
	}
	best = o.trigger
	var need []*hostRun
	for _, h := range live {
		if st := h.run.status; st != nil && st.Trigger != nil && !st.Trigger.At.Add(-h.facts.clock.correction()).After(best.Local) {
			continue // it has this trigger, or an earlier one on its way here
		}
		if finished(h.run.status) || time.Since(h.run.triggerSent) < triggerRetry {
			continue // nothing runs there to stop, or it was just told
		}
		h.run.triggerSent = time.Now()
		need = append(need, h)
	}
	if len(need) == 0 {
		return o.trigger
	}
	pctx, cancel := context.WithTimeout(ctx, triggerPass)
	defer cancel()
	o.eachQuiet(pctx, need, func(h *hostRun) {
		d, ok := h.drv.(triggerer)
		if !ok {
			o.log.Warn("cannot pass the trigger to this host", "host", h.name(), "mode", h.drv.mode())
			return
		}
		t := best.Trigger
		t.At, t.Stop, t.Packet = best.Local.Add(h.facts.clock.correction()), time.Time{}, nil
		if t.Source == agentproto.TriggerRule {
			t.Source = agentproto.TriggerPeer
		}
		if err := d.trigger(pctx, o, h, t); err != nil {
			o.log.Warn("could not pass the trigger on; the host stops at its own trigger or at the end of its window", "host", h.name(), "err", err)
			o.disp.HostPhase(h.name(), fmt.Sprintf("could not pass the trigger on (%v); it stops at its own trigger or at the end of its window", err))
		}
	})
	return o.trigger
}

// sendWithin is hs.send, given up (and the session ended) when ctx ends:
// a host cut off mid-run must not hold up the others.
func sendWithin(ctx context.Context, hs *held, line []byte) ([]byte, error) {
	type answer struct {
		b   []byte
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		b, err := hs.send(line)
		ch <- answer{b, err}
	}()
	select {
	case a := <-ch:
		return a.b, a.err
	case <-ctx.Done():
		if hs.cancel != nil {
			hs.cancel()
		}
		return nil, fmt.Errorf("no answer: %w", ctx.Err())
	}
}

// Trigger fires a trigger by hand at this moment (casecap trigger): every
// host of the case is told the instant on its own clock, and each of its
// captures keeps its ring's last keep before it and stops post after it.
// A running casecap run sees it in the hosts' statuses.
func (o *Orchestrator) Trigger(ctx context.Context, note string) (*Manifest, error) {
	asked := time.Now()
	defer o.disp.Close()
	defer o.closeAll()
	if o.opt.Plan.Post <= 0 {
		return nil, errors.New("the plan has no until: rules and no ring: there is nothing to trigger (casecap stop stops the captures)")
	}
	o.attach(ctx)
	o.each(ctx, phaseTrigger, func(ctx context.Context, h *hostRun) error {
		return h.drv.measureClock(ctx, h)
	})
	// The instant once every host is reached, not when the command was
	// typed: connecting to many hosts may take longer than a ring keeps
	// beyond its keep (2 s), and the hosts would have rotated out the
	// trigger's start. The manifest's note says how long that took.
	at := time.Now()
	if late := at.Sub(asked); late > 100*time.Millisecond {
		note = strings.TrimPrefix(fmt.Sprintf("%s; casecap trigger reached every host %v after it was run", note, late.Round(time.Millisecond)), "; ")
	}
	o.each(ctx, phaseTrigger, func(ctx context.Context, h *hostRun) error {
		d, ok := h.drv.(triggerer)
		if !ok {
			return fmt.Errorf("a trigger cannot be passed to a host in %s mode", h.drv.mode())
		}
		t := agentproto.Trigger{At: at.Add(h.facts.clock.correction()), Host: "casecap", Source: agentproto.TriggerManual, Note: note}
		if err := d.trigger(ctx, o, h, t); err != nil {
			return err
		}
		o.disp.HostPhase(h.name(), "triggered")
		return nil
	})
	o.poll(ctx)
	return o.manifest("trigger"), o.failures()
}
