// Package agentproto is the contract between casecap and its capture agent,
// and the only thing the two share: the job casecap sends, the status the
// agent keeps, the files of a state directory, the agent's command line and
// the lines spoken on the session that arms and begins a host's captures.
//
// It is portable (no build tags, no system calls): casecap runs on macOS,
// Windows and Linux, and speaks this to agents on Linux and ESXi. The
// ssh-mode script (orchestrator/supervise.sh) writes the same status.json;
// a lab test holds it to Status with unknown fields refused. docs/design.md
// describes the protocol as a whole.
package agentproto
