package orchestrator

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans"
)

// RecordFile is casecap's note on the run, kept by the agent next to its
// state on each host, so that later commands (status, stop, collect) know
// how the run was done.
const RecordFile = agentproto.RecordFile

// Record is one host's run, as casecap saw it when arming.
type Record struct {
	Casecap     string          `json:"casecap"`
	Case        string          `json:"case"`
	Host        string          `json:"host"`
	Address     string          `json:"address,omitempty"`
	Kind        plans.Kind      `json:"kind"`
	OS          string          `json:"os"`
	Arch        string          `json:"arch"`
	Agent       agentproto.Argv `json:"agent"`
	ClockOffset time.Duration   `json:"clock_offset_ns"` // host clock minus casecap's
	RTT         time.Duration   `json:"rtt_ns"`
	ArmedAt     time.Time       `json:"armed_at"`
	// Mode is how the host captures: "agent", or "ssh" (ESXi hosts that
	// refuse to run the agent; then ClockOffset was not measured).
	Mode Mode `json:"mode,omitempty"`
	// Captures are the host's captures as resolved when arming (with the
	// uplinks `uplink: auto` added).
	Captures []*plans.Capture `json:"captures,omitempty"`
}

// resolvedCaptures checks the captures a record brings back from a host
// against the plan: each belongs to this host and is named as casecap
// names it, so a host cannot make casecap write outside the case folder
// or under another capture's name.
func resolvedCaptures(h *hostRun, r *Record) ([]*plans.Capture, error) {
	if len(r.Captures) == 0 {
		return h.plan.Captures, nil
	}
	for _, c := range r.Captures {
		if c == nil || c.Host != h.name() || c.File != plans.FileName(c) {
			return nil, fmt.Errorf("the run's record on the host names a capture casecap would not (%+v)", c)
		}
	}
	return r.Captures, nil
}

func (o *Orchestrator) readRecord(h *hostRun) (*Record, error) {
	b, err := h.conn.ReadFile(path.Join(h.stateDir(o.opt.Plan), RecordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	return &r, json.Unmarshal(b, &r)
}
