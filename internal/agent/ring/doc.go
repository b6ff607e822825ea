// Package ring reads packets from a Linux AF_PACKET socket through a
// TPACKET_V3 memory-mapped ring: the kernel fills blocks of packets in shared
// memory and hands whole blocks over, so a capture costs no system call per
// packet. It is the Linux capture engine's input, written here (rather than
// taken from gopacket/afpacket) because the engine needs each packet's
// direction (sll_pkttype), a filter attached before the first packet can
// arrive, the kernel's drop counters, and a Close that cannot race a read.
package ring
