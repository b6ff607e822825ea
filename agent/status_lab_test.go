//go:build linux

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/casecap/casecap/agent"
	"github.com/casecap/casecap/plans/filter"
)

// TestFinishedCaptureStatusWhileOthersRun: the status the agent rewrites
// while one capture still runs gives a capture that already ended its
// final size and checksum, both of the file as it is: if the agent dies
// then, that is all casecap has to verify the file with. (It once gave
// the size before the file's closing statistics block.)
func TestFinishedCaptureStatusWhileOthersRun(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, time.Millisecond, 0)
	start := time.Now()
	f := filter.Filter{UDPPort: u16(9999)}
	stateDir, caseDir := e.start("finishedfirst",
		agent.JobCapture{Name: "h01.eth0.long", File: "h01.eth0.long.pcapng", Interface: "eth0", Filter: f, ExcludeOwnSSH: true, Start: start, Stop: start.Add(time.Minute)},
		agent.JobCapture{Name: "h01.eth0.short", File: "h01.eth0.short.pcapng", Interface: "eth0", Filter: f, ExcludeOwnSSH: true, MaxPackets: 200, Start: start, Stop: start.Add(time.Minute)},
	)
	deadline := time.Now().Add(10 * time.Second)
	var st agent.Status
	for {
		raw, err := os.ReadFile(filepath.Join(stateDir, agent.StatusFile))
		if err == nil {
			err = json.Unmarshal(raw, &st)
		}
		if err == nil && len(st.Captures) == 2 && st.Captures[1].StopReason == "packet-count" && st.Captures[0].State == "capturing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the short capture did not end while the long one ran: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := st.Captures[1]
	raw, err := os.ReadFile(filepath.Join(caseDir, "h01.eth0.short.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	crc := fmt.Sprintf("%08x", crc32.Checksum(raw, crc32.MakeTable(crc32.Castagnoli)))
	if c.Size != int64(len(raw)) || c.CRC32C != crc {
		t.Errorf("the running agent's status of the ended capture: size %d, crc32c %s; the file: %d bytes, %s", c.Size, c.CRC32C, len(raw), crc)
	}
	cancel()
	<-s.done
}
