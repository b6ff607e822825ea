package orchestrator

import (
	"context"
	"time"
)

// rounds is how many batches of at most Parallel hosts a phase takes.
func (o *Orchestrator) rounds() time.Duration {
	n := len(o.live())
	return time.Duration(max(1, (n+o.opt.Parallel-1)/o.opt.Parallel))
}

// beginMargin is the same for a begin told on the held sessions: their
// slowest ping under load, once per batch of hosts and once more, plus
// three network round trips.
func (o *Orchestrator) beginMargin() time.Duration {
	var lat, rtt time.Duration
	for _, h := range o.live() {
		if h.run.held == nil {
			return o.stopMargin()
		}
		lat, rtt = max(lat, h.run.lineLat), max(rtt, h.facts.clock.rtt)
	}
	return clampMargin(lat*(o.rounds()+1) + 3*rtt + 20*time.Millisecond)
}

func clampMargin(d time.Duration) time.Duration {
	return min(max(d, 50*time.Millisecond), 5*time.Second)
}

// beginTogether starts every armed capture at one instant, each host
// told it by its driver (on its own clock, over its held session). It
// returns the instant (casecap's clock).
func (o *Orchestrator) beginTogether(ctx context.Context) time.Time {
	t0 := time.Now().Add(o.beginMargin())
	o.each(ctx, phaseBegin, func(ctx context.Context, h *hostRun) error {
		if err := h.drv.begin(ctx, o, h, t0); err != nil {
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
