// Package esxi is what casecap knows of an ESXi host's own tools: it reads
// what net-stats, esxcli, vsish and vmware print (an inventory of ports,
// VMs, uplinks and vmks), resolves a plan's targets against it (a VM's vNIC
// to its switchport, `uplink: auto` to the port's team uplink), and builds
// pktcap-uw command lines from a capture. The agent (on the host) and the
// orchestrator (over SSH, when the agent cannot run there) share it, so a
// capture means the same command either way.
//
// Every parser reads text a host printed: it never panics, refuses what it
// cannot read with the line it stopped at, and has a fuzz target.
package esxi
