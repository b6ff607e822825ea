package orchestrator

import (
	"context"
	"fmt"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans"
)

// Mode is how a host's captures are made.
type Mode string

// Capture modes.
const (
	// ModeAgent: casecap's agent runs the captures (uploaded to the
	// datastore; casecap itself on the local host).
	ModeAgent Mode = "agent"
	// ModeSSH: an ESXi host refuses to run the uploaded agent
	// (execInstalledOnly); casecap's script drives pktcap-uw instead.
	ModeSSH Mode = "ssh"
)

// driver makes one host's captures in one mode: the phases say when, the
// driver says how. The phases never look at a host's kind or mode; only
// chooseDriver and fallbackDriver do.
type driver interface {
	mode() Mode
	// resolve turns the plan's captures into the host's (on ESXi: the
	// ports net-stats lists, the uplinks `uplink: auto` finds).
	resolve(ctx context.Context, o *Orchestrator, h *hostRun) error
	// checkFacts holds what the agent's check found against the captures.
	checkFacts(h *hostRun) error
	// arm makes every capture of the host ready, keeping the arming
	// session (h.run.held) for the begin; record is casecap's record of
	// the run, stored beside the captures' state.
	arm(ctx context.Context, o *Orchestrator, h *hostRun, record []byte) error
	// begin starts the armed captures at t0 (casecap's clock).
	begin(ctx context.Context, o *Orchestrator, h *hostRun, t0 time.Time) error
	// stop stops the captures at t1 (casecap's clock).
	stop(ctx context.Context, o *Orchestrator, h *hostRun, t1 time.Time) error
	// disarm stops whatever was armed or runs now, and waits a little for
	// it to end (an aborted start).
	disarm(ctx context.Context, o *Orchestrator, h *hostRun) error
	// ended says whether the agent (or script) has ended, refreshing
	// h.run.status where it can.
	ended(ctx context.Context, o *Orchestrator, h *hostRun) (bool, error)
	// measureClock measures the host's clock again, for a stop from a
	// later process (a driver that cannot leaves the offset as it was).
	measureClock(ctx context.Context, h *hostRun) error
	// collected completes what the host could not say of a file it
	// collected (its packet count, in ssh mode).
	collected(localFile string, cs *agentproto.CaptureStatus) error
	// note is what the manifest says of the mode, if anything.
	note() string
}

// chooseDriver is the driver for a host of this kind in this mode (a
// later command reads the mode from the run's record; a new run starts in
// agent mode).
func chooseDriver(kind plans.Kind, mode Mode) (driver, error) {
	switch {
	case kind == plans.KindESXi && mode == ModeSSH:
		return &esxiSSH{}, nil
	case kind == plans.KindESXi && (mode == ModeAgent || mode == ""):
		return &esxiAgent{}, nil
	case (kind == plans.KindLinux || kind == plans.KindLocal) && (mode == ModeAgent || mode == ""):
		return linuxAgent{}, nil
	}
	return nil, fmt.Errorf("no way to capture on a %s host in %q mode", kind, mode)
}

// fallbackDriver is the driver to go on with when a host refuses to run
// the uploaded agent: ESXi's own pktcap-uw driven over SSH, with the
// captures already resolved. Nil: there is none.
func fallbackDriver(d driver) driver {
	if a, ok := d.(*esxiAgent); ok {
		return &esxiSSH{esxiPorts: a.esxiPorts}
	}
	return nil
}
