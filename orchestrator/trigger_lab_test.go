//go:build linux

package orchestrator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/segments"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// triggerPlan is labPlan with plan-level lines (ring, until, post) put
// before the hosts.
func triggerPlan(t *testing.T, l *lab.Lab, caseID string, duration time.Duration, top, captures string) *plans.Plan {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s }\n%shosts:\n",
		caseID, l.Datastore, duration, l.ClientKey, l.KnownHosts, top)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    kind: linux\n    address: %s\n    captures:\n%s", h.Name, h.Addr, captures)
	}
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := plans.Load(file)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return p
}

// whenCapturing waits until every host's agent of the case reports its
// captures inside their window (the lab's hosts share the datastore).
func whenCapturing(t *testing.T, l *lab.Lab, caseID string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		n := 0
		for _, h := range l.Hosts {
			raw, err := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", caseID, h.Name, agentproto.StatusFile))
			var st agentproto.Status
			if err == nil && json.Unmarshal(raw, &st) == nil && len(st.Captures) > 0 && st.Captures[0].State == agentproto.CaptureCapturing {
				n++
			}
		}
		if n == len(l.Hosts) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the captures of %s were not all running within %v", caseID, within)
}

// triggerRun runs the plan while fire, at a random moment 2.5 to 4 s into
// the captures, makes a rule fire; it returns the manifest and case folder.
func triggerRun(t *testing.T, l *lab.Lab, p *plans.Plan, fire func()) (*orchestrator.Manifest, string) {
	t.Helper()
	out := t.TempDir()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test",
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	type result struct {
		m   *orchestrator.Manifest
		err error
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() { m, err := o.Run(context.Background()); done <- result{m, err} }()
	whenCapturing(t, l, p.Case, 30*time.Second)
	wait := 2500*time.Millisecond + rand.N(1500*time.Millisecond)
	time.Sleep(wait)
	fired := time.Now()
	fire()
	r := <-done
	if r.err != nil || r.m.Trigger == nil {
		for _, h := range l.Hosts {
			b, _ := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", p.Case, h.Name, agentproto.LogFile))
			t.Logf("%s's agent log:\n%s", h.Name, b)
		}
	}
	if r.err != nil {
		t.Fatalf("run: %v", r.err)
	}
	t.Logf("fired %v into the captures; the run returned %v after that (%v in all)", wait, time.Since(fired).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	return r.m, filepath.Join(out, p.CaseDir())
}

// checkAroundTrigger checks every capture file of the case: the numbered
// stream from the trigger - keep to the trigger + post, nothing missing.
func checkAroundTrigger(t *testing.T, m *orchestrator.Manifest, caseDir string, stream uint32, interval, keep, post, maxLate time.Duration) {
	t.Helper()
	tr := m.Trigger
	if tr == nil {
		t.Fatal("the manifest records no trigger")
	}
	// Every host heard of it within maxLate (a second when casecap runs
	// and passes it on).
	for _, h := range m.Hosts {
		if h.TriggerLateNs > maxLate {
			t.Errorf("%s heard of the trigger %v after it fired, want within %v", h.Name, h.TriggerLateNs, maxLate)
		}
	}

	for _, c := range m.Captures {
		if !c.Collected || !c.Verified || c.StopReason != string(agentproto.StopTrigger) {
			t.Errorf("%s: collected %v, verified %v, stop reason %q", c.File, c.Collected, c.Verified, c.StopReason)
			continue
		}
		s, err := seqcast.ReadFile(filepath.Join(caseDir, c.File), stream)
		if err != nil {
			t.Fatal(err)
		}
		// The lab's clocks are the host's own: the trigger's instant on
		// its host is the instant on every host.
		from, to := tr.AtHost.Add(-keep), tr.AtHost.Add(post)
		slack := 10*interval + 2*time.Millisecond
		if !s.Contiguous() {
			t.Errorf("%s: the stream has gaps: %+v", c.File, s)
		}
		if d := s.FirstSeen.Sub(from); d < 0 || d > slack {
			t.Errorf("%s: first packet %v after trigger - keep, want within %v", c.File, d, slack)
		}
		if d := to.Sub(s.LastSeen); d < 0 || d > slack {
			t.Errorf("%s: last packet %v before trigger + post, want within %v", c.File, d, slack)
		}
		if !c.Start.Equal(from) {
			t.Errorf("%s: the manifest says it starts at %v, want trigger - keep %v", c.File, c.Start, from)
		}
		t.Logf("%s: %d packets, %v after trigger-keep to %v before trigger+post", c.File, s.Packets, s.FirstSeen.Sub(from), to.Sub(s.LastSeen))
	}
}

// TestTriggerPacketRule is issue 15's end-to-end test of a packet rule:
// three Linux hosts keep rings of the numbered stream; at a random moment
// one host receives the trigger packet; every host's file holds the stream
// from trigger - keep to trigger + post, the trigger packet is in that
// host's file and in trigger.pcapng, and the manifest says so.
func TestTriggerPacketRule(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	const interval = time.Millisecond
	labtest.Stream(t, l, 41, interval)
	keep, post := 2*time.Second, time.Second
	p := triggerPlan(t, l, "TRIG-PKT", time.Minute, `ring: { keep: 2s, segment: 1s }
until:
  - packet: { filter: { udpport: 9998 } }
post: 1s
`, `      - interface: eth0
        filter: { proto: udp }
`)
	target := l.Hosts[rand.N(len(l.Hosts))]
	m, caseDir := triggerRun(t, l, p, func() {
		_, err := seqcast.Send(context.Background(), seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(target.Addr, 9998), Stream: 42, Interval: interval, Count: 1})
		if err != nil {
			t.Error(err)
		}
	})
	checkAroundTrigger(t, m, caseDir, 41, interval, keep, post, time.Second)
	tr := m.Trigger
	if tr.Host != target.Name || tr.Source != "rule" || !strings.Contains(tr.Rule, "until[0]") || tr.PacketFile != "trigger.pcapng" {
		t.Errorf("trigger %+v, want a packet rule on %s", tr, target.Name)
	}
	s, err := seqcast.ReadFile(filepath.Join(caseDir, "trigger.pcapng"), 42)
	if err != nil || s.Packets != 1 || !s.FirstSeen.Equal(tr.AtHost) {
		t.Errorf("trigger.pcapng: %+v %v; want the one trigger packet, stamped at the trigger", s, err)
	}
	for _, c := range m.Captures {
		s, err := seqcast.ReadFile(filepath.Join(caseDir, c.File), 42)
		want := 0
		if c.Host == target.Name {
			want = 1
		}
		if err != nil || s.Packets != want {
			t.Errorf("%s holds the trigger packet %d times, want %d (%v)", c.File, s.Packets, want, err)
		}
	}
}

// TestTriggerLogAndCommandRules: the same with a log rule (a matching
// line appended to a file on one host), a command rule (a file that
// appears, checked every 500 ms on another), and casecap trigger from
// another process (a plan with a ring and no rules).
func TestTriggerLogAndCommandRules(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	const interval = time.Millisecond
	labtest.Stream(t, l, 43, interval)
	// On the shared datastore: the lab's hosts have a /tmp of their own.
	dir := filepath.Join(l.Datastore, "rules")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, flag := filepath.Join(dir, "vmkernel.log"), filepath.Join(dir, "flag")
	if err := os.WriteFile(logFile, []byte("2026-12-03T10:00:00Z vmnic2: link down (an old line: it must not fire)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var manual *plans.Plan // the manual case's plan, for its casecap trigger
	for _, tc := range []struct {
		name, rule string
		fire       func()
		host       string
		kind       string
	}{
		{"log", fmt.Sprintf("  - log: { file: %s, match: \"vmnic[0-9]+: .*link down\" }\n    hosts: [%s]\n", logFile, l.Hosts[0].Name), func() {
			f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(f, "2026-12-03T10:00:01Z vmnic3: NIC Link is Up\n2026-12-03T10:00:02Z vmnic2: link down\n")
			f.Close()
		}, l.Hosts[0].Name, "log"},
		{"command", fmt.Sprintf("  - command: \"test -e %s\"\n    every: 500ms\n    hosts: [%s]\n", flag, l.Hosts[1].Name), func() {
			if err := os.WriteFile(flag, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}, l.Hosts[1].Name, "command"},
		{"manual", "", func() {
			// casecap trigger, from another process, while casecap run goes on.
			o := orchestrator.New(orchestrator.Options{Plan: manual, OutDir: t.TempDir(), AgentBinary: agentBinary(t), Version: "test"})
			if _, err := o.Trigger(context.Background(), "the user saw it"); err != nil {
				t.Error(err)
			}
		}, "casecap", "manual"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := "ring: { keep: 2s, segment: 1s }\nuntil:\n" + tc.rule + "post: 1s\n"
			if tc.rule == "" {
				top = "ring: { keep: 2s, segment: 1s }\npost: 1s\n"
			}
			p := triggerPlan(t, l, "TRIG-"+strings.ToUpper(tc.name), 15*time.Second, top,
				"      - interface: eth0\n        filter: { udpport: 9999 }\n")
			manual = p
			m, caseDir := triggerRun(t, l, p, tc.fire)
			checkAroundTrigger(t, m, caseDir, 43, interval, 2*time.Second, time.Second, time.Second)
			if tr := m.Trigger; tr.Host != tc.host || !strings.Contains(tr.Rule+tr.Source, tc.kind) || tr.PacketFile != "" {
				t.Errorf("trigger %+v, want a %s rule on %s", tr, tc.kind, tc.host)
			}
			if tc.name == "log" && !strings.Contains(m.Trigger.Note, "vmnic2: link down") {
				t.Errorf("the trigger's note %q is not the matching line", m.Trigger.Note)
			}
			if tc.name == "manual" && !strings.HasPrefix(m.Trigger.Note, "the user saw it") {
				t.Errorf("the trigger's note %q is not casecap trigger's", m.Trigger.Note)
			}
		})
	}
}

// TestTriggerNeverFires: a rule that never fires ends the captures at the
// plan's duration, each file holding its ring's last keep.
func TestTriggerNeverFires(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	const interval = time.Millisecond
	labtest.Stream(t, l, 44, interval)
	p := triggerPlan(t, l, "TRIG-NEVER", 4*time.Second, "ring: { keep: 2s, segment: 1s }\nuntil:\n  - packet: { filter: { udpport: 9997 } }\npost: 1s\n",
		"      - interface: eth0\n        filter: { udpport: 9999 }\n")
	out := t.TempDir()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test"})
	m, err := o.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.Trigger != nil {
		t.Errorf("a trigger with no rule fired: %+v", m.Trigger)
	}
	for _, c := range m.Captures {
		s, err := seqcast.ReadFile(filepath.Join(out, p.CaseDir(), c.File), 44)
		if err != nil {
			t.Fatal(err)
		}
		// The window's end, as the agent kept it (the manifest's begin is
		// the earliest kept packet's window: here the end - keep).
		end := c.Stop
		if !end.Equal(m.Begin.Add(2 * time.Second)) {
			t.Errorf("%s: stops at %v, begins at %v: want keep (2s) apart", c.File, c.Stop, m.Begin)
		}
		if c.StopReason != string(agentproto.StopWindowEnd) || !c.Verified || !c.Start.Equal(end.Add(-2*time.Second)) || !s.Contiguous() {
			t.Errorf("%s: %+v; stream %+v", c.File, c, s)
		}
		if d := s.FirstSeen.Sub(end.Add(-2 * time.Second)); d < 0 || d > 10*interval {
			t.Errorf("%s: first packet %v after the end - keep", c.File, d)
		}
		if d := end.Sub(s.LastSeen); d < 0 || d > 10*interval {
			t.Errorf("%s: last packet %v before the end", c.File, d)
		}
	}
}

// TestTriggerWithAHostCutOff: a host cut off the network before the
// trigger does not hold up the others: they stop around the trigger and
// are collected; the cut-off host is reported, and stops by itself at
// the end of its window.
func TestTriggerWithAHostCutOff(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	const interval = time.Millisecond
	labtest.Stream(t, l, 45, interval)
	const duration = 12 * time.Second
	p := triggerPlan(t, l, "TRIG-CUT", duration, `ring: { keep: 2s, segment: 1s }
until:
  - packet: { filter: { udpport: 9998 } }
post: 1s
`, "      - interface: eth0\n        filter: { proto: udp }\n")
	for _, h := range p.Hosts {
		h.SSH.Keepalive = time.Second
	}
	cut, target := l.Hosts[2], l.Hosts[0]
	out := t.TempDir()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", StopWait: 2 * time.Second,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	done := make(chan *orchestrator.Manifest, 1)
	go func() { m, _ := o.Run(context.Background()); done <- m }()
	whenCapturing(t, l, p.Case, 30*time.Second)
	began := time.Now()
	time.Sleep(2500 * time.Millisecond)
	if err := cut.LinkDown(); err != nil {
		t.Fatal(err)
	}
	defer cut.LinkUp()
	time.Sleep(500 * time.Millisecond)
	if _, err := seqcast.Send(context.Background(), seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(target.Addr, 9998), Stream: 46, Interval: interval, Count: 1}); err != nil {
		t.Fatal(err)
	}
	m := <-done
	returned := time.Since(began)
	if m == nil || m.Trigger == nil || m.Trigger.Host != target.Name {
		t.Fatalf("manifest %+v: want the trigger on %s", m, target.Name)
	}
	if returned > duration-time.Second {
		t.Errorf("the run returned %v into a %v window: the cut-off host held it up", returned, duration)
	}
	for _, c := range m.Captures {
		switch c.Host {
		case cut.Name:
			if c.Collected {
				t.Errorf("%s collected from a host cut off", c.File)
			}
		default:
			if !c.Collected || !c.Verified || c.StopReason != string(agentproto.StopTrigger) {
				t.Errorf("%s: %+v", c.File, c)
			}
		}
	}
	failed := false
	for _, h := range m.Hosts {
		failed = failed || (h.Name == cut.Name && h.Error != "")
	}
	if !failed {
		t.Errorf("the manifest does not report %s: %+v", cut.Name, m.Hosts)
	}
	// The cut-off host's agent stops by itself at its window's end.
	time.Sleep(time.Until(began.Add(duration + 2*time.Second)))
	raw, err := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", p.Case, cut.Name, agentproto.StatusFile))
	var st agentproto.Status
	if err != nil || json.Unmarshal(raw, &st) != nil || !st.Over() || st.Captures[0].StopReason != agentproto.StopWindowEnd {
		t.Errorf("%s's agent after its window: %s %v", cut.Name, raw, err)
	}
}

// TestTriggerDetached: casecap start returns; casecap status shows the
// armed rings; a host's rule fires with no casecap running, and that host
// stops by itself at trigger + post; casecap collect then passes the
// trigger on to the other host, which stops at the same instant, and
// collects both, the manifest saying how late the other host heard of it.
func TestTriggerDetached(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	const interval = time.Millisecond
	labtest.Stream(t, l, 47, interval)
	keep, post := 2*time.Second, time.Second
	p := triggerPlan(t, l, "TRIG-DETACHED", 30*time.Second, "ring: { keep: 2s, segment: 1s }\nuntil:\n  - packet: { filter: { udpport: 9998 } }\npost: 1s\n",
		"      - interface: eth0\n        filter: { proto: udp }\n")
	out := t.TempDir()
	newO := func() *orchestrator.Orchestrator {
		return orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test",
			Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	}
	if _, err := newO().Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	whenCapturing(t, l, p.Case, 10*time.Second)
	time.Sleep(1500 * time.Millisecond)
	m, err := newO().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Captures {
		if c.Ring == nil || c.Ring.Segments == 0 {
			t.Errorf("status of %s: ring %+v", c.File, c.Ring)
		}
	}
	if m.Trigger != nil {
		t.Errorf("status shows a trigger before any fired: %+v", m.Trigger)
	}
	time.Sleep(time.Second + rand.N(1500*time.Millisecond))
	target, other := l.Hosts[0], l.Hosts[1]
	if _, err := seqcast.Send(context.Background(), seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(target.Addr, 9998), Stream: 48, Interval: interval, Count: 1}); err != nil {
		t.Fatal(err)
	}
	// The host that fired stops by itself at trigger + post.
	statusOf := func(h *lab.Host) *agentproto.Status {
		raw, _ := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", p.Case, h.Name, agentproto.StatusFile))
		st := new(agentproto.Status)
		json.Unmarshal(raw, st)
		return st
	}
	deadline := time.Now().Add(10 * time.Second)
	for !statusOf(target).Over() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := statusOf(target); !st.Over() || st.Trigger == nil || st.Captures[0].StopReason != agentproto.StopTrigger {
		t.Fatalf("%s did not stop by itself at its trigger + post: %+v", target.Name, st)
	}
	if st := statusOf(other); st.Over() || st.Trigger != nil {
		t.Fatalf("%s heard of the trigger with no casecap running: %+v", other.Name, st)
	}
	m, err = newO().Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var late time.Duration
	for _, h := range m.Hosts {
		if h.Name == other.Name {
			late = h.TriggerLateNs
		}
	}
	if late <= 0 {
		t.Errorf("the manifest does not say how late %s heard of the trigger", other.Name)
	}
	t.Logf("%s heard of the trigger %v after it fired", other.Name, late)
	if late < segments.DefaultGrace-500*time.Millisecond {
		// In time for its ring to hold the trigger's start: exact.
		checkAroundTrigger(t, m, filepath.Join(out, p.CaseDir()), 47, interval, keep, post, segments.DefaultGrace)
		return
	}
	// Too late (a slow machine): its file ends at the same instant, and the
	// manifest says where it starts.
	for _, c := range m.Captures {
		if c.Host == other.Name && (c.StopReason != string(agentproto.StopTrigger) || !c.Stop.Equal(m.Trigger.AtHost.Add(post)) || c.Note == "") {
			t.Errorf("%s heard %v late: %+v", other.Name, late, c)
		}
	}
}

// TestTriggerESXi: the same on the lab's ESXi hosts (agent mode): the
// agent reads pktcap-uw's stream (-o -), keeps the ring itself and checks
// the packet rule on each packet; every file holds each VM's numbered
// stream from trigger - keep to trigger + post, and no pktcap-uw session
// of the case is left running.
func TestTriggerESXi(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 2, ESXi: 2})
	const interval = 2 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gw := l.VMNet.Addr().Next()
	for i, h := range l.Hosts {
		go seqcast.Send(ctx, seqcast.SendOptions{From: gw, To: netip.AddrPortFrom(h.VMs[0].Addr, 9999), Stream: uint32(60 + i), Interval: interval})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "case: TRIG-ESX\ndatastore: %s\nduration: 1m\nssh: { user: root, identity_file: %s, known_hosts: %s }\n", lab.ESXiDatastore, l.ClientKey, l.KnownHosts)
	b.WriteString("ring: { keep: 2s, segment: 1s }\nuntil:\n  - packet: { filter: { udpport: 9998 } }\npost: 1s\nhosts:\n")
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    kind: esxi\n    address: %s\n    captures:\n      - vm: %s\n        vnic: eth0\n        points: [VnicTx, VnicRx]\n        filter: { proto: udp }\n", h.Name, h.Addr, h.VMs[0].Name)
	}
	file := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(file, []byte(b.String()), 0o600)
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test",
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	done := make(chan *orchestrator.Manifest, 1)
	go func() {
		m, err := o.Run(context.Background())
		if err != nil {
			t.Errorf("run: %v", err)
		}
		done <- m
	}()
	// The agents' state is on the ESXi datastore, which the lab's hosts
	// share at lab.ESXiDatastore as the test sees it too.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, h := range l.Hosts {
			raw, err := os.ReadFile(filepath.Join(lab.ESXiDatastore, ".casecap", "cases", p.Case, h.Name, agentproto.StatusFile))
			var st agentproto.Status
			if err == nil && json.Unmarshal(raw, &st) == nil && len(st.Captures) > 0 && st.Captures[0].State == agentproto.CaptureCapturing {
				n++
			}
		}
		if n == len(l.Hosts) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2500*time.Millisecond + rand.N(1500*time.Millisecond))
	target := l.Hosts[1]
	if _, err := seqcast.Send(ctx, seqcast.SendOptions{From: gw, To: netip.AddrPortFrom(target.VMs[0].Addr, 9998), Stream: 69, Interval: interval, Count: 1}); err != nil {
		t.Fatal(err)
	}
	m := <-done
	if m == nil || m.Trigger == nil || m.Trigger.Host != target.Name || m.Trigger.PacketFile == "" {
		t.Fatalf("manifest %+v: want the packet rule's trigger on %s", m, target.Name)
	}
	if left := streamingPktcaps(); len(left) > 0 {
		t.Errorf("pktcap-uw streams still running after the run: %v", left)
	}
	keep, post := 2*time.Second, time.Second
	tr := m.Trigger
	for i, c := range m.Captures {
		if !c.Collected || !c.Verified || c.StopReason != string(agentproto.StopTrigger) {
			t.Errorf("%s: %+v", c.File, c)
			continue
		}
		s, err := seqcast.ReadFile(filepath.Join(out, p.CaseDir(), c.File), uint32(60+i))
		if err != nil {
			t.Fatal(err)
		}
		from, to := tr.AtHost.Add(-keep), tr.AtHost.Add(post)
		slack := 5*interval + 2*time.Millisecond
		if !s.Contiguous() || s.FirstSeen.Before(from) || s.FirstSeen.Sub(from) > slack || s.LastSeen.After(to) || to.Sub(s.LastSeen) > slack {
			t.Errorf("%s: %+v; want the stream from %v to %v", c.File, s, from, to)
		}
		t.Logf("%s: %d packets, %v after trigger-keep to %v before trigger+post", c.File, s.Packets, s.FirstSeen.Sub(from), to.Sub(s.LastSeen))
	}
}

// streamingPktcaps lists the pktcap-uw processes writing to their
// standard output (-o -) still running on this machine.
func streamingPktcaps() []string {
	var left []string
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) == "pktcap-uw" && strings.Contains(string(raw), "\x00-o\x00-\x00") {
			left = append(left, filepath.Base(filepath.Dir(f))+": "+strings.Join(args, " "))
		}
	}
	return left
}

// TestTriggerDropsRule: a drops rule watched on one host fires when a
// capture's kernel drop counter rises there: a burst far beyond what a
// 1 MiB buffer holds, with the agent stopped (SIGSTOP, by its PID) so
// that the kernel must drop. (A 1 MiB buffer is one block, and drops
// under this lab's load even without the burst: the rule may fire on
// those first, which is as right.)
func TestTriggerDropsRule(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	const interval = time.Millisecond
	labtest.Stream(t, l, 49, interval)
	target := l.Hosts[1]
	p := triggerPlan(t, l, "TRIG-DROPS", time.Minute, "ring: { keep: 2s, segment: 1s }\nuntil:\n  - drops: { min: 1 }\n    hosts: ["+target.Name+"]\npost: 1s\n",
		"      - interface: eth0\n        filter: { proto: udp }\n        buffer: 1MiB\n")
	m, _ := triggerRun(t, l, p, func() {
		raw, err := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", p.Case, target.Name, agentproto.PIDFile))
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		fmt.Sscan(string(raw), &pid)
		// The agent stopped, the kernel fills its 1 MiB ring and drops.
		syscall.Kill(pid, syscall.SIGSTOP)
		seqcast.Flood(context.Background(), seqcast.FloodOptions{From: l.Gateway, To: netip.AddrPortFrom(target.Addr, 9999), Stream: 50, Rate: 100_000, Count: 20_000})
		syscall.Kill(pid, syscall.SIGCONT)
	})
	if tr := m.Trigger; tr == nil || tr.Host != target.Name || !strings.Contains(tr.Rule, "drops") || !strings.Contains(tr.Note, "dropped") {
		t.Fatalf("trigger %+v, want the drops rule on %s", m.Trigger, target.Name)
	}
	for _, c := range m.Captures {
		if c.StopReason != string(agentproto.StopTrigger) || (c.Host == target.Name && c.Drops == 0) {
			t.Errorf("%s: stop reason %s, %d drops", c.File, c.StopReason, c.Drops)
		}
	}
}
