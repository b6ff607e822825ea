//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/frames"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/plans/filter"
)

// wireSender writes numbered UDP frames onto a wire, one every interval,
// while on is true; it counts what it wrote.
type wireSender struct {
	w    *lab.Wire
	seq  uint64
	stop chan struct{}
	done chan struct{}
}

func sendOnWire(w *lab.Wire, interval time.Duration, seq uint64) *wireSender {
	s := &wireSender{w: w, seq: seq, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				p := seqcast.Packet{Stream: 7, Seq: s.seq, Sent: time.Now()}
				if w.Send(frames.UDP("198.18.250.1", "198.18.250.2", 40000, 9999, p.Marshal(nil))) == nil {
					s.seq++
				}
			}
		}
	}()
	return s
}

// end stops the sender and returns the next sequence number.
func (s *wireSender) end() uint64 { close(s.stop); <-s.done; return s.seq }

// cpuTime reads a process's user+system CPU time inside a host.
func cpuTime(t *testing.T, h *lab.Host, pid int) time.Duration {
	t.Helper()
	out, err := h.Command(context.Background(), "cat", "/proc/"+strconv.Itoa(pid)+"/stat").Output()
	if err != nil {
		t.Fatalf("read the agent's CPU time: %v", err)
	}
	s := string(out)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// waitPackets waits until the capture's status shows at least n packets.
func (e *env) waitPackets(stateDir string, n uint64, within time.Duration) agentproto.Status {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := e.status(stateDir)
		if err == nil && len(st.Captures) > 0 && st.Captures[0].Packets >= n {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not %d packets within %v: %+v %v", n, within, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInterfaceDownThenGone: a captured interface that goes down makes the
// capture wait without using CPU and go on when it comes back; one that is
// deleted ends the capture at once, failed with the reason interface-gone,
// its file valid and holding every packet it had. (The agent once spun at
// 100% CPU for ever in both cases, deaf to its clock, stops and SIGTERM.)
func TestInterfaceDownThenGone(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	w, err := e.h.AddWire(ctx, "cct0")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	stateDir, caseDir := e.start("linkgone", agentproto.JobCapture{Name: "h01.cct0.RxTx", File: "h01.cct0.RxTx.pcapng", Interface: "cct0",
		Filter: filter.Filter{UDPPort: u16(9999)}, Start: start, Stop: start.Add(2 * time.Minute)})
	s := sendOnWire(w, time.Millisecond, 0)
	st := e.waitPackets(stateDir, 200, 10*time.Second)
	sent := s.end()
	pid := st.PID

	if err := w.Down(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the agent sees the link go
	cpu0, at0 := cpuTime(t, e.h, pid), time.Now()
	time.Sleep(5 * time.Second)
	used, over := cpuTime(t, e.h, pid)-cpu0, time.Since(at0)
	t.Logf("agent CPU with the captured link down: %v in %v (%.1f%% of a core)", used, over, 100*used.Seconds()/over.Seconds())
	if used > over/20 {
		t.Errorf("the agent used %v of CPU in %v while the captured link was down, want under 5%% of a core", used, over)
	}
	if st, err = e.status(stateDir); err != nil || st.Captures[0].State != "capturing" || !st.Alive {
		t.Fatalf("with the link down: %+v %v, want the capture still capturing", st, err)
	}

	if err := w.Up(ctx); err != nil {
		t.Fatal(err)
	}
	s = sendOnWire(w, time.Millisecond, sent)
	st = e.waitPackets(stateDir, sent+200, 10*time.Second)
	sent = s.end()
	e.waitPackets(stateDir, sent, 5*time.Second)

	deleted := time.Now()
	if err := w.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	st = e.wait(stateDir, 5*time.Second)
	took := time.Since(deleted)
	c := st.Captures[0]
	if took > 3*time.Second || c.State != "failed" || c.StopReason != "interface-gone" || !strings.Contains(c.Error, "cct0") || st.State != agentproto.StateFailed {
		t.Errorf("after the interface was deleted (%v ago): agent %s, capture %+v; want it ended at once, failed, stop reason interface-gone naming cct0", took, st.State, c)
	}
	file := filepath.Join(caseDir, filepath.Base(c.File))
	readable(t, file)
	got, err := seqcast.ReadFile(file, 7)
	if err != nil || uint64(got.Distinct) != sent || got.Missing != 0 || c.Packets != sent {
		t.Errorf("%s holds %+v (%v), status says %d packets; want all %d sent while the link was up", file, got, err, c.Packets, sent)
	}
	if raw, err := os.ReadFile(file); err != nil || int64(len(raw)) != c.Size {
		t.Errorf("%s: %d bytes, status says %d (%v)", file, len(raw), c.Size, err)
	}
}

// TestSIGTERMWhileLinkDown: SIGTERM ends the agent, with a valid file,
// while the link it captures is down.
func TestSIGTERMWhileLinkDown(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	w, err := e.h.AddWire(ctx, "cct1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	stateDir, caseDir := e.start("linkterm", agentproto.JobCapture{Name: "h01.cct1.RxTx", File: "h01.cct1.RxTx.pcapng", Interface: "cct1",
		Filter: filter.Filter{UDPPort: u16(9999)}, Start: start, Stop: start.Add(2 * time.Minute)})
	s := sendOnWire(w, time.Millisecond, 0)
	st := e.waitPackets(stateDir, 100, 10*time.Second)
	sent := s.end()
	e.waitPackets(stateDir, sent, 5*time.Second)
	if err := w.Down(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := e.ssh(fmt.Sprintf("kill -TERM %d", st.PID)); err != nil {
		t.Fatal(err)
	}
	st = e.wait(stateDir, 5*time.Second)
	c := st.Captures[0]
	if c.State != "stopped" || c.StopReason != "signal" || c.Packets != sent {
		t.Errorf("after SIGTERM with the link down: %+v, want stopped by signal with all %d packets", c, sent)
	}
	readable(t, filepath.Join(caseDir, filepath.Base(c.File)))
}

// TestInterfaceDeletedWhileDown: an interface removed while it was down
// raises no error on the socket (the kernel had already unhooked it); the
// capture still ends at once, failed, with the reason interface-gone.
func TestInterfaceDeletedWhileDown(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	w, err := e.h.AddWire(ctx, "cct2")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	stateDir, caseDir := e.start("linkdowngone", agentproto.JobCapture{Name: "h01.cct2.RxTx", File: "h01.cct2.RxTx.pcapng", Interface: "cct2",
		Filter: filter.Filter{UDPPort: u16(9999)}, Start: start, Stop: start.Add(2 * time.Minute)})
	s := sendOnWire(w, time.Millisecond, 0)
	e.waitPackets(stateDir, 100, 10*time.Second)
	sent := s.end()
	e.waitPackets(stateDir, sent, 5*time.Second)
	if err := w.Down(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	deleted := time.Now()
	if err := w.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.wait(stateDir, 5*time.Second)
	took := time.Since(deleted)
	c := st.Captures[0]
	if took > 3*time.Second || c.State != "failed" || c.StopReason != "interface-gone" || c.Packets != sent {
		t.Errorf("interface deleted while down (%v ago): %+v, want failed with interface-gone and all %d packets", took, c, sent)
	}
	readable(t, filepath.Join(caseDir, filepath.Base(c.File)))
}
