package orchestrator

import (
	"bytes"
	"encoding/json"
	"path"
	"time"

	"github.com/casecap/casecap/plans"
)

// RecordFile is what casecap writes next to the agent's state on each host,
// so that later commands (status, stop, collect) know how the run was done.
const RecordFile = "run.json"

// Record is one host's run, as casecap saw it.
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
	Begin       time.Time     `json:"begin,omitzero"` // the agreed start, casecap's clock
	BeginLate   time.Duration `json:"begin_late_ns,omitempty"`
	Stop        time.Time     `json:"stop,omitzero"` // a stop together, casecap's clock
}

func (o *Orchestrator) writeRecord(h *hostRun) error {
	b, err := json.MarshalIndent(h.record, "", "  ")
	if err != nil {
		return err
	}
	return h.conn.WriteFile(path.Join(h.stateDir(o.opt.Plan), RecordFile), bytes.NewReader(append(b, '\n')), 0o600)
}

func (o *Orchestrator) readRecord(h *hostRun) (*Record, error) {
	b, err := h.conn.ReadFile(path.Join(h.stateDir(o.opt.Plan), RecordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	return &r, json.Unmarshal(b, &r)
}
