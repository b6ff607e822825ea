//go:build linux

package agent

import (
	"testing"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
)

// TestDropsSeen: a drops rule counts the kernel's drops, and on ESXi the
// packets a capture at the Drop point kept.
func TestDropsSeen(t *testing.T) {
	linux := agentproto.JobCapture{Name: "h.eth0.RxTx"}
	drop := agentproto.JobCapture{Name: "e.Drop", Pktcap: &esxi.Capture{Points: []string{"Drop"}}}
	uplink := agentproto.JobCapture{Name: "e.uplink", Pktcap: &esxi.Capture{Uplink: "vmnic0", Points: []string{"UplinkRcvKernel"}}}
	st := agentproto.CaptureStatus{Packets: 7, Drops: 2}
	for _, c := range []struct {
		jc   agentproto.JobCapture
		want uint64
	}{{linux, 2}, {drop, 7}, {uplink, 2}} {
		if got, _ := dropsSeen(c.jc, st); got != c.want {
			t.Errorf("%s: %d drops seen, want %d", c.jc.Name, got, c.want)
		}
	}
}
