//go:build linux

package orchestrator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := agenttest.Races(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	agenttest.Cleanup()
	os.Exit(code)
}

// labPlan writes a plan for every lab host, with the given captures YAML
// (indented for a host's captures list), and loads it.
func labPlan(t *testing.T, l *lab.Lab, caseID string, duration time.Duration, captures string) *plans.Plan {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n",
		caseID, l.Datastore, duration, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - name: %s\n    kind: linux\n    address: %s\n    captures:\n%s", h.Name, h.Addr, captures)
	}
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func agentBinary(t *testing.T) func(string) ([]byte, error) {
	bin := agenttest.Binary(t)
	return func(arch string) ([]byte, error) { return os.ReadFile(bin) }
}

func sum(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestRunEightHosts is issue 5's end-to-end test: 8 lab hosts, 2 captures
// each, under the numbered broadcast stream; every file present, named
// right, readable by tshark, matching the manifest; start and stop skew
// from sequence numbers within 5 ms; one agent upload for the shared
// datastore.
func TestRunEightHosts(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 8)
	const interval = 500 * time.Microsecond
	labtest.Stream(t, l, 5, interval)

	p := labPlan(t, l, "E2E-8", 2*time.Second, `      - interface: eth0
        filter: { udpport: 9999 }
      - interface: eth0
        direction: rx
        snaplen: 96
        label: all
`)
	out := t.TempDir()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test",
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	begin := time.Now()
	m, err := o.Run(context.Background())
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("run of a 2 s window on 8 hosts took %v", took.Round(time.Millisecond))
	if n := o.Uploads(); n != 1 {
		t.Errorf("%d agent uploads for one shared datastore, want 1", n)
	}
	caseDir := filepath.Join(out, "Case_E2E-8")
	var manifest orchestrator.Manifest
	raw, err := os.ReadFile(filepath.Join(caseDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest.Captures) != 16 || len(manifest.Hosts) != 8 || len(m.Errors) != 0 {
		t.Fatalf("manifest: %d captures, %d hosts, errors %v", len(manifest.Captures), len(manifest.Hosts), m.Errors)
	}
	if _, err := os.Stat(filepath.Join(caseDir, "plan.yaml")); err != nil {
		t.Error("the plan as run is not in the case folder")
	}
	var firsts, lasts []time.Time
	for _, c := range manifest.Captures {
		file := filepath.Join(caseDir, c.File)
		wantName := c.Host + ".eth0.RxTx.pcapng"
		if strings.Contains(c.Target, "eth0") && c.Points[0] == "Rx" && len(c.Points) == 1 {
			wantName = c.Host + ".eth0.Rx.all.pcapng"
		}
		if c.File != wantName {
			t.Errorf("file %s, want %s", c.File, wantName)
		}
		info, err := os.Stat(file)
		if err != nil {
			t.Errorf("%s is missing: %v", c.File, err)
			continue
		}
		if info.Mode().Perm()&0o027 != 0 {
			t.Errorf("%s has mode %v, want 0640 or tighter", c.File, info.Mode())
		}
		if !c.Collected || info.Size() != c.Size || sum(t, file) != c.SHA256 || c.State != "stopped" || c.Drops != 0 {
			t.Errorf("%s: manifest %+v does not match the file (size %d)", c.File, c, info.Size())
		}
		if out, err := exec.Command("tshark", "-r", file, "-q").CombinedOutput(); err != nil || strings.Contains(string(out), "appears") {
			t.Errorf("tshark -r %s: %v %s", c.File, err, out)
		}
		s, err := seqcast.ReadFile(file, 5)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(s.Packets+s.Other) != c.Packets {
			t.Errorf("%s: manifest says %d packets, the file holds %d (%d of the stream)", c.File, c.Packets, s.Packets+s.Other, s.Packets)
		}
		if !s.Contiguous() || s.Distinct < 3900 {
			t.Errorf("%s: %+v, want ~4000 contiguous stream packets", c.File, s)
		}
		firsts, lasts = append(firsts, s.FirstSent), append(lasts, s.LastSent)
	}
	startSkew, stopSkew := seqcast.Spread(firsts), seqcast.Spread(lasts)
	t.Logf("start skew %v, stop skew %v across 16 captures on 8 hosts (stream resolution %v)", startSkew, stopSkew, interval)
	if startSkew > 5*time.Millisecond || stopSkew > 5*time.Millisecond {
		t.Errorf("start skew %v, stop skew %v: want <= 5 ms", startSkew, stopSkew)
	}
	for _, h := range manifest.Hosts {
		if h.RTTNs <= 0 || h.RTTNs > 50*time.Millisecond || h.Mode != "agent" || h.OS == "" {
			t.Errorf("host %+v: want a measured rtt, the agent mode and the OS", h)
		}
	}
}

func newOrch(t *testing.T, p *plans.Plan, out string) *orchestrator.Orchestrator {
	return orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test"})
}

// withDisplay is newOrch with a display to learn when captures run.
func withDisplay(t *testing.T, p *plans.Plan, out string, d orchestrator.Display) *orchestrator.Orchestrator {
	return orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", Display: d})
}

// withSignals is withDisplay with a Stop channel: the test's Ctrl-C.
func withSignals(t *testing.T, p *plans.Plan, out string, d orchestrator.Display, stop <-chan struct{}) *orchestrator.Orchestrator {
	return orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", Display: d,
		Signals: orchestrator.Signals{Stop: stop}})
}

// TestStartThenLater: start returns with every capture running; status,
// stop and collect then work from later processes (new orchestrators), stop
// and collect are idempotent, and collect resumes a partial download and
// never overwrites a different file.
func TestStartThenLater(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 6, time.Millisecond)
	p := labPlan(t, l, "LATER", 10*time.Minute, "      - interface: eth0\n        filter: { udpport: 9999 }\n")
	out := t.TempDir()

	m, err := newOrch(t, p, out).Start(context.Background())
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	for _, c := range m.Captures {
		if c.State != "capturing" && c.State != "armed" {
			t.Errorf("after start, %s is %q, want capturing", c.File, c.State)
		}
	}
	// A second start of the same case refuses to clobber the first.
	if _, err := newOrch(t, p, out).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second start: %v, want a refusal", err)
	}
	m, err = newOrch(t, p, out).Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, c := range m.Captures {
		if c.State != "capturing" || c.Packets == 0 {
			t.Errorf("status of %s: %q with %d packets, want capturing with packets", c.File, c.State, c.Packets)
		}
	}
	if m, err = newOrch(t, p, out).Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, c := range m.Captures {
		if c.State != "stopped" || c.StopReason != "stop-request" {
			t.Errorf("after stop, %s is %q (%s)", c.File, c.State, c.StopReason)
		}
	}
	if _, err = newOrch(t, p, out).Stop(context.Background()); err != nil {
		t.Errorf("second stop: %v, want nothing to do", err)
	}

	// A partial download is resumed: leave half of h01's file as .part.
	caseDir := filepath.Join(out, "Case_LATER")
	os.MkdirAll(caseDir, 0o750)
	remote, err := os.ReadFile(filepath.Join(l.Datastore, "Case_LATER", "h01.eth0.RxTx.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng.part"), remote[:len(remote)/2], 0o640)
	// And h02's file exists here already, different: it must stay.
	different := filepath.Join(caseDir, "h02.eth0.RxTx.pcapng")
	os.WriteFile(different, []byte("not a capture"), 0o640)
	m, err = newOrch(t, p, out).Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "different file") {
		t.Errorf("collect over a different file: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(different); string(b) != "not a capture" {
		t.Error("collect overwrote a different file")
	}
	got, err := os.ReadFile(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng"))
	if err != nil || string(got) != string(remote) {
		t.Errorf("resumed download: %d bytes, %v; want the %d bytes of the capture", len(got), err, len(remote))
	}
	// Once the stranger is moved away, collect again: h01 is skipped as
	// already verified, h02 comes in; the manifest says both are collected.
	os.Rename(different, different+".mine")
	if m, err = newOrch(t, p, out).Collect(context.Background()); err != nil {
		t.Fatalf("second collect: %v", err)
	}
	for _, c := range m.Captures {
		if !c.Collected || sum(t, filepath.Join(caseDir, c.File)) != c.SHA256 {
			t.Errorf("%s: collected %v, sha256 %s", c.File, c.Collected, c.SHA256)
		}
	}
	// Collect again, everything there: it succeeds and writes no capture
	// file (each is verified where it is).
	before := map[string]time.Time{}
	for _, c := range m.Captures {
		fi, err := os.Stat(filepath.Join(caseDir, c.File))
		if err != nil {
			t.Fatal(err)
		}
		before[c.File] = fi.ModTime()
	}
	time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtime
	again, err := newOrch(t, p, out).Collect(context.Background())
	if err != nil {
		t.Fatalf("collect of a complete case folder: %v", err)
	}
	for _, c := range again.Captures {
		fi, err := os.Stat(filepath.Join(caseDir, c.File))
		if err != nil || !fi.ModTime().Equal(before[c.File]) || !c.Collected || !c.Verified || c.SHA256 != sum(t, filepath.Join(caseDir, c.File)) {
			t.Errorf("%s after collecting twice: %+v (%v); want it untouched, collected and verified", c.File, c, err)
		}
	}
}

// TestInterrupts: the first Ctrl-C stops every capture together and still
// collects; a second stops waiting, and the captures end on their own.
func TestInterrupts(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 7, time.Millisecond)
	captures := "      - interface: eth0\n        filter: { udpport: 9999 }\n"

	p := labPlan(t, l, "INTR1", 10*time.Minute, captures)
	out := t.TempDir()
	intr := make(chan struct{}, 2)
	d := newCapturingDisplay()
	go func() {
		select { // a run whose captures never start is stopped all the same
		case <-d.ch:
		case <-time.After(30 * time.Second):
		}
		time.Sleep(time.Second)
		intr <- struct{}{}
	}()
	began := time.Now()
	m, err := withSignals(t, p, out, d, intr).Run(context.Background())
	if err != nil {
		t.Fatalf("run interrupted once: %v", err)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("run took %v after one interrupt", d)
	}
	var files []string
	for _, c := range m.Captures {
		if !c.Collected || c.StopReason != "stop-request" {
			t.Errorf("%s: collected %v, stopped by %q; want collected after a stop request", c.File, c.Collected, c.StopReason)
		}
		files = append(files, filepath.Join(out, "Case_INTR1", c.File))
	}
	var lasts []time.Time
	for _, f := range files {
		s, err := seqcast.ReadFile(f, 7)
		if err != nil || !s.Contiguous() {
			t.Fatalf("%s: %+v %v", f, s, err)
		}
		lasts = append(lasts, s.LastSent)
	}
	if d := lasts[0].Sub(lasts[1]).Abs(); d > 5*time.Millisecond {
		t.Errorf("interrupted captures stopped %v apart, want together", d)
	}

	p = labPlan(t, l, "INTR2", 2*time.Second, captures)
	intr = make(chan struct{}, 2)
	d = newCapturingDisplay()
	go func() {
		<-d.ch
		intr <- struct{}{}
		time.Sleep(10 * time.Millisecond)
		intr <- struct{}{}
	}()
	_, err = withSignals(t, p, out, d, intr).Run(context.Background())
	if !errors.Is(err, orchestrator.ErrDetached) {
		t.Fatalf("run interrupted twice: %v, want ErrDetached", err)
	}
	// The captures end by themselves; collect gets them later.
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := newOrch(t, p, out).Collect(context.Background())
		if err == nil {
			for _, c := range m.Captures {
				if !c.Collected {
					t.Errorf("%s not collected", c.File)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collect after detaching: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPasswordFromEnvironment: hosts that take a password get it from the
// environment variable the plan names; the password appears in no file
// casecap writes (here or on the datastore), not in its log or manifest,
// and in no process's arguments or environment, here or on the hosts.
func TestPasswordFromEnvironment(t *testing.T) {
	labtest.Require(t)
	const secret = "s3cret-Pa55w0rd!"
	l := labtest.StartWith(t, lab.Options{Hosts: 2, RootPassword: secret})
	// No key: a plan with only a password variable.
	write := func(env string) *plans.Plan {
		var b strings.Builder
		fmt.Fprintf(&b, "case: PW\ndatastore: %s\nduration: 1s\nssh: { user: root, password_env: %s, known_hosts: %s }\nhosts:\n", l.Datastore, env, l.KnownHosts)
		for _, h := range l.Hosts {
			fmt.Fprintf(&b, "  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0 } ] }\n", h.Name, h.Addr)
		}
		p, err := plans.Parse("pw.yaml", []byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh keys of this machine
	_, err := newOrch(t, write("CASECAP_TEST_UNSET_PASSWORD"), t.TempDir()).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "$CASECAP_TEST_UNSET_PASSWORD") {
		t.Fatalf("unset password variable: %v, want an error naming it", err)
	}
	t.Setenv("CASECAP_TEST_PASSWORD", secret)
	out := t.TempDir()
	// While it runs, no process on this machine or any lab host has the
	// password in its arguments, nor (but this test, which set it) in its
	// environment.
	var logs strings.Builder
	var logMu sync.Mutex
	done := make(chan struct{})
	leaks := make(chan string, 100)
	go func() {
		for {
			select {
			case <-done:
				close(leaks)
				return
			case <-time.After(20 * time.Millisecond):
			}
			files, _ := filepath.Glob("/proc/[0-9]*")
			for _, f := range files {
				if filepath.Base(f) == strconv.Itoa(os.Getpid()) {
					continue
				}
				for _, what := range []string{"cmdline", "environ"} {
					if b, err := os.ReadFile(filepath.Join(f, what)); err == nil && strings.Contains(string(b), secret) {
						select {
						case leaks <- f + "/" + what:
						default:
						}
					}
				}
			}
		}
	}()
	o := orchestrator.New(orchestrator.Options{Plan: write("CASECAP_TEST_PASSWORD"), OutDir: out, AgentBinary: agentBinary(t), Version: "test",
		Log: slog.New(slog.NewJSONHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	m, err := o.Run(context.Background())
	close(done)
	for leak := range leaks {
		t.Errorf("the password is in %s", leak)
	}
	if err != nil {
		t.Fatalf("run with a password: %v", err)
	}
	if b, _ := json.Marshal(m); strings.Contains(string(b), secret) || strings.Contains(logs.String(), secret) {
		t.Error("the password is in the manifest or the log")
	}
	if !strings.Contains(logs.String(), "phase done") {
		t.Error("the debug log is empty: the check above proves nothing")
	}
	for _, c := range m.Captures {
		if !c.Collected {
			t.Errorf("%s not collected", c.File)
		}
	}
	// The secret is nowhere casecap writes.
	for _, root := range []string{out, l.Datastore} {
		filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
				t.Errorf("the password appears in %s", p)
			}
			return nil
		})
	}
}

// lockedWriter serialises writes to a builder shared with a reader.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
