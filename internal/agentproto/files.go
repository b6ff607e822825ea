package agentproto

import "time"

// The files of a state directory (<datastore>/.casecap/cases/CASE/HOST/).
const (
	JobFile    = "job.json"    // the job, as casecap sent it
	PIDFile    = "agent.pid"   // "PID STARTTIME" of the running agent
	StatusFile = "status.json" // Status, rewritten atomically twice a second
	RecordFile = "run.json"    // casecap's own record of the run (Job.Record)
	StopFile   = "stop.json"   // an Instant: stop then, read on SIGUSR1
	BeginFile  = "begin.json"  // an Instant: begin then, read on SIGUSR2
	// TriggerFiles are Triggers (casecap trigger's, or another host's),
	// one file per request (trigger.<unix ns>.<pid>.json: two requests at
	// once keep both), read and removed on SIGWINCH.
	TriggerFiles = "trigger.*.json"
	// RingDir holds each ring capture's segment files, by capture name.
	RingDir = "ring"
	LogFile = "agent.log" // what the agent had to say

	// Ssh mode (ESXi hosts that refuse to run the uploaded agent): casecap's
	// script drives pktcap-uw and keeps StatusFile, PIDFile and RecordFile
	// the same way.
	SuperviseFile = "supervise.sh" // the script
	ShellJobFile  = "job.sh"       // the job as shell variables and functions
	StopNowFile   = "stop"         // its presence stops every capture now
)

// StatusEvery is how often an agent (and the ssh-mode script) rewrites
// StatusFile while its captures run.
const StatusEvery = 500 * time.Millisecond

// Instant is what StopFile and BeginFile hold.
type Instant struct {
	At time.Time `json:"at"` // zero: now
}
