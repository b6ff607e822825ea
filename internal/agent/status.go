package agent

import (
	"encoding/json"
	"time"

	"github.com/casecap/casecap/internal/agent/capture"
)

// Agent states.
const (
	StateArming  = "arming"
	StateArmed   = "armed"
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Status is what status.json holds.
type Status struct {
	Case    string    `json:"case"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Agent   string    `json:"agent"` // version
	State   string    `json:"state"`
	Updated time.Time `json:"updated"`
	Error   string    `json:"error,omitempty"`
	// BeginLate is how long after its instant a begin request arrived: the
	// packets read before it were not kept.
	BeginLate time.Duration    `json:"begin_late_ns,omitempty"`
	Captures  []capture.Status `json:"captures"`
	// Alive is filled in by `status` when it reads the file: whether the
	// agent that wrote it still runs.
	Alive bool `json:"alive"`
}

// armedIfAll says "armed" rather than "running" while no capture has
// begun yet (a held start waiting for its begin).
func (s Status) armedIfAll() Status {
	for _, c := range s.Captures {
		if c.State != capture.StateArmed {
			return s
		}
	}
	if len(s.Captures) > 0 {
		s.State = StateArmed
	}
	return s
}

func (s Status) marshal() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}
