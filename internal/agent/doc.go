// Package agent is casecap's capture agent: the small static program the
// orchestrator deploys to each host's datastore and runs there.
//
// One agent process runs one Job: every capture of one case on one host. It
// arms them all, reports "armed", captures each inside its window, stops by
// itself at each window's end whatever happens to the orchestrator or the
// network, and leaves each file valid, synced and hashed. Its state lives in
// the job's state directory on the datastore, so that `casecap status`,
// `stop` and `collect` work from any later SSH session:
//
//	job.json     the job, as the orchestrator wrote it
//	agent.pid    "PID STARTTIME" of the running agent
//	status.json  every capture's progress, rewritten atomically twice a second
//	stop.json    a stop request ({"at": ...}), read on SIGUSR1
//	agent.log    what the agent had to say
package agent
