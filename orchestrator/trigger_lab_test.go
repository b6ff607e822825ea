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
	"testing"
	"time"

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
func checkAroundTrigger(t *testing.T, m *orchestrator.Manifest, caseDir string, stream uint32, interval, keep, post time.Duration) {
	t.Helper()
	tr := m.Trigger
	if tr == nil {
		t.Fatal("the manifest records no trigger")
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
	checkAroundTrigger(t, m, caseDir, 41, interval, keep, post)
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
// line appended to a file on one host) and a command rule (a file that
// appears, checked every 500 ms on another).
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := triggerPlan(t, l, "TRIG-"+strings.ToUpper(tc.name), 15*time.Second, "ring: { keep: 2s, segment: 1s }\nuntil:\n"+tc.rule+"post: 1s\n",
				"      - interface: eth0\n        filter: { udpport: 9999 }\n")
			m, caseDir := triggerRun(t, l, p, tc.fire)
			checkAroundTrigger(t, m, caseDir, 43, interval, 2*time.Second, time.Second)
			if tr := m.Trigger; tr.Host != tc.host || !strings.Contains(tr.Rule, tc.kind) || tr.PacketFile != "" {
				t.Errorf("trigger %+v, want a %s rule on %s", tr, tc.kind, tc.host)
			}
			if tc.name == "log" && !strings.Contains(m.Trigger.Note, "vmnic2: link down") {
				t.Errorf("the trigger's note %q is not the matching line", m.Trigger.Note)
			}
		})
	}
}
