package orchestrator

import (
	"context"
	"time"
)

// stopMargin is how far ahead an instant told by a new agent command per
// host must be for every host to hear of it in time: the slowest round trip
// of a short agent command seen (arm, less the arming itself), once per
// batch of hosts and half as much again, plus three of the worst network
// round trips. A host that still hears late says so in its status.
func (o *Orchestrator) stopMargin() time.Duration {
	var lat, rtt time.Duration
	for _, h := range o.live() {
		lat, rtt = max(lat, h.run.execLat), max(rtt, h.facts.clock.rtt)
	}
	return clampMargin(lat*o.rounds() + lat/2 + 3*rtt + 20*time.Millisecond)
}

// stopTogether stops every capture at one instant (a few round trips from
// now), each host told it by its driver.
func (o *Orchestrator) stopTogether(ctx context.Context) time.Time {
	t1 := time.Now().Add(o.stopMargin())
	o.each(ctx, phaseStop, func(ctx context.Context, h *hostRun) error {
		return h.drv.stop(ctx, o, h, t1)
	})
	return t1
}

// cleanup stops, with its own timeout, whatever was armed on the hosts
// given, all at once: after an aborted run nothing is left running, and a
// host that failed once armed (in a partial run) is not left waiting for a
// begin.
func (o *Orchestrator) cleanup(hs []*hostRun) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o.eachQuiet(ctx, hs, func(h *hostRun) {
		if h.run.held != nil {
			h.run.held.close()
			h.run.held = nil
		}
		if !h.run.armed {
			return
		}
		if err := h.drv.disarm(ctx, o, h); err != nil {
			o.log.Error("cleanup: could not stop the captures", "host", h.name(), "err", err)
		}
	})
}
