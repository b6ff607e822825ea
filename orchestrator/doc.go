// Package orchestrator runs a capture plan over many hosts as ordered
// phases (phases.go), each in a file named after it:
//
//	connect    one SSH connection per host (the local host needs none)
//	preflight  OS, architecture, datastore and its free space; the host's driver
//	claim      the case claimed on the datastores
//	inventory  the captures resolved on the host (ESXi: its ports)
//	deploy     the agent, uploaded once per shared datastore, verified by sha256
//	check      interfaces, tcpdump for raw filters, root; clock offset and RTT
//	arm        every capture ready on every host: sockets open, files created
//	begin      every capture starts at one agreed instant (per-host clock offset applied)
//	watch      live progress until the captures end (or Ctrl-C)
//	stop       every capture stops at one agreed instant
//	collect    every file downloaded, resumable, checked against the host's checksum
//
// How a host's captures are made is its driver (driver.go), one per capture
// mode: the Linux agent, the ESXi agent, ESXi's ssh mode. The phases say
// when; the drivers say how; only chooseDriver and fallbackDriver look at a
// host's kind or mode. casecap and its agent share nothing but
// internal/agentproto.
//
// A host whose phase fails skips the later ones and is reported with its
// phase and error (HostError). By default one failure before the start
// stops the run and nothing starts anywhere; with AllowPartial the others
// go on. Whatever happens, a host where something was armed is cleaned up.
//
// The state lives on each host's datastore (<datastore>/.casecap/cases/...),
// so that status, stop and collect work from a later process. The design as
// a whole: docs/design.md.
package orchestrator
