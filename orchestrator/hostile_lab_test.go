//go:build linux

package orchestrator_test

// Issue 10's findings, tried as a hostile or unlucky user would: each test
// failed before its fix.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// planText loads a plan written out in full.
func planText(t *testing.T, text string) *plans.Plan {
	t.Helper()
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// planHead is a plan's top for a lab, up to "hosts:".
func planHead(l *lab.Lab, caseID string, duration time.Duration) string {
	return fmt.Sprintf("case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s, connect_timeout: 3s }\nhosts:\n",
		caseID, l.Datastore, duration, l.ClientKey, l.KnownHosts)
}

// agentPID reads the (host-namespace) PID of a case's agent on a host from
// its status.json on the shared datastore.
func agentPID(t *testing.T, l *lab.Lab, caseID string, h *lab.Host) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", caseID, h.Name, "agent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(raw))[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestInterfaceGoneMidRun: an interface deleted on one host mid-run fails
// that capture at once (interface-gone) with the packets it had, collected
// and verified; every other capture runs to its end and is collected
// whole; the run exits with an error naming the capture.
func TestInterfaceGoneMidRun(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 31, time.Millisecond)
	w, err := l.Hosts[1].AddWire(context.Background(), "cctg")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	text := planHead(l, "GONE", 4*time.Second)
	for _, h := range l.Hosts {
		text += fmt.Sprintf("  - name: %s\n    address: %s\n    kind: linux\n    captures:\n      - interface: eth0\n        filter: { udpport: 9999 }\n", h.Name, h.Addr)
	}
	text += "      - interface: cctg\n"
	p := planText(t, text)
	out := t.TempDir()
	d := newCapturingDisplay()
	var m *orchestrator.Manifest
	began := time.Now()
	d.whileCapturing(t, func() { m, err = withDisplay(t, p, out, d).Run(context.Background()) },
		func() error { return w.Delete(context.Background()) }, func() error { return nil })
	if took := time.Since(began); err == nil || !strings.Contains(err.Error(), "h02.cctg.RxTx.pcapng") || !strings.Contains(err.Error(), "removed") {
		t.Errorf("run (%v): %v, want an error naming the capture whose interface was removed", took, err)
	}
	for _, c := range m.Captures {
		file := filepath.Join(out, "Case_GONE", c.File)
		if c.File == "h02.cctg.RxTx.pcapng" {
			if c.State != "failed" || c.StopReason != "interface-gone" || !c.Collected || sum(t, file) != c.SHA256 {
				t.Errorf("%s: %+v, want failed with interface-gone, collected and verified", c.File, c)
			}
			continue
		}
		s, err := seqcast.ReadFile(file, 31)
		if err != nil || !c.Collected || c.State != "stopped" || c.StopReason != "window-end" || !s.Contiguous() || s.Distinct < 3500 {
			t.Errorf("%s: %+v, stream %+v %v; want the whole 4 s window, collected", c.File, c, s, err)
		}
	}
}

// TestStopSaysWhenACaptureStillRuns: `stop` against an agent that cannot
// act on it (frozen) reports the host's captures as still running, not
// success; once the agent can stop, stop succeeds.
func TestStopSaysWhenACaptureStillRuns(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	p := labPlan(t, l, "FROZEN", 10*time.Minute, "      - interface: eth0\n        filter: { udpport: 9999 }\n")
	out := t.TempDir()
	if _, err := newOrch(t, p, out).Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	h := l.Hosts[1]
	pid := strconv.Itoa(agentPID(t, l, "FROZEN", h))
	if b, err := h.Command(context.Background(), "kill", "-STOP", pid).CombinedOutput(); err != nil {
		t.Fatalf("kill -STOP: %v %s", err, b)
	}
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", StopWait: 3 * time.Second})
	m, err := o.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), h.Name) || !strings.Contains(err.Error(), "still running") {
		t.Errorf("stop with %s's agent frozen: %v, want an error saying its captures still run", h.Name, err)
	}
	for _, c := range m.Captures {
		if (c.Host == h.Name) == (c.State == "stopped") {
			t.Errorf("after stop, %s is %s", c.File, c.State)
		}
	}
	if b, err := h.Command(context.Background(), "kill", "-CONT", pid).CombinedOutput(); err != nil {
		t.Fatalf("kill -CONT: %v %s", err, b)
	}
	if _, err := newOrch(t, p, out).Stop(context.Background()); err != nil {
		t.Errorf("stop once the agent runs again: %v", err)
	}
	collectUntil(t, p, out, 10*time.Second)
}

// TestConcurrentUploads: three runs start at once on a datastore that does
// not hold the agent yet, and each run's hosts reach that one directory by
// two paths (the datastore and a symlink to it, as ESXi's
// /vmfs/volumes/<name> and /vmfs/volumes/<uuid> are one storage). Every
// run starts, on a verified agent; nothing half-written is left. Three
// rounds, the agent removed before each.
func TestConcurrentUploads(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 4)
	alias := filepath.Join(filepath.Dir(l.Datastore), "datastore-alias")
	if err := os.Symlink(l.Datastore, alias); err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Join(l.Datastore, ".casecap", "agent")
	for round := range 3 {
		if err := os.RemoveAll(agentDir); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 3)
		for run := range 3 {
			caseID := fmt.Sprintf("UP%d-%d", round, run)
			text := planHead(l, caseID, time.Second)
			for i, h := range l.Hosts {
				ds := l.Datastore
				if i%2 == 1 {
					ds = alias
				}
				text += fmt.Sprintf("  - name: %s\n    address: %s\n    kind: linux\n    datastore: %s\n    captures:\n      - interface: eth0\n        filter: { udpport: 9999 }\n", h.Name, h.Addr, ds)
			}
			p := planText(t, text)
			go func() {
				_, err := newOrch(t, p, t.TempDir()).Start(context.Background())
				if err != nil {
					err = fmt.Errorf("round %d, run %d: %w", round, run, err)
				}
				errs <- err
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	entries, err := os.ReadDir(agentDir)
	if err != nil {
		t.Fatal(err)
	}
	want := sum(t, agenttest.Binary(t))
	for _, e := range entries {
		file := filepath.Join(agentDir, e.Name())
		if !strings.HasPrefix(e.Name(), "casecap-agent-") || sum(t, file) != want {
			t.Errorf("the agent directory holds %s: want only the agent, whole", e.Name())
		}
	}
}

// TestConcurrentStartsOneWinner: the same case started four times at once:
// exactly one start proceeds, every other is refused at once, naming the
// claim, and touches nothing (the winner's captures run on and are
// collected whole). Three rounds.
func TestConcurrentStartsOneWinner(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 32, time.Millisecond)
	for round := range 3 {
		caseID := fmt.Sprintf("RACE%d", round)
		p := labPlan(t, l, caseID, 3*time.Second, "      - interface: eth0\n        filter: { udpport: 9999 }\n")
		out := t.TempDir()
		type result struct {
			err  error
			took time.Duration
		}
		results := make(chan result, 4)
		for range 4 {
			go func() {
				began := time.Now()
				_, err := newOrch(t, p, out).Start(context.Background())
				results <- result{err, time.Since(began)}
			}()
		}
		won := 0
		for range 4 {
			r := <-results
			switch {
			case r.err == nil:
				won++
			case !strings.Contains(r.err.Error(), "claimed by another run"):
				t.Errorf("round %d: a start failed for another reason than the claim (after %v): %v", round, r.took, r.err)
			case r.took > 5*time.Second:
				t.Errorf("round %d: a refused start took %v, want at once", round, r.took)
			}
		}
		if won != 1 {
			t.Errorf("round %d: %d starts proceeded, want exactly one", round, won)
		}
		time.Sleep(3 * time.Second)
		m := collectUntil(t, p, out, 20*time.Second)
		for _, c := range m.Captures {
			s, err := seqcast.ReadFile(filepath.Join(out, p.CaseDir(), c.File), 32)
			if err != nil || !s.Contiguous() || s.Distinct < 2500 || c.StopReason != "window-end" {
				t.Errorf("round %d: %s: %+v %v (%s), want the whole 3 s window", round, c.File, s, err, c.StopReason)
			}
		}
	}
}

// TestFailedStartLeavesNothingBehind: a start that fails while arming (one
// host's filter does not compile there) disarms the others; the same case
// then runs, nothing of the failed start in its way.
func TestFailedStartLeavesNothingBehind(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 33, time.Millisecond)
	plan := func(bad bool) *plans.Plan {
		text := planHead(l, "AGAIN", 2*time.Second)
		for i, h := range l.Hosts {
			f := "{ udpport: 9999 }"
			if bad && i == 2 {
				f = `{ expr: "udp port 9999 and not a filter" }`
			}
			text += fmt.Sprintf("  - name: %s\n    address: %s\n    kind: linux\n    captures:\n      - interface: eth0\n        filter: %s\n", h.Name, h.Addr, f)
		}
		return planText(t, text)
	}
	out := t.TempDir()
	if _, err := newOrch(t, plan(true), out).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "arm") {
		t.Fatalf("start with a filter h03 cannot compile: %v, want it to fail at arm", err)
	}
	left, _ := filepath.Glob(filepath.Join(l.Datastore, "Case_AGAIN", "*"))
	if len(left) != 0 {
		t.Errorf("the failed start left %v on the datastore", left)
	}
	p := plan(false)
	if _, err := newOrch(t, p, out).Run(context.Background()); err != nil {
		t.Fatalf("run of the same case after the failed start: %v", err)
	}
	m := collectUntil(t, p, out, 10*time.Second)
	for _, c := range m.Captures {
		if s, err := seqcast.ReadFile(filepath.Join(out, p.CaseDir(), c.File), 33); err != nil || !s.Contiguous() {
			t.Errorf("%s: %+v %v", c.File, s, err)
		}
	}
}

// TestCollectAfterAgentDied: a host's agent is killed (SIGKILL: a crash, a
// reboot's worth) while one of its captures runs and the other has
// finished. stop and status say the agent is gone; collect takes the
// finished capture verified as usual, and the unfinished one as it is on
// the host, marked so (stop reason agent-gone, not verified); the other
// host is collected whole.
func TestCollectAfterAgentDied(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 34, time.Millisecond)
	p := labPlan(t, l, "DEAD", time.Minute, `      - interface: eth0
        filter: { udpport: 9999 }
      - interface: eth0
        filter: { udpport: 9999 }
        max_packets: 300
        label: short
`)
	out := t.TempDir()
	if _, err := newOrch(t, p, out).Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	dead := l.Hosts[1]
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, _ := newOrch(t, p, out).Status(context.Background())
		short := 0
		for _, c := range m.Captures {
			if c.StopReason == "packet-count" {
				short++
			}
		}
		if short == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the short captures did not finish: %+v", m.Captures)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pid := strconv.Itoa(agentPID(t, l, "DEAD", dead))
	if b, err := dead.Command(context.Background(), "kill", "-KILL", pid).CombinedOutput(); err != nil {
		t.Fatalf("kill -KILL: %v %s", err, b)
	}
	if _, err := newOrch(t, p, out).Status(context.Background()); err == nil || !strings.Contains(err.Error(), "agent is gone") {
		t.Errorf("status with %s's agent dead: %v, want it to say so", dead.Name, err)
	}
	if _, err := newOrch(t, p, out).Stop(context.Background()); err == nil || !strings.Contains(err.Error(), "agent is gone") {
		t.Errorf("stop with %s's agent dead: %v, want it to say so", dead.Name, err)
	}
	m, err := newOrch(t, p, out).Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Errorf("collect: %v, want an error about the capture collected unverified", err)
	}
	for _, c := range m.Captures {
		local := filepath.Join(out, "Case_DEAD", c.File)
		remote := filepath.Join(l.Datastore, "Case_DEAD", c.File)
		switch {
		case c.Host == dead.Name && !strings.Contains(c.File, "short"):
			if !c.Collected || c.Verified || c.StopReason != "agent-gone" || c.State != "capturing" || sum(t, local) != c.SHA256 || sum(t, remote) != c.SHA256 {
				t.Errorf("%s: %+v, want collected as it is on the host, unverified, stop reason agent-gone", c.File, c)
			}
			if s, err := seqcast.ReadFile(local, 34); err != nil && s.Distinct == 0 {
				t.Errorf("%s: %+v %v, want the packets the agent wrote before it died", c.File, s, err)
			}
		default:
			if !c.Collected || !c.Verified || c.State != "stopped" || sum(t, local) != c.SHA256 {
				t.Errorf("%s: %+v, want collected and verified", c.File, c)
			}
		}
	}
}

// TestCollectsAtOnceIntoOneFolder: three collects of one case into one
// --out at once: each succeeds (one collects, the others wait for it and
// find every file there, verified), and the manifest left says every
// capture is collected. Before, the losers of the race failed ("rename
// ...part: no such file") and their manifest could be the one left.
func TestCollectsAtOnceIntoOneFolder(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 35, 100*time.Microsecond)
	p := labPlan(t, l, "TWICE", 2*time.Second, "      - interface: eth0\n        filter: { udpport: 9999 }\n")
	if _, err := newOrch(t, p, t.TempDir()).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for round := range 4 {
		out := t.TempDir()
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := newOrch(t, p, out).Collect(context.Background())
				errs <- err
			}()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Errorf("round %d: collect: %v", round, err)
			}
		}
		raw, err := os.ReadFile(filepath.Join(out, "Case_TWICE", "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		var m orchestrator.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for _, c := range m.Captures {
			if !c.Collected || !c.Verified || sum(t, filepath.Join(out, "Case_TWICE", c.File)) != c.SHA256 {
				t.Errorf("round %d: the manifest left says %s: %+v", round, c.File, c)
			}
		}
		if len(m.Errors) > 0 {
			t.Errorf("round %d: the manifest left has errors %v", round, m.Errors)
		}
	}
}

// tsharkCountOf counts a file's packets that match a display filter.
func tsharkCountOf(t *testing.T, file, display string) int {
	t.Helper()
	out, err := exec.Command("tshark", "-n", "-r", file, "-Y", display, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark -r %s -Y %q: %v", file, display, err)
	}
	return len(strings.Fields(string(out)))
}

// TestOwnSSHExcludedOverIPv6: hosts reached at IPv6 addresses capture
// everything on eth0 but casecap's own SSH sessions, as over IPv4: the
// resolved filter says so, the files hold no SSH frame, and they do hold
// the other IPv6 traffic. (The exclusion was once dropped silently for
// IPv6, while validate still showed it.)
func TestOwnSSHExcludedOverIPv6(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 2, IPv6: true})
	text := planHead(l, "V6", 2*time.Second)
	for _, h := range l.Hosts {
		text += fmt.Sprintf("  - name: %s\n    address: \"%s\"\n    kind: linux\n    captures:\n      - interface: eth0\n        filter: {}\n", h.Name, h.Addr6)
	}
	p := planText(t, text)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, h := range l.Hosts {
		conn, err := net.Dial("udp6", net.JoinHostPort(h.Addr6.String(), "9999"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() {
			for ctx.Err() == nil {
				conn.Write([]byte("casecap over ipv6"))
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	out := t.TempDir()
	m, err := newOrch(t, p, out).Run(context.Background())
	if err != nil {
		t.Fatalf("run over IPv6: %v", err)
	}
	for _, c := range m.Captures {
		file := filepath.Join(out, "Case_V6", c.File)
		if !strings.Contains(c.Filter, "not (tcp and ((src host "+l.Gateway6.String()) {
			t.Errorf("%s: resolved filter %q, want casecap's SSH from %s left out", c.File, c.Filter, l.Gateway6)
		}
		if n := tsharkCountOf(t, file, "tcp.port == 22"); n != 0 {
			t.Errorf("%s holds %d of casecap's SSH frames", c.File, n)
		}
		if n := tsharkCountOf(t, file, "ipv6 && udp.dstport == 9999"); n < 100 {
			t.Errorf("%s holds %d of the IPv6 datagrams sent to it, want ~200", c.File, n)
		}
	}
}

// TestFirstFailureStopsTheRest: without --allow-partial, the first host
// that fails before the start ends the start for all: hosts not yet tried
// are never tried, those in flight are cut short, nothing is armed. Two
// real hosts and 200 silent addresses on the lab's IPv6 network (no one
// holds them: each connect fails after neighbour discovery gives up, ~3 s),
// 8 at a time: the start ends after one batch, not after 25.
// CASECAP_FAILFAST_SILENT and CASECAP_FAILFAST_PARALLEL change the counts
// (10000 and 64: the figure in docs/faults.md).
func TestFirstFailureStopsTheRest(t *testing.T) {
	labtest.Require(t)
	silent, parallel := 200, 8
	if n, err := strconv.Atoi(os.Getenv("CASECAP_FAILFAST_SILENT")); err == nil && n > 0 {
		silent = n
	}
	if n, err := strconv.Atoi(os.Getenv("CASECAP_FAILFAST_PARALLEL")); err == nil && n > 0 {
		parallel = n
	}
	l := labtest.StartWith(t, lab.Options{Hosts: 2, IPv6: true})
	var b strings.Builder
	b.WriteString(planHead(l, "FAILFAST", time.Minute))
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    kind: linux\n    captures: [ { interface: eth0 } ]\n", h.Name, h.Addr)
	}
	for i := range silent {
		a := l.Prefix6.Addr().As16()
		a[13], a[14], a[15] = 1, byte(i>>8), byte(i)
		fmt.Fprintf(&b, "  - name: silent%05d\n    address: \"%s\"\n    kind: linux\n    captures: [ { interface: eth0 } ]\n", i, netip.AddrFrom16(a))
	}
	p := planText(t, b.String())
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: t.TempDir(), AgentBinary: agentBinary(t), Version: "test", Parallel: parallel})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	m, err := o.Start(ctx)
	took := time.Since(began)
	t.Logf("start of 2 hosts and %d silent ones, %d at a time, ended after %v with %d hosts failed: %v", silent, parallel, took, len(m.Errors), err)
	if err == nil || !strings.Contains(err.Error(), "nothing was started") || !strings.Contains(err.Error(), "silent") {
		t.Fatalf("start: %v, want nothing started, a silent host named", err)
	}
	if took > 12*time.Second {
		t.Errorf("the start went on for %v after its first failure (~3 s in), want it to end within a few seconds of it", took)
	}
	if len(m.Errors) > parallel {
		t.Errorf("%d hosts failed: want at most the %d that were in flight (the rest never tried)", len(m.Errors), parallel)
	}
	for _, h := range l.Hosts {
		if _, err := os.Stat(filepath.Join(l.Datastore, ".casecap", "cases", "FAILFAST", h.Name, "agent.pid")); err == nil {
			t.Errorf("%s was armed", h.Name)
		}
	}
}
