package agentproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The held session (Argv.StartHeld, and supervise.sh's "hold"): casecap
// sends the job as one line and reads an Armed line; it may then send
// "ping" (answered "pong") to measure the session's latency, and finally
// "begin TIME" (answered by a Begun line), after which the session ends.
// The session's end before a begin disarms the host's captures.
//
// Argv.Serve holds one session for the whole run instead: after the Facts
// line it answers clock probes ("t", answered with the host's time in Unix
// nanoseconds), then takes the job as "job JSON" (answered Armed), "ping",
// "begin TIME" (answered Begun; the session goes on) and "stop [TIME]"
// (answered StopAnswer), until casecap ends it. Its end before a begin
// disarms the captures; after one, they run on. From the Begun answer on,
// the agent also pushes the captures' status, unasked: "status JSON" (one
// line, the status.json it writes) each time that file changes (looked at
// every PushEvery from the window's end or a stop on), the last once every
// capture has ended. Answers and
// pushed lines interleave; a reader tells them apart by LineStatus.
const (
	LinePing = "ping"
	LinePong = "pong"
	// LineBegin, followed by a space and FormatTime's instant.
	LineBegin = "begin"
	// LineClock is a clock probe.
	LineClock = "t"
	// LineJob, followed by a space and the Job as JSON on one line.
	LineJob = "job"
	// LineStop, alone (now) or followed by a space and an instant.
	LineStop = "stop"
	// LineStatus, followed by a space and the Status as JSON on one line:
	// pushed by the agent after the begin.
	LineStatus = "status"
	// LineTrigger, followed by a space and a Trigger as JSON (At on the
	// host's clock): answered by a TriggerAnswer.
	LineTrigger = "trigger"
)

// PushEvery is how often a serve session looks at its status.json for a
// change to push once the captures' window is over or a stop was asked:
// the delay before casecap learns that they ended.
const PushEvery = 10 * time.Millisecond

// StatusLine is a pushed status (statusJSON compacted onto one line),
// newline ended.
func StatusLine(statusJSON []byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(LineStatus + " ")
	if err := json.Compact(&b, statusJSON); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// ParseStatusLine reads a pushed status; ok is false for any other line.
func ParseStatusLine(line []byte) (st *Status, ok bool, err error) {
	rest, ok := bytes.CutPrefix(line, []byte(LineStatus+" "))
	if !ok {
		return nil, false, nil
	}
	st = new(Status)
	if err := json.Unmarshal(rest, st); err != nil {
		return nil, true, fmt.Errorf("pushed status: %w", err)
	}
	return st, true, nil
}

// Armed is the answer to a held start once every capture is armed.
type Armed struct {
	PID    int           `json:"pid,omitempty"`
	State  AgentState    `json:"state,omitempty"`
	Arming time.Duration `json:"arming_ns"` // how long arming took on the host
}

// Begun answers a begin.
type Begun struct {
	Begun bool      `json:"begun"`
	Now   time.Time `json:"now,omitzero"` // the host's clock
}

// StopAnswer answers a stop.
type StopAnswer struct {
	Running bool      `json:"running"` // an agent still runs there
	Now     time.Time `json:"now,omitzero"`
}

// BeginLine is the begin request for the instant (host clock), newline ended.
func BeginLine(at time.Time) []byte { return []byte(LineBegin + " " + FormatTime(at) + "\n") }

// JobLine is the job request, newline ended.
func JobLine(jobJSON []byte) []byte {
	return append(append([]byte(LineJob+" "), jobJSON...), '\n')
}

// StopLine is the stop request for the instant (zero: now), newline ended.
func StopLine(at time.Time) []byte {
	if at.IsZero() {
		return []byte(LineStop + "\n")
	}
	return []byte(LineStop + " " + FormatTime(at) + "\n")
}

// Request is one line casecap sent on a held session.
type Request struct {
	Ping    bool
	Clock   bool
	Begin   time.Time // set for a begin
	Job     []byte    // set for a job
	Stop    bool      // a stop, at StopAt (zero: now)
	StopAt  time.Time
	Trigger *Trigger // set for a trigger
	Live    []byte   // set for a live job (its JSON)
}

// ParseRequest reads one line of a held session.
func ParseRequest(line string) (Request, error) {
	if rest, ok := strings.CutPrefix(line, LineJob+" "); ok {
		return Request{Job: []byte(strings.TrimSpace(rest))}, nil
	}
	if rest, ok := strings.CutPrefix(line, LineLive+" "); ok {
		return Request{Live: []byte(strings.TrimSpace(rest))}, nil
	}
	if rest, ok := strings.CutPrefix(line, LineTrigger+" "); ok {
		t := new(Trigger)
		if err := json.Unmarshal([]byte(rest), t); err != nil || t.At.IsZero() {
			return Request{}, fmt.Errorf("trigger: %q is not a trigger", strings.TrimSpace(rest))
		}
		return Request{Trigger: t}, nil
	}
	switch f := strings.Fields(line); {
	case len(f) == 1 && f[0] == LineClock:
		return Request{Clock: true}, nil
	case len(f) == 1 && f[0] == LineStop:
		return Request{Stop: true}, nil
	case len(f) == 2 && f[0] == LineStop:
		at, err := ParseTime(f[1])
		if err != nil {
			return Request{}, fmt.Errorf("stop: %w", err)
		}
		return Request{Stop: true, StopAt: at}, nil
	case len(f) == 1 && f[0] == LinePing:
		return Request{Ping: true}, nil
	case len(f) == 2 && f[0] == LineBegin:
		at, err := ParseTime(f[1])
		if err != nil {
			return Request{}, fmt.Errorf("begin: %w", err)
		}
		return Request{Begin: at}, nil
	}
	return Request{}, fmt.Errorf("held start: unexpected %q", strings.TrimSpace(line))
}
