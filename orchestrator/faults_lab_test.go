//go:build linux

package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// collectUntil collects until it succeeds (a host may take a moment to be
// reachable again), and checks that every file is whole: present, sha256
// as the manifest says, read by tshark with the manifest's packet count.
func collectUntil(t *testing.T, p *plans.Plan, out string, within time.Duration) *orchestrator.Manifest {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, err := newOrch(t, p, out).Collect(context.Background())
		if err == nil {
			for _, c := range m.Captures {
				file := filepath.Join(out, p.CaseDir(), c.File)
				if !c.Collected || sum(t, file) != c.SHA256 {
					t.Errorf("%s: collected %v, sha256 differs", c.File, c.Collected)
				}
				if n := tsharkCount(t, file); uint64(n) != c.Packets {
					t.Errorf("%s: tshark reads %d packets, the manifest says %d", c.File, n, c.Packets)
				}
			}
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("collect: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func tsharkCount(t *testing.T, file string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-n", "-r", file, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", file, err)
	}
	return len(strings.Fields(string(out)))
}

// withConnectTimeout makes a lab plan give up on a silent host quickly.
func withConnectTimeout(t *testing.T, p *plans.Plan, d time.Duration) *plans.Plan {
	for _, h := range p.Hosts {
		h.SSH.ConnectTimeout = d
	}
	return p
}

// TestLinkCutMidCapture: one host's link is cut while every host captures.
// The others are unaffected; that host's capture goes on (packets again
// once the link is back, to the window's end); status says it is
// unreachable; collect succeeds once the link is back.
func TestLinkCutMidCapture(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 22, time.Millisecond)
	const window = 8 * time.Second
	p := withConnectTimeout(t, labPlan(t, l, "CUT", window, "      - interface: eth0\n        filter: { udpport: 9999 }\n"), 2*time.Second)
	out := t.TempDir()
	if _, err := newOrch(t, p, out).Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	began := time.Now()
	cut := l.Hosts[1]
	time.Sleep(time.Second)
	if err := cut.LinkDown(); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	m, err := newOrch(t, p, out).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), cut.Name) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("status with %s cut off: %v, want it named unreachable", cut.Name, err)
	}
	var ue *orchestrator.UnreachableError
	if !errors.As(err, &ue) || strings.Count(err.Error(), cut.Name) != 1 {
		t.Errorf("status with %s cut off: %v, want an UnreachableError naming the host once", cut.Name, err)
	}
	for _, h := range m.Hosts {
		if h.Reachable == (h.Name == cut.Name) {
			t.Errorf("status: %s reachable %v", h.Name, h.Reachable)
		}
	}
	for _, c := range m.Captures {
		if c.Host != cut.Name && (c.State != "capturing" || c.Packets == 0) {
			t.Errorf("status: %s is %s with %d packets, want capturing", c.File, c.State, c.Packets)
		}
	}
	time.Sleep(2 * time.Second)
	if err := cut.LinkUp(); err != nil {
		t.Fatal(err)
	}
	cutFor := time.Since(cutAt)
	time.Sleep(time.Until(began.Add(window + time.Second)))
	m = collectUntil(t, p, out, 20*time.Second)
	var lasts []time.Time
	for _, c := range m.Captures {
		s, err := seqcast.ReadFile(filepath.Join(out, "Case_CUT", c.File), 22)
		if err != nil {
			t.Fatal(err)
		}
		lasts = append(lasts, s.LastSent)
		switch {
		case c.Host == cut.Name && (s.Missing == 0 || time.Duration(s.Missing)*time.Millisecond > cutFor+500*time.Millisecond):
			t.Errorf("%s: %d packets missing, want those of the %v the link was down (one a millisecond)", c.File, s.Missing, cutFor)
		case c.Host != cut.Name && !s.Contiguous():
			t.Errorf("%s: %+v, want every packet of the window", c.File, s)
		}
	}
	// The cut host captured to the same end as the others.
	for _, x := range lasts {
		if d := x.Sub(lasts[0]).Abs(); d > 20*time.Millisecond {
			t.Errorf("captures ended %v apart, want together", d)
		}
	}
}

// TestSSHDKilledMidRun: a host's sshd dies while `run` watches, and comes
// back: the run goes on, that host's capture never stops, and run
// collects every file whole.
func TestSSHDKilledMidRun(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 23, time.Millisecond)
	p := withConnectTimeout(t, labPlan(t, l, "SSHD", 6*time.Second, "      - interface: eth0\n        filter: { udpport: 9999 }\n"), 2*time.Second)
	out := t.TempDir()
	victim := l.Hosts[2]
	d := newCapturingDisplay()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", Display: d,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	var m *orchestrator.Manifest
	var err error
	d.whileCapturing(t, func() { m, err = o.Run(context.Background()) }, victim.KillSSHD, victim.StartSSHD)
	if err != nil {
		t.Fatalf("run with %s's sshd killed and restarted: %v", victim.Name, err)
	}
	for _, c := range m.Captures {
		file := filepath.Join(out, "Case_SSHD", c.File)
		if !c.Collected || sum(t, file) != c.SHA256 || uint64(tsharkCount(t, file)) != c.Packets {
			t.Errorf("%s: not collected whole", c.File)
		}
		s, err := seqcast.ReadFile(file, 23)
		if err != nil || !s.Contiguous() || s.Distinct < 5000 {
			t.Errorf("%s: %+v %v; want the whole 6 s window", c.File, s, err)
		}
	}
}

// floodUDP sends 1400-byte datagrams from the gateway to a host, about
// 4 MB/s, until ctx ends.
func floodUDP(ctx context.Context, t *testing.T, l *lab.Lab, to netip.Addr) {
	conn, err := net.ListenPacket("udp4", l.Gateway.String()+":0")
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	payload := make([]byte, 1400)
	dst := &net.UDPAddr{IP: to.AsSlice(), Port: 9999}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		for range 3 {
			conn.WriteTo(payload, dst)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// TestDatastoreFills: while a host captures, something else fills its
// datastore (a 100 MiB filesystem of its own) to 20 MiB free. The capture
// stops before the plan's min_free (16 MiB) is crossed, with a valid file,
// and its status says min-free.
func TestDatastoreFills(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 1)
	h := l.Hosts[0]
	inHost := func(script string) string {
		out, err := h.Command(context.Background(), "sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	inHost("mkdir -p /srv/small && mount -t tmpfs -o size=100m,mode=0750 casecap-small /srv/small")
	t.Cleanup(func() { h.Command(context.Background(), "umount", "/srv/small").Run() })
	freeKB := func() int {
		n, err := strconv.Atoi(inHost("df -Pk /srv/small | tail -n 1 | awk '{print $4}'"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go floodUDP(ctx, t, l, h.Addr)
	plan := fmt.Sprintf("case: FULL\ndatastore: /srv/small\nduration: 30s\nmin_free: 16MiB\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0, filter: { udpport: 9999 } } ] }\n",
		l.ClientKey, l.KnownHosts, h.Name, h.Addr)
	p, err := plans.Parse("full.yaml", []byte(plan))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	go func() {
		time.Sleep(1500 * time.Millisecond)
		// Someone else's files fill the datastore to 20 MiB free.
		fill := freeKB() - 20*1024
		h.Command(context.Background(), "sh", "-c", fmt.Sprintf("head -c %dk /dev/zero > /srv/small/someone-elses-file", fill)).Run()
	}()
	began := time.Now()
	m, err := newOrch(t, p, out).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("run took %v: the capture did not stop for min_free", d)
	}
	c := m.Captures[0]
	if c.State != "stopped" || c.StopReason != "min-free" || !c.Collected {
		t.Fatalf("capture: %s, stopped by %q, collected %v; want stopped by min-free", c.State, c.StopReason, c.Collected)
	}
	file := filepath.Join(out, "Case_FULL", c.File)
	if n := tsharkCount(t, file); n == 0 || uint64(n) != c.Packets || sum(t, file) != c.SHA256 {
		t.Errorf("%s: tshark reads %d packets, manifest %d", c.File, n, c.Packets)
	}
	if free := freeKB(); free < 16*1024 {
		t.Errorf("%d KiB free at the end: min_free (16 MiB) was crossed", free)
	}
	if c.Size < 1<<20 {
		t.Errorf("the capture wrote only %d bytes: did the datastore fill while it ran?", c.Size)
	}
}

// capturingDisplay is a Display that tells when every capture runs, so
// that a fault meant to land mid-capture waits for that rather than for a
// fixed delay (which a slow machine can outlast).
type capturingDisplay struct {
	once sync.Once
	ch   chan struct{}
}

func newCapturingDisplay() *capturingDisplay { return &capturingDisplay{ch: make(chan struct{})} }

func (d *capturingDisplay) HostPhase(string, string)         {}
func (d *capturingDisplay) HostFailed(string, string, error) {}
func (d *capturingDisplay) Captures(_, _ time.Duration, caps []orchestrator.Progress) {
	for _, c := range caps {
		if c.State != "capturing" {
			return
		}
	}
	if len(caps) > 0 {
		d.once.Do(func() { close(d.ch) })
	}
}
func (d *capturingDisplay) Download(string, string, int64) orchestrator.Transfer {
	return nopTransfer{}
}
func (d *capturingDisplay) Close() {}

type nopTransfer struct{}

func (nopTransfer) Add(int64)  {}
func (nopTransfer) Done(error) {}

// whileCapturing runs run (a command using d as its display) and, once
// every capture runs, calls down, waits 2 s and calls up. It returns when
// both run and the fault are over; the fault is skipped (and the test
// failed) if the captures never ran.
func (d *capturingDisplay) whileCapturing(t *testing.T, run func(), down, up func() error) {
	t.Helper()
	ran := make(chan struct{})
	faulted := make(chan struct{})
	go func() {
		defer close(faulted)
		select {
		case <-d.ch:
		case <-ran:
			t.Error("the captures never ran, so the fault was not injected")
			return
		}
		if err := down(); err != nil {
			t.Error(err)
		}
		time.Sleep(2 * time.Second)
		if err := up(); err != nil {
			t.Error(err)
		}
	}()
	run()
	close(ran)
	<-faulted
}
