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

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab/seqcast"
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
		agentproto.JobCapture{Name: "h01.eth0.long", File: "h01.eth0.long.pcapng", Interface: "eth0", Filter: f, ExcludeOwnSSH: true, Start: start, Stop: start.Add(time.Minute)},
		agentproto.JobCapture{Name: "h01.eth0.short", File: "h01.eth0.short.pcapng", Interface: "eth0", Filter: f, ExcludeOwnSSH: true, MaxPackets: 200, Start: start, Stop: start.Add(time.Minute)},
	)
	deadline := time.Now().Add(10 * time.Second)
	var st agentproto.Status
	for {
		raw, err := os.ReadFile(filepath.Join(stateDir, agentproto.StatusFile))
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

// TestBeginLate: a begin that reaches the agent after its instant (300 ms
// late here) is honoured from the instant on for the packets the kernel
// still holds, and the status says by how much it came late
// (begin_late_ns, which the manifest carries): the packets of that time
// that the agent had already passed over are not in the file.
func TestBeginLate(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, time.Millisecond, 0)
	stateDir, caseDir := e.start("late", agentproto.JobCapture{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
		ExcludeOwnSSH: true, Filter: filter.Filter{UDPPort: u16(9999)}, Duration: 2 * time.Second, Stop: time.Now().Add(time.Minute)})
	at := time.Now().Add(-300 * time.Millisecond)
	if _, err := e.ssh(e.bin + " begin --at " + at.Format(time.RFC3339Nano) + " " + stateDir); err != nil {
		t.Fatal(err)
	}
	told := time.Now()
	st := e.wait(stateDir, 10*time.Second)
	cancel()
	<-s.done
	if st.BeginLate < 300*time.Millisecond || st.BeginLate > told.Sub(at)+100*time.Millisecond {
		t.Errorf("begin_late %v, want the ~%v between the instant and the begin's arrival", st.BeginLate, told.Sub(at))
	}
	if c := st.Captures[0]; !c.Start.Equal(at) || c.StopReason != "window-end" {
		t.Errorf("status %+v, want the window from %v", c, at)
	}
	got, err := seqcast.ReadFile(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng"), 1)
	if err != nil || got.Distinct == 0 {
		t.Fatalf("%+v %v", got, err)
	}
	if got.FirstSeen.Before(at) {
		t.Errorf("the file starts at %v, before the instant %v", got.FirstSeen, at)
	}
	if got.FirstSent.Before(at.Add(200 * time.Millisecond)) {
		t.Errorf("the file starts at %v, within 200 ms of the instant: the packets the late agent had passed over should be missing", got.FirstSent)
	}
}
