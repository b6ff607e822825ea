package agent

import (
	"encoding/json"

	"github.com/casecap/casecap/internal/agentproto"
)

// armedIfAll says "armed" rather than "running" while no capture has
// begun yet (a held start waiting for its begin).
func armedIfAll(s agentproto.Status) agentproto.Status {
	for _, c := range s.Captures {
		if c.State != agentproto.CaptureArmed {
			return s
		}
	}
	if len(s.Captures) > 0 {
		s.State = agentproto.StateArmed
	}
	return s
}

func marshalStatus(s agentproto.Status) []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}
