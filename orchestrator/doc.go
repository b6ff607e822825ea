// Package orchestrator runs a capture plan over many hosts as ordered phases:
//
//	connect    one SSH connection per host (the local host needs none)
//	preflight  OS, architecture, datastore and its free space
//	deploy     the agent, uploaded once per shared datastore, verified by sha256
//	check      interfaces, tcpdump for raw filters, root; clock offset and RTT
//	arm        every capture ready on every host: sockets open, files created
//	begin      every capture starts at one agreed instant (per-host clock offset applied)
//	watch      live progress until the captures end (or Ctrl-C)
//	stop       every capture stops at one agreed instant
//	collect    every file downloaded, resumable, checked against the host's checksum
//
// A host whose phase fails skips the later ones and is reported with its
// phase and error. By default one failure before the start stops the run
// and nothing starts anywhere; with AllowPartial the others go on. Whatever
// happens, a host where something was armed is cleaned up.
//
// The state lives on each host's datastore (<datastore>/.casecap/cases/...),
// so that status, stop and collect work from a later process.
package orchestrator
