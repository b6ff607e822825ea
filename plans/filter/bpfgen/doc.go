// Package bpfgen turns a capture's filter into a classic BPF program that the
// Linux kernel runs on the capture socket, so that unwanted packets never
// cross into user space.
//
// Structured filters (ip, ports, vlan, ...) are compiled here, in pure Go,
// with golang.org/x/net/bpf: the agent needs nothing on the host. The program
// means exactly what filter.Expression says in pcap-filter syntax; a test
// runs both against tcpdump's own compilation of that expression. A raw
// pcap-filter expression (expr) is compiled by the host's tcpdump (-ddd);
// without tcpdump it is an error the orchestrator reports at preflight.
//
// The program's accept value is the snap length, which is how a packet
// socket truncates packets.
package bpfgen
