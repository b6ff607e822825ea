package orchestrator

import (
	"context"
	"time"
)

// Phase names a step of a command, as reported with a host's failure.
type Phase string

// The phases, in the order a run takes them (see doc.go).
const (
	phaseConnect   Phase = "connect"
	phasePreflight Phase = "preflight"
	phaseClaim     Phase = "claim"
	phaseInventory Phase = "inventory"
	phaseDeploy    Phase = "deploy"
	phaseCheck     Phase = "check"
	phaseArm       Phase = "arm"
	phaseBegin     Phase = "begin"
	phaseWatch     Phase = "watch"
	phaseStop      Phase = "stop"
	phaseTrigger   Phase = "trigger"
	phaseCollect   Phase = "collect"
	phaseAttach    Phase = "attach"
	phaseStatus    Phase = "status"
	phaseTargets   Phase = "targets"
)

// phase is one step of a command over every live host: per host (hosts
// at once, at most Parallel; a host's error fails that host, in this
// phase), or, for the steps whose hosts depend on one another, over all
// of them together (claim: the plan's first host first; deploy: one upload
// per shared datastore), failing hosts itself.
type phase struct {
	name Phase
	host func(ctx context.Context, h *hostRun) error
	all  func(ctx context.Context)
}

// runPhases runs phases in order. It returns false, skipping the rest,
// once the command cannot go on: interrupted, too many hosts failed (see
// ready), or the case is another run's.
func (o *Orchestrator) runPhases(ctx context.Context, phases ...phase) bool {
	for _, p := range phases {
		if p.host != nil {
			o.each(ctx, p.name, p.host)
		} else {
			p.all(ctx)
		}
		if ctx.Err() != nil || !o.ready() || o.claimRefused() {
			return false
		}
	}
	return true
}

// sleep waits for d, or less if ctx ends first; it returns false then.
// Every wait of a command honours its context.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
