package orchestrator

import (
	"encoding/json"
	"path"
	"time"

	"github.com/casecap/casecap/agent"
	"github.com/casecap/casecap/plans"
)

// RecordFile is casecap's note on the run, kept by the agent next to its
// state on each host, so that later commands (status, stop, collect) know
// how the run was done.
const RecordFile = agent.RecordFile

// Record is one host's run, as casecap saw it when arming.
type Record struct {
	Casecap     string        `json:"casecap"`
	Case        string        `json:"case"`
	Host        string        `json:"host"`
	Address     string        `json:"address,omitempty"`
	Kind        plans.Kind    `json:"kind"`
	OS          string        `json:"os"`
	Arch        string        `json:"arch"`
	Agent       []string      `json:"agent"`
	ClockOffset time.Duration `json:"clock_offset_ns"` // host clock minus casecap's
	RTT         time.Duration `json:"rtt_ns"`
	ArmedAt     time.Time     `json:"armed_at"`
}

func (o *Orchestrator) readRecord(h *hostRun) (*Record, error) {
	b, err := h.conn.ReadFile(path.Join(h.stateDir(o.opt.Plan), RecordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	return &r, json.Unmarshal(b, &r)
}
