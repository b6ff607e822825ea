package orchestrator_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agent/dist"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// begun records the fake hosts whose captures were begun (by a line on the
// held session, or by a begin command).
var begun sync.Map

func wasBegun(name string) bool {
	_, ok := begun.Load(name)
	return ok
}

// fakeHostClock is how far the fake hosts' clocks are ahead of ours.
var fakeHostClock time.Duration

// fakeLinux answers what the orchestrator asks a Linux host running the
// agent; failPhase makes that phase fail on this host.
func fakeLinux(name string, fsys *hosts.FakeFS, failPhase string) *hosts.Fake {
	f := hosts.NewFake(name, nil)
	f.FS = fsys
	fail := func(argv []string) ([]byte, error) {
		return nil, &hosts.RunError{Host: name, Argv: argv, Status: 1, Stderr: failPhase + " broken on purpose"}
	}
	var held []byte   // what the held start session was sent so far
	var served []byte // what the serve session was sent so far
	f.Handler = func(argv []string, stdin []byte) ([]byte, error) {
		switch {
		case argv[0] == "sh" && len(argv) > 3 && argv[3] == "probe":
			if failPhase == "preflight" {
				return fail(argv)
			}
			return []byte("Linux 6.1.0 x86_64\nyes\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 100 1 99999999 1% /ds\ncasecap-df-end\n"), nil
		case argv[0] == "date" && len(argv) == 2 && argv[1] == "+%s":
			return []byte(fmt.Sprint(time.Now().Add(fakeHostClock).Unix()) + "\n"), nil
		case argv[0] == "sha256sum":
			b, ok := fsys.Get(argv[1])
			if !ok {
				return fail(argv)
			}
			s := sha256.Sum256(b)
			return []byte(hex.EncodeToString(s[:]) + "  " + argv[1] + "\n"), nil
		case argv[0] == "rm":
			return nil, nil
		case slices.Contains(argv, "serve"):
			// The run's one agent session: facts, clock probes, the job,
			// "ping", "begin TIME", "stop [TIME]".
			if stdin == nil {
				return []byte(`{"uid":0,"interfaces":[{"name":"eth0","index":2,"up":true}]}` + "\n"), nil
			}
			served = append(served, stdin...)
			var out []byte
			for {
				i := bytes.IndexByte(served, '\n')
				if i < 0 {
					return out, nil
				}
				line := string(served[:i])
				served = served[i+1:]
				switch {
				case line == "t":
					out = fmt.Appendf(out, "%d\n", time.Now().UnixNano())
				case strings.HasPrefix(line, "job "):
					if failPhase == "arm" {
						return fail(argv)
					}
					out = append(out, `{"pid": 7, "state": "armed", "arming_ns": 1000}`+"\n"...)
				case line == "ping":
					if failPhase == "held" { // armed, then the session dies
						return fail(argv)
					}
					out = append(out, "pong\n"...)
				case strings.HasPrefix(line, "begin "):
					begun.Store(name, true)
					out = append(out, `{"begun": true}`+"\n"...)
				case strings.HasPrefix(line, "stop"):
					out = append(out, `{"running": true}`+"\n"...)
				}
			}
		case slices.Contains(argv, "check"):
			if stdin == nil {
				facts := `{"uid":0,"interfaces":[{"name":"eth0","index":2,"up":true}]}`
				return []byte(facts + "\n"), nil
			}
			var out []byte
			for range strings.Count(string(stdin), "\n") {
				out = fmt.Appendf(out, "%d\n", time.Now().UnixNano())
			}
			return out, nil
		case slices.Contains(argv, "start"):
			// start --hold -: the job line, then "ping", then "begin TIME".
			if failPhase == "arm" {
				return fail(argv)
			}
			held = append(held, stdin...)
			i := bytes.IndexByte(held, '\n')
			if i < 0 {
				return nil, nil
			}
			line := string(held[:i])
			held = held[i+1:]
			switch {
			case line == "ping":
				if failPhase == "held" { // armed, then the session dies
					return fail(argv)
				}
				return []byte("pong\n"), nil
			case strings.HasPrefix(line, "begin "):
				begun.Store(name, true)
				return []byte(`{"begun": true}` + "\n"), nil
			}
			return []byte(`{"pid": 7, "state": "armed", "arming_ns": 1000}` + "\n"), nil
		case slices.Contains(argv, "begin"):
			begun.Store(name, true)
			return []byte(`{}`), nil
		case slices.Contains(argv, "stop"):
			return []byte(`{}`), nil
		}
		return fail(argv)
	}
	return f
}

func fakePlan(t *testing.T, n int) *plans.Plan {
	var b strings.Builder
	b.WriteString("case: FAKE\ndatastore: /ds\nduration: 1s\nhosts:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - { name: h%d, kind: linux, address: 192.0.2.%d, captures: [ { interface: eth0 } ] }\n", i, i)
	}
	p, err := plans.Parse("fake.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// runFakes starts a plan of n fake hosts; fails maps host names to the
// phase that fails there; shared puts all on one datastore.
func runFakes(t *testing.T, n int, fails map[string]string, shared, partial bool) (map[string]*hosts.Fake, *orchestrator.Orchestrator, *orchestrator.Manifest, error) {
	t.Helper()
	begun.Clear()
	common := hosts.NewFakeFS()
	fakes := map[string]*hosts.Fake{}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("h%d", i)
		fsys := common
		if !shared {
			fsys = hosts.NewFakeFS()
		}
		fakes[name] = fakeLinux(name, fsys, fails[name])
	}
	o := orchestrator.New(orchestrator.Options{
		Plan: fakePlan(t, n), OutDir: t.TempDir(), AllowPartial: partial, Version: "test",
		AgentBinary: func(string) ([]byte, error) { return []byte("#!agent\n"), nil },
		Dial: func(_ context.Context, h *plans.Host) (hosts.Conn, error) {
			return fakes[h.Name], nil
		},
	})
	m, err := o.Start(context.Background())
	return fakes, o, m, err
}

func ran(f *hosts.Fake, word string) bool {
	for _, c := range f.Commands() {
		if strings.Contains(c, " "+word) {
			return true
		}
	}
	return false
}

func TestOneFailureStartsNothing(t *testing.T) {
	fakes, _, m, err := runFakes(t, 3, map[string]string{"h2": "preflight"}, true, false)
	var he *orchestrator.HostError
	if !errors.As(err, &he) || he.Host != "h2" || he.Phase != "preflight" || !strings.Contains(err.Error(), "nothing was started") {
		t.Fatalf("got %v, want nothing started because h2 failed preflight", err)
	}
	for name, f := range fakes {
		if ran(f, "start") || wasBegun(name) {
			t.Errorf("%s was armed or begun although the run stopped before the start", name)
		}
	}
	if len(m.Errors) != 1 || !strings.Contains(m.Errors[0], "h2: preflight") {
		t.Errorf("manifest errors %v", m.Errors)
	}
}

func TestAllowPartialGoesOn(t *testing.T) {
	fakes, _, m, err := runFakes(t, 3, map[string]string{"h2": "preflight"}, true, true)
	if err == nil {
		t.Fatal("a run with a failed host must still say so")
	}
	for _, name := range []string{"h1", "h3"} {
		if !wasBegun(name) {
			t.Errorf("%s was not begun with --allow-partial", name)
		}
	}
	if ran(fakes["h2"], "start") {
		t.Error("h2 failed preflight, yet was armed")
	}
	for _, h := range m.Hosts {
		if (h.Name == "h2") != (h.Phase == "preflight") {
			t.Errorf("manifest host %+v", h)
		}
	}
}

func TestFailedArmIsCleanedUp(t *testing.T) {
	fakes, _, _, err := runFakes(t, 3, map[string]string{"h3": "arm"}, true, false)
	if err == nil || !strings.Contains(err.Error(), "nothing was started") {
		t.Fatalf("got %v, want nothing started", err)
	}
	for _, name := range []string{"h1", "h2"} {
		if ran(fakes[name], "start") && !ran(fakes[name], "stop") {
			t.Errorf("%s was armed and not stopped after h3 failed to arm", name)
		}
		if wasBegun(name) {
			t.Errorf("%s was begun although h3 failed to arm", name)
		}
	}
}

func TestPartialRunStopsAHostThatFailedOnceArmed(t *testing.T) {
	fakes, _, m, err := runFakes(t, 3, map[string]string{"h3": "held"}, true, true)
	var he *orchestrator.HostError
	if !errors.As(err, &he) || he.Host != "h3" || he.Phase != "arm" {
		t.Fatalf("got %v, want h3 failed to arm", err)
	}
	if !ran(fakes["h3"], "stop") || wasBegun("h3") {
		t.Errorf("h3 armed, then lost its session: stopped %v (want true), begun %v (want false)", ran(fakes["h3"], "stop"), wasBegun("h3"))
	}
	for _, name := range []string{"h1", "h2"} {
		if !wasBegun(name) || ran(fakes[name], "stop") {
			t.Errorf("%s: begun %v (want true), stopped %v (want false)", name, wasBegun(name), ran(fakes[name], "stop"))
		}
	}
	if len(m.Errors) != 1 {
		t.Errorf("manifest errors %v", m.Errors)
	}
}

func TestDeployOncePerSharedDatastore(t *testing.T) {
	for _, shared := range []bool{true, false} {
		fakes, o, _, err := runFakes(t, 3, nil, shared, false)
		if err != nil {
			t.Fatal(err)
		}
		wantUploads, hashedBy := 1, 0
		if !shared {
			wantUploads = 3
		}
		for _, f := range fakes {
			for _, c := range f.Commands() {
				if strings.HasPrefix(c, "sha256sum ") || strings.Contains(c, "' verify ") {
					hashedBy++
					break
				}
			}
		}
		if o.Uploads() != wantUploads {
			t.Errorf("shared=%v: %d uploads, want %d", shared, o.Uploads(), wantUploads)
		}
		if shared && hashedBy != 1 {
			t.Errorf("shared datastore: the agent was hashed on %d hosts, want 1", hashedBy)
		}
		if !shared && hashedBy != 3 {
			t.Errorf("separate datastores: the agent was hashed on %d hosts, want each", hashedBy)
		}
	}
}

// TestTargetsMustFitTheHost: a plan that leaves a host's kind to auto
// learns at preflight what it is; a capture that does not exist there
// (a switchport on Linux, an interface on ESXi) fails the host with the
// file, the plan's line and the way out, before anything is uploaded.
func TestTargetsMustFitTheHost(t *testing.T) {
	for _, c := range []struct {
		probe, capture, want string
	}{
		{"Linux 6.1.0 x86_64\nyes\n/dev/x 100 1 99999999 1% /ds\ncasecap-df-end\n", "{ switchport: 33554437 }", "a switchport capture is for ESXi hosts, and this one runs Linux 6.1.0"},
		{"VMkernel 8.0.2 x86_64\nyes\n/dev/x 100 1 99999999 1% /ds\ncasecap-df-end\nVMware ESXi 8.0.2 build-22380479\n", "{ interface: eth0 }", "an interface capture is for Linux hosts, and this one runs VMware ESXi 8.0.2"},
	} {
		p, err := plans.Parse("auto.yaml", []byte("case: AUTO\ndatastore: /vmfs/volumes/ds\nduration: 1s\nhosts:\n  - { name: h1, address: 192.0.2.1, captures: [ "+c.capture+" ] }\n"))
		if err != nil {
			t.Fatal(err)
		}
		fake := hosts.NewFake("h1", func(argv []string, _ []byte) ([]byte, error) {
			if argv[0] == "sh" && len(argv) > 3 && argv[3] == "probe" {
				return []byte(c.probe), nil
			}
			return nil, fmt.Errorf("unexpected %v", argv)
		})
		o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: t.TempDir(), Version: "test",
			Dial: func(context.Context, *plans.Host) (hosts.Conn, error) { return fake, nil }})
		_, err = o.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "auto.yaml:5 hosts[0].captures[0]") {
			t.Errorf("%s: %v, want %q with the plan's line", c.capture, err, c.want)
		}
		if cmds := fake.Commands(); len(cmds) != 1 {
			t.Errorf("%s: commands after preflight: %v", c.capture, cmds)
		}
	}
}

// TestNoAgentEmbeddedSaysSo: a casecap that carries no agents (go install)
// fails every remote host at deploy with one line that says how to build
// one that does, each host named once, and starts nothing.
func TestNoAgentEmbeddedSaysSo(t *testing.T) {
	begun.Clear()
	fakes := map[string]*hosts.Fake{}
	for _, name := range []string{"h1", "h2"} {
		fakes[name] = fakeLinux(name, hosts.NewFakeFS(), "")
	}
	o := orchestrator.New(orchestrator.Options{
		Plan: fakePlan(t, 2), OutDir: t.TempDir(), Version: "test",
		AgentBinary: func(string) ([]byte, error) { return dist.Agent("no-such-arch") },
		Dial: func(_ context.Context, h *plans.Host) (hosts.Conn, error) {
			return fakes[h.Name], nil
		},
	})
	m, err := o.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "go generate ./internal/agent/dist") {
		t.Fatalf("got %v, want a failure that says how to build casecap with its agents", err)
	}
	for _, h := range m.Hosts {
		if h.Phase != "deploy" || !errors.Is(err, dist.ErrNotEmbedded) {
			t.Errorf("%s: failed in %q: %s", h.Name, h.Phase, h.Error)
		}
	}
	for _, line := range m.Errors {
		if strings.Count(line, "h1")+strings.Count(line, "h2") != 1 {
			t.Errorf("the host is not named exactly once: %q", line)
		}
	}
	for name, f := range fakes {
		if ran(f, "start") || wasBegun(name) {
			t.Errorf("%s was armed by a casecap with no agent to deploy", name)
		}
	}
}
