// Package agent is casecap's capture agent: the small static program the
// orchestrator deploys to each host's datastore and runs there.
//
// One agent process runs one Job: every capture of one case on one host. It
// arms them all, reports "armed", captures each inside its window, stops by
// itself at each window's end whatever happens to the orchestrator or the
// network, and leaves each file valid, synced and hashed. Its state lives in
// the job's state directory on the datastore, so that `casecap status`,
// `stop` and `collect` work from any later SSH session. What it reads,
// writes and answers is package agentproto's.
package agent
