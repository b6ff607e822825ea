// Package seqcast is the lab's clock for "together" (docs/design.md, section 1 "Phases", begin):
// a sender of numbered UDP broadcast packets that every lab host receives at
// the same moment, and a reader that tells, for any pcap or pcapng file, the
// first and last number captured, how many, and which were missing.
//
// Each packet's payload is
//
//	"CCSEQ\x01" | stream uint32 | seq uint64 | sent unix-nanoseconds int64
//
// (big endian). The first packet in a host's file shows when its capture
// really started, the last when it really stopped; comparing the sender's
// timestamps of those packets across hosts gives start and stop skew.
package seqcast
