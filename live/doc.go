// Package live turns the packets that every capture point of a plan
// streams (casecap live) into one view: decoded from each capture's
// pcapng pieces, put in time order across hosts on casecap's clock after
// a short reordering delay, and printed one line per packet (or written
// as one live pcapng stream). The orchestrator feeds it; it knows nothing
// of hosts or SSH.
package live
