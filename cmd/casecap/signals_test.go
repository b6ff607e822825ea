//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/orchestrator"
)

// readManifest reads a case folder's manifest.json.
func readManifest(t *testing.T, caseDir string) *orchestrator.Manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(caseDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m orchestrator.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// exitOf waits for a command and returns its exit code (-1 with the
// signal that killed it).
func exitOf(cmd *exec.Cmd) (int, string) {
	err := cmd.Wait()
	if err == nil {
		return 0, ""
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1, ws.Signal().String()
		}
		return ee.ExitCode(), ""
	}
	return -2, err.Error()
}

// collectedAs reads casecap's --json manifest and checks it holds n
// captures, each stopped for reason, each collected whole into caseDir.
func collectedAs(t *testing.T, jsonOut, caseDir string, n int, reason string) *orchestrator.Manifest {
	t.Helper()
	var m orchestrator.Manifest
	if err := json.Unmarshal([]byte(jsonOut), &m); err != nil || len(m.Captures) != n {
		t.Fatalf("--json output: %v, %d captures, want %d:\n%s", err, len(m.Captures), n, jsonOut)
	}
	for _, c := range m.Captures {
		if c.StopReason != reason {
			t.Errorf("%s stopped by %q, want %s", c.File, c.StopReason, reason)
		}
	}
	checkCollected(t, caseDir, &m)
	return &m
}

// nothingArmed checks that no agent of the case runs on any host and that
// the datastore holds neither capture files nor claims of it.
func nothingArmed(t *testing.T, l *lab.Lab, caseID string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range l.Hosts {
		for {
			st, err := agentStatus(l, caseID, h)
			if err != nil || !running(h, st.PID) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: the agent of case %s (pid %d) still runs, %s", h.Name, caseID, st.PID, st.State)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(l.Datastore, "Case_"+caseID, "*")); len(left) > 0 {
		t.Errorf("capture files left on the datastore: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(l.Datastore, ".casecap", "cases", caseID, ".claim-*")); len(left) > 0 {
		t.Errorf("claims left: %v", left)
	}
}

// TestBrokenOutput: `casecap run PLAN 2>&1 | head -1`: the reader of
// casecap's output goes away after one line. casecap finishes its work
// (captures run, stop and are collected, the case folder written) instead
// of dying of SIGPIPE half-way with agents armed.
func TestBrokenOutput(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 41, time.Millisecond)
	work := t.TempDir()
	plan := labPlanFile(t, l, "PIPE", 2*time.Second)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(casecapBinary(t), "run", plan)
	cmd.Dir, cmd.Stdout, cmd.Stderr = work, w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close() // head -1 exits
	code, sig := exitOf(cmd)
	if code != 0 {
		t.Fatalf("casecap run with its output gone after %q: exit %d %s, want it to finish its work (exit 0)", line, code, sig)
	}
	m := readManifest(t, filepath.Join(work, "Case_PIPE"))
	checkCollected(t, filepath.Join(work, "Case_PIPE"), m)
	for _, c := range m.Captures {
		if c.StopReason != "window-end" || !c.Verified {
			t.Errorf("%s: %s, verified %v", c.File, c.StopReason, c.Verified)
		}
	}
}

// TestSIGTERM: SIGTERM (what `timeout`, a CI job or a service manager
// sends) acts as the first Ctrl-C: every capture stops together, and is
// collected; exit 0.
func TestSIGTERM(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 42, time.Millisecond)
	work := t.TempDir()
	plan := labPlanFile(t, l, "TERM", 10*time.Minute)
	cmd := exec.Command(casecapBinary(t), "run", "--json", plan)
	cmd.Dir = work
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCapturing(t, l, "TERM")
	cmd.Process.Signal(syscall.SIGTERM)
	termed := time.Now()
	code, sig := exitOf(cmd)
	if code != 0 || time.Since(termed) > 20*time.Second {
		t.Fatalf("SIGTERM: exit %d %s after %v\n%s", code, sig, time.Since(termed), stderr.String())
	}
	collectedAs(t, stdout.String(), filepath.Join(work, "Case_TERM"), 2, "stop-request")
}

// TestSIGHUP: SIGHUP (the terminal closed) makes casecap stop waiting at
// once; the captures go on to their end; casecap.log says how to collect,
// and that collect gets every file whole.
func TestSIGHUP(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 43, time.Millisecond)
	work := t.TempDir()
	plan := labPlanFile(t, l, "HUP", 5*time.Second)
	cmd := exec.Command(casecapBinary(t), "run", plan)
	cmd.Dir = work
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCapturing(t, l, "HUP")
	cmd.Process.Signal(syscall.SIGHUP)
	hupped := time.Now()
	code, sig := exitOf(cmd)
	if took := time.Since(hupped); code != 1 || took > 3*time.Second {
		t.Errorf("SIGHUP: exit %d %s after %v, want casecap to stop waiting at once (exit 1)", code, sig, took)
	}
	for _, h := range l.Hosts {
		st, err := agentStatus(l, "HUP", h)
		if err != nil || !running(h, st.PID) || st.Captures[0].State != "capturing" {
			t.Errorf("%s after SIGHUP: %+v %v, want its capture going on", h.Name, st, err)
		}
	}
	logText, _ := os.ReadFile(filepath.Join(work, "Case_HUP", "casecap.log"))
	if want := "casecap collect " + plan; !strings.Contains(string(logText), want) {
		t.Errorf("casecap.log lacks %q:\n%s", want, logText)
	}
	time.Sleep(time.Until(hupped.Add(6 * time.Second)))
	out, errOut, code := casecap(t, work, "collect", "--json", plan)
	if code != 0 {
		t.Fatalf("collect after SIGHUP: exit %d\n%s", code, errOut)
	}
	collectedAs(t, out, filepath.Join(work, "Case_HUP"), 2, "window-end")
}

// TestSignalWhileArming: SIGTERM or SIGHUP while hosts are being armed (one
// at a time here) calls the start off: every armed host is disarmed, no
// file and no claim are left, and the case then runs.
func TestSignalWhileArming(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 6)
	labtest.Stream(t, l, 44, time.Millisecond)
	for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		caseID := "ARMSIG" + strings.TrimPrefix(s.String(), "SIG")
		caseID = strings.ReplaceAll(caseID, " ", "")
		work := t.TempDir()
		plan := labPlanFile(t, l, caseID, 10*time.Minute)
		cmd := exec.Command(casecapBinary(t), "run", "--parallel", "1", plan)
		cmd.Dir = work
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var text strings.Builder
		armed := make(chan struct{})
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			sc := bufio.NewScanner(stderr)
			once := sync.Once{}
			for sc.Scan() {
				mu.Lock()
				text.WriteString(sc.Text() + "\n")
				mu.Unlock()
				if strings.HasSuffix(sc.Text(), ": armed") {
					once.Do(func() { close(armed) })
				}
			}
		}()
		select {
		case <-armed:
		case <-time.After(30 * time.Second):
			t.Fatal("no host was armed")
		}
		cmd.Process.Signal(s)
		<-drained
		code, sig := exitOf(cmd)
		mu.Lock()
		out := text.String()
		mu.Unlock()
		if code != 1 || !strings.Contains(out, "called off before any capture began") {
			t.Errorf("%v while arming: exit %d %s, want the start called off:\n%s", s, code, sig, out)
		}
		if strings.Contains(out, ": capturing") {
			t.Errorf("%v while arming: a host began capturing:\n%s", s, out)
		}
		nothingArmed(t, l, caseID)
		short := labPlanFile(t, l, caseID, time.Second)
		if _, errOut, code := casecap(t, work, "run", short); code != 0 {
			t.Errorf("the case after the called-off start: exit %d\n%s", code, errOut)
		}
	}
}
