package orchestrator

import (
	"context"
	"encoding/json"
	"path"
	"sync"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// readStatus reads a host's status.json (the agent rewrites it twice a
// second), reconnecting once if the connection has died.
func (o *Orchestrator) readStatus(ctx context.Context, h *hostRun) (*agentproto.Status, error) {
	file := path.Join(h.stateDir(o.opt.Plan), agentproto.StatusFile)
	b, err := h.conn.ReadFile(file)
	if err != nil {
		if c, derr := o.dial(ctx, h.plan); derr == nil {
			h.conn.Close()
			h.conn = c
			b, err = h.conn.ReadFile(file)
		}
	}
	if err != nil {
		return nil, err
	}
	var st agentproto.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// finished reports whether every capture in a status has stopped.
func finished(st *agentproto.Status) bool {
	if st == nil || st.State == agentproto.StateArming {
		return false
	}
	for _, c := range st.Captures {
		if c.State != agentproto.CaptureStopped && c.State != agentproto.CaptureFailed {
			return false
		}
	}
	return st.State == agentproto.StateDone || st.State == agentproto.StateFailed
}

// pollInterval is how often watch reads every host's status; from the
// window's end on, endPoll (agents write their final status at once).
const (
	pollInterval = 500 * time.Millisecond
	endPoll      = 50 * time.Millisecond
)

// watchGrace is how long after the window's end watch waits for agents to
// close their files before giving up on them.
const watchGrace = 30 * time.Second

// watch shows the captures' progress until every one has stopped. The first
// Stop signal (Ctrl-C, SIGTERM) stops them all together; a second one, or a
// Detach (SIGHUP), stops waiting: detached is then true, and the captures
// end without casecap (at the first Stop's instant, or without one at
// their window's end). pending are the signals that came during the
// begin, in order.
func (o *Orchestrator) watch(ctx context.Context, t0 time.Time, window time.Duration, pending []signal) (detached bool) {
	end := t0.Add(window)
	stopped := false
	// act acts on a signal; it returns true to stop waiting.
	act := func(s signal) bool {
		switch {
		case s == sigDetach:
			o.log.Warn("hangup: casecap stops waiting; the captures run on to their end", "collect them with", "casecap collect "+o.opt.Plan.File)
			return true
		case stopped:
			o.log.Warn("interrupted again: casecap stops waiting; the captures stop as asked without it", "collect them with", "casecap collect "+o.opt.Plan.File)
			return true
		}
		o.log.Info("interrupted: stopping every capture together")
		o.stopTogether(ctx)
		stopped = true
		end = time.Now()
		return false
	}
	for _, s := range pending {
		if act(s) {
			return true
		}
	}
	for {
		all := o.poll(ctx)
		o.disp.Captures(window, time.Since(t0), all)
		if o.opt.Plan.Post > 0 {
			// A trigger: every host stops at its instant + post.
			if tr := o.spreadTrigger(ctx); tr != nil && !stopped {
				end = minTime(end, tr.Local.Add(o.opt.Plan.Post))
			}
		}
		done := true
		for _, h := range o.live() {
			if !finished(h.run.status) {
				done = false
			}
		}
		// A signal that came while the captures were stopping is honoured
		// even if every capture has stopped since: a second Ctrl-C asks to
		// stop waiting (and collecting).
		select {
		case <-o.opt.Signals.Stop:
			if act(sigStop) {
				return true
			}
		case <-o.opt.Signals.Detach:
			if act(sigDetach) {
				return true
			}
		default:
		}
		if done {
			return false
		}
		if time.Now().After(end.Add(o.opt.StopWait)) {
			if !stopped {
				o.stopTogether(ctx)
				stopped = true
				end = time.Now()
				continue
			}
			for _, h := range o.live() {
				if !finished(h.run.status) {
					o.fail(h, phaseWatch, errUnfinished)
				}
			}
			return false
		}
		// Poll every pollInterval, but wake at the window's end, and poll
		// fast from then on, and at once when an agent pushes a status
		// (the captures' end comes that way).
		wait := pollInterval
		var pushed <-chan struct{}
		if stopped || time.Now().After(end) {
			wait, pushed = endPoll, o.pushed
		} else if until := time.Until(end) + endPoll; until < wait {
			wait = until
		}
		select {
		case <-pushed:
		case <-o.opt.Signals.Stop:
			if act(sigStop) {
				return true
			}
		case <-o.opt.Signals.Detach:
			if act(sigDetach) {
				return true
			}
		case <-ctx.Done():
			return true
		case <-time.After(wait):
		}
	}
}

type unfinished struct{}

func (unfinished) Error() string {
	return "the agent did not report its captures stopped after the stop was sent; they may still run: see casecap status PLAN, then casecap stop PLAN and casecap collect PLAN"
}

var errUnfinished error = unfinished{}

// pushedStatus is the status its agent pushed on the run's session, and
// whether it is current (see held.status).
func (h *hostRun) pushedStatus() (*agentproto.Status, bool) {
	if hs := h.run.held; hs != nil && hs.listening() {
		return hs.status()
	}
	return nil, false
}

// poll reads every live host's status at once.
func (o *Orchestrator) poll(ctx context.Context) []Progress {
	var mu sync.Mutex
	var all []Progress
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.opt.Parallel)
	for _, h := range o.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// The status the agent pushed on its session, while it is
			// current; else the status file.
			st, current := h.pushedStatus()
			var err error
			switch {
			case current && st == nil:
				return // none pushed yet: nothing new to show
			case current:
			case time.Since(h.run.readAt) < endPoll && h.run.status != nil:
				// Woken by another host's push: this one's file was
				// read a moment ago.
				st = h.run.status
			default:
				h.run.readAt = time.Now()
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				st, err = o.readStatus(rctx, h)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// Unreachable: its captures go on; show what we knew.
				if h.run.status != nil {
					for _, c := range h.run.status.Captures {
						all = append(all, Progress{Host: h.name(), Reachable: false, CaptureStatus: c})
					}
				}
				return
			}
			h.run.status = st
			for _, c := range st.Captures {
				all = append(all, Progress{Host: h.name(), Reachable: true, CaptureStatus: c})
			}
		}()
	}
	wg.Wait()
	return all
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
