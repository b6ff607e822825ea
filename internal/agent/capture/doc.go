// Package capture runs one Linux capture: packets from a TPACKET_V3 ring,
// kept when their kernel timestamps fall inside the capture's window, written
// to a pcapng file that any Wireshark opens.
//
// A capture is armed first (filter compiled, socket open, file header
// written) and then runs until its window ends, a limit is reached, or it is
// asked to stop. Arming early and keeping packets by timestamp is how many
// hosts cover the same window: the start instant is a time stamp compared
// against every packet, not a moment when some process happened to wake up.
// Whatever ends it, the file is flushed, synced and closed, ends with an
// interface statistics block, and its CRC-32C is known.
package capture
