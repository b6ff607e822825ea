package agentproto

import (
	"encoding/json"
	"slices"
	"time"
)

// Argv is the command line that runs the agent on a host: the uploaded
// binary, or casecap itself with "agent" on the local host. Its methods
// give each command's full argv, so that casecap and the agent's command
// line (internal/agent/cli) agree on one spelling.
type Argv []string

func (a Argv) with(args ...string) []string { return append(slices.Clone([]string(a)), args...) }

// Commands of the agent.
const (
	CmdServe   = "serve"
	CmdStart   = "start"
	CmdRun     = "run"
	CmdBegin   = "begin"
	CmdStop    = "stop"
	CmdStatus  = "status"
	CmdCheck   = "check"
	CmdClock   = "clock"
	CmdVersion = "version"
)

// Serve prints the host's Facts on one line, then serves the held session
// from check to the run's end: clock probes, one job, ping, begin and stop
// requests (lines.go), one exec session for all of them.
func (a Argv) Serve() []string { return a.with(CmdServe) }

// StartHeld reads one job line on stdin, arms it, answers an Armed line and
// serves the held session (Ping, Begin) until the begin or the session's end.
func (a Argv) StartHeld() []string { return a.with(CmdStart, "--hold", "-") }

// Begin starts the pending captures of stateDir at the instant (host clock).
func (a Argv) Begin(at time.Time, stateDir string) []string {
	return a.with(CmdBegin, "--at", FormatTime(at), stateDir)
}

// Stop stops the captures of stateDir at the instant (zero: now); it answers
// a StopAnswer.
func (a Argv) Stop(at time.Time, stateDir string) []string {
	if at.IsZero() {
		return a.with(CmdStop, stateDir)
	}
	return a.with(CmdStop, "--at", FormatTime(at), stateDir)
}

// StopWait stops the captures now and waits up to wait for the agent to end.
func (a Argv) StopWait(wait time.Duration, stateDir string) []string {
	return a.with(CmdStop, "--wait", wait.String(), stateDir)
}

// Status prints the Status of stateDir, Alive filled in.
func (a Argv) Status(stateDir string) []string { return a.with(CmdStatus, stateDir) }

// Check prints the host's Facts on one line; with clock, it then answers
// clock probes (one line in, one time out) on the same session.
func (a Argv) Check(clock bool) []string {
	if clock {
		return a.with(CmdCheck, "--clock")
	}
	return a.with(CmdCheck)
}

// Version prints the agent's version.
func (a Argv) Version() []string { return a.with(CmdVersion) }

// FormatTime is how instants are written on command lines and held lines.
func FormatTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

// ParseTime reads an instant written by FormatTime.
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// CmdTrigger fires a trigger on the agent of a state directory.
const CmdTrigger = "trigger"

// Trigger fires a trigger on the agent of stateDir at the instant (host
// clock), noting who and why; it answers a TriggerAnswer.
func (a Argv) Trigger(t Trigger, stateDir string) []string {
	b, _ := json.Marshal(t)
	return a.with(CmdTrigger, "--json", string(b), stateDir)
}
