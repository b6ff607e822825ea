//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// casecapBinary builds casecap once for the package's tests, around the
// agent built from this source (agenttest.BuildCasecap).
func casecapBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "casecap-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "casecap")
		agenttest.BuildCasecap(t, builtBin)
	})
	if _, err := os.Stat(builtBin); buildErr == nil && err != nil {
		buildErr = fmt.Errorf("casecap was not built: %w", err)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	agenttest.Cleanup()
	os.Exit(code)
}

// labPlanFile writes a plan capturing the numbered stream on eth0 of every
// lab host.
func labPlanFile(t *testing.T, l *lab.Lab, caseID string, d time.Duration) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n",
		caseID, l.Datastore, d, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0, filter: { udpport: 9999 } } ] }\n", h.Name, h.Addr)
	}
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// casecap runs the built casecap with args in dir and returns its stdout,
// stderr and exit code.
func casecap(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(casecapBinary(t), args...)
	cmd.Dir = dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// agentStatus reads a host's status.json from the lab's datastore.
func agentStatus(l *lab.Lab, caseID string, h *lab.Host) (*agentproto.Status, error) {
	raw, err := os.ReadFile(filepath.Join(l.Datastore, ".casecap", "cases", caseID, h.Name, agentproto.StatusFile))
	if err != nil {
		return nil, err
	}
	var st agentproto.Status
	return &st, json.Unmarshal(raw, &st)
}

// running says whether a PID of a host's PID namespace is alive there.
func running(h *lab.Host, pid int) bool {
	return h.Command(context.Background(), "kill", "-0", strconv.Itoa(pid)).Run() == nil
}

// checkCollected asserts that every capture of a manifest is in the case
// folder, matches its sha256 and is read by tshark with the packet count
// the manifest says.
func checkCollected(t *testing.T, caseDir string, m *orchestrator.Manifest) {
	t.Helper()
	for _, c := range m.Captures {
		file := filepath.Join(caseDir, c.File)
		if !c.Collected {
			t.Errorf("%s not collected: %s", c.File, c.Error)
			continue
		}
		if sum, _, err := fileSHA256(file); err != nil || sum != c.SHA256 {
			t.Errorf("%s: sha256 %s %v, manifest %s", c.File, sum, err, c.SHA256)
		}
		out, err := exec.Command("tshark", "-n", "-r", file, "-T", "fields", "-e", "frame.number").Output()
		if err != nil {
			t.Errorf("tshark -r %s: %v", file, err)
			continue
		}
		if n := len(strings.Fields(string(out))); uint64(n) != c.Packets {
			t.Errorf("%s: tshark reads %d packets, manifest %d", c.File, n, c.Packets)
		}
	}
}

// TestKilledMidCapture: casecap run is SIGKILLed while its captures run.
// Each agent stops its capture by itself at the plan's end (its PID gone
// from its host); a later `casecap collect` recovers every file whole, up
// to the window's end.
func TestKilledMidCapture(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 21, time.Millisecond)
	plan := labPlanFile(t, l, "KILLED", 4*time.Second)
	work := t.TempDir()

	cmd := exec.Command(casecapBinary(t), "run", plan)
	cmd.Dir = work
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Once every host captures, casecap dies without a word.
	pids := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for len(pids) < len(l.Hosts) {
		for _, h := range l.Hosts {
			if st, err := agentStatus(l, "KILLED", h); err == nil && st.State == agentproto.StateRunning && len(st.Captures) == 1 && st.Captures[0].State == "capturing" {
				pids[h.Name] = st.PID
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the captures did not start: %v", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killedAt := time.Now()

	// The agents end by themselves at the window's end.
	for _, h := range l.Hosts {
		for !func() bool {
			st, err := agentStatus(l, "KILLED", h)
			return err == nil && (st.State == agentproto.StateDone || st.State == agentproto.StateFailed)
		}() {
			if time.Since(killedAt) > 15*time.Second {
				t.Fatalf("%s: the capture did not end by itself", h.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
		st, _ := agentStatus(l, "KILLED", h)
		if st.State != agentproto.StateDone || st.Captures[0].StopReason != "window-end" {
			t.Errorf("%s: agent %s, capture stopped by %q", h.Name, st.State, st.Captures[0].StopReason)
		}
		// Its PID, on its host, is gone (give it a moment to exit).
		for i := 0; running(h, pids[h.Name]) && i < 40; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if running(h, pids[h.Name]) {
			t.Errorf("%s: the agent (pid %d) still runs after its capture ended", h.Name, pids[h.Name])
		}
	}

	out, stderr, code := casecap(t, work, "collect", "--json", plan)
	if code != 0 {
		t.Fatalf("collect after the kill: exit %d\n%s", code, stderr)
	}
	var m orchestrator.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Captures) != 3 {
		t.Fatalf("%d captures collected, want 3", len(m.Captures))
	}
	caseDir := filepath.Join(work, "Case_KILLED")
	checkCollected(t, caseDir, &m)
	for _, c := range m.Captures {
		s, err := seqcast.ReadFile(filepath.Join(caseDir, c.File), 21)
		if err != nil || !s.Contiguous() || s.Distinct < 3000 {
			t.Errorf("%s: %+v %v; want the whole 4 s window (about 4000 packets)", c.File, s, err)
		}
	}
}

// TestHostDownAtStart: one host of three is cut off before the run. By
// default nothing starts anywhere and nothing is left running; with
// --allow-partial the two others capture and are collected, and the
// summary names the missing host.
func TestHostDownAtStart(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	down := l.Hosts[1]
	if err := down.LinkDown(); err != nil {
		t.Fatal(err)
	}
	plan := labPlanFile(t, l, "DOWN", 2*time.Second)
	// A short connect timeout: the host will not answer.
	raw, _ := os.ReadFile(plan)
	os.WriteFile(plan, []byte(strings.Replace(string(raw), "ssh: { user: root,", "ssh: { user: root, connect_timeout: 2s,", 1)), 0o600)
	work := t.TempDir()

	out, stderr, code := casecap(t, work, "run", plan)
	if code != 1 || !strings.Contains(out+stderr, down.Name) {
		t.Fatalf("run with %s down: exit %d, want 1 naming it\n%s\n%s", down.Name, code, out, stderr)
	}
	if entries, _ := os.ReadDir(filepath.Join(l.Datastore, "Case_DOWN")); len(entries) > 0 {
		t.Errorf("capture files were made although nothing was to start: %v", entries)
	}
	for _, h := range l.Hosts {
		if h == down {
			continue
		}
		procs, err := h.Processes()
		if err != nil {
			t.Fatal(err)
		}
		for _, argv := range procs {
			if strings.Contains(strings.Join(argv, " "), "casecap-agent") {
				t.Errorf("%s: an agent runs although nothing started: %q", h.Name, argv)
			}
		}
	}

	out, stderr, code = casecap(t, work, "run", "--allow-partial", plan)
	if code != 1 {
		t.Fatalf("partial run: exit %d, want 1 (one host missing)\n%s", code, stderr)
	}
	// The summary names the missing host, and why.
	if !strings.Contains(out+stderr, down.Name+": connect:") {
		t.Errorf("the partial run's summary does not name %s's failure:\n%s\n%s", down.Name, out, stderr)
	}
	var m orchestrator.Manifest
	raw, err := os.ReadFile(filepath.Join(work, "Case_DOWN", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, h := range m.Hosts {
		if (h.Name == down.Name) != (h.Phase == "connect") {
			t.Errorf("host %s: failed phase %q", h.Name, h.Phase)
		}
	}
	var got []orchestrator.ManifestCapture
	for _, c := range m.Captures {
		if c.Host != down.Name {
			got = append(got, c)
		}
	}
	if len(got) != 2 {
		t.Fatalf("captures of the reachable hosts: %+v", got)
	}
	checkCollected(t, filepath.Join(work, "Case_DOWN"), &orchestrator.Manifest{Captures: got})
}

func fileSHA256(path string) (string, int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", 0, err
	}
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:]), int64(len(raw)), nil
}

// waitCapturing waits until every lab host's agent of a case captures.
func waitCapturing(t *testing.T, l *lab.Lab, caseID string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		for _, h := range l.Hosts {
			if st, err := agentStatus(l, caseID, h); err == nil && len(st.Captures) > 0 && st.Captures[0].State == "capturing" {
				n++
			}
		}
		if n == len(l.Hosts) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("case %s: %d of %d hosts capture", caseID, n, len(l.Hosts))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCtrlC: the first Ctrl-C stops every capture together and still
// collects (exit 0); a second one stops waiting (the captures stop at the
// first press's instant all the same), says how to collect, and that
// collect later gets every file.
func TestCtrlC(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 24, time.Millisecond)
	work := t.TempDir()
	for _, presses := range []int{1, 2} {
		caseID := fmt.Sprintf("CTRLC%d", presses)
		plan := labPlanFile(t, l, caseID, 3*time.Second)
		if presses == 1 {
			plan = labPlanFile(t, l, caseID, 10*time.Minute)
		}
		cmd := exec.Command(casecapBinary(t), "run", "--json", plan)
		cmd.Dir = work
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitCapturing(t, l, caseID)
		for i := range presses {
			if i > 0 {
				time.Sleep(20 * time.Millisecond)
			}
			cmd.Process.Signal(os.Interrupt)
		}
		err := cmd.Wait()
		if presses == 1 {
			if err != nil {
				t.Fatalf("one Ctrl-C: %v\n%s", err, stderr.String())
			}
			collectedAs(t, stdout.String(), filepath.Join(work, "Case_"+caseID), 2, "stop-request")
			continue
		}
		want := "collect them later with: casecap collect " + plan
		if err == nil || !strings.Contains(stderr.String(), want) {
			t.Fatalf("two Ctrl-C: %v, stderr lacks %q:\n%s", err, want, stderr.String())
		}
		time.Sleep(4 * time.Second) // the captures end on their own
		out, errOut, code := casecap(t, work, "collect", "--json", plan)
		if code != 0 {
			t.Fatalf("collect after two Ctrl-C: exit %d\n%s", code, errOut)
		}
		// The first press had asked every capture to stop together; they
		// stopped then, without casecap waiting for them.
		collectedAs(t, out, filepath.Join(work, "Case_"+caseID), 2, "stop-request")
	}
}

// TestHostKeysRefused: with an empty known_hosts, casecap refuses every
// host, showing its key's fingerprint and the flag that would record it;
// with a host's key changed, it refuses even with that flag. Either way
// it goes no further: nothing reaches the datastore, known_hosts is
// unchanged, no capture runs.
func TestHostKeysRefused(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	work := t.TempDir()
	plan := labPlanFile(t, l, "KEYS", time.Second)
	raw, _ := os.ReadFile(plan)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(empty, nil, 0o600)
	os.WriteFile(plan, []byte(strings.Replace(string(raw), l.KnownHosts, empty, 1)), 0o600)

	untouched := func(what string) {
		t.Helper()
		if entries, _ := os.ReadDir(l.Datastore); len(entries) > 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s: the datastore holds %v", what, names)
		}
	}
	out, stderr, code := casecap(t, work, "run", plan)
	if code != 1 || !strings.Contains(out+stderr, "SHA256:") || !strings.Contains(out+stderr, "--accept-new-host-keys") {
		t.Errorf("unknown host keys: exit %d, want 1 with the fingerprint and the flag:\n%s\n%s", code, out, stderr)
	}
	if b, _ := os.ReadFile(empty); len(b) > 0 {
		t.Errorf("a refused key was recorded: %s", b)
	}
	untouched("unknown keys")

	// h01's entry holds h02's key: a changed key, refused even with the flag.
	known, _ := os.ReadFile(l.KnownHosts)
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(known)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == l.Hosts[1].Addr.String() {
			lines = append(lines, l.Hosts[0].Addr.String()+" "+strings.Join(f[1:], " "), line)
		}
	}
	changed := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(changed, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	os.WriteFile(plan, []byte(strings.Replace(string(raw), l.KnownHosts, changed, 1)), 0o600)
	before, _ := os.ReadFile(changed)
	out, stderr, code = casecap(t, work, "run", "--accept-new-host-keys", plan)
	if code != 1 || !strings.Contains(out+stderr, "HAS CHANGED") || !strings.Contains(out+stderr, l.Hosts[0].Name) {
		t.Errorf("changed host key: exit %d, want 1 naming %s:\n%s\n%s", code, l.Hosts[0].Name, out, stderr)
	}
	if after, _ := os.ReadFile(changed); string(after) != string(before) {
		t.Errorf("known_hosts changed:\n%s", after)
	}
	untouched("a changed key")
}

// TestSummarySaysSSHMode: where ESXi refuses to run the agent, the run's
// summary says that host captured in ssh mode, and why.
func TestSummarySaysSSHMode(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: true})
	h := l.Hosts[0]
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf("case: MODE\ndatastore: %s\nduration: 1s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n  - { name: %s, kind: esxi, address: %s, captures: [ { switchport: %d } ] }\n",
		lab.ESXiDatastore, l.ClientKey, l.KnownHosts, h.Name, h.Addr, h.VMs[0].Switchport)), 0o600)
	out, stderr, code := casecap(t, t.TempDir(), "run", plan)
	if code != 0 || !strings.Contains(out, "note: "+h.Name+" (ssh mode): the host refused to run the agent (execInstalledOnly)") {
		t.Errorf("exit %d, summary:\n%s\nstderr:\n%s", code, out, stderr)
	}
}
