// Package pcapfile counts the packets of pcapng and pcap files, whole or as
// they grow: the agent counts what pktcap-uw writes, and casecap counts a
// file it collects as it was (no agent left to say how many it holds).
package pcapfile
