//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
)

// pktcaps lists the pktcap-uw processes running on a host.
func pktcaps(t *testing.T, h *lab.Host) []string {
	t.Helper()
	procs, err := h.Processes()
	if err != nil {
		t.Fatalf("%s: processes: %v", h.Name, err)
	}
	var found []string
	for _, argv := range procs {
		if filepath.Base(argv[0]) == "pktcap-uw" {
			found = append(found, strings.Join(argv, " "))
		}
	}
	return found
}

// testKilledMidCaptureESXi: casecap run is SIGKILLed while an ESXi host
// captures (agent mode, or ssh mode where the host refuses the agent).
// The capture ends by itself at the window's end (the agent's timer, or
// the script's timers on the host), no pktcap-uw is left running, and a
// later collect gets the file whole, holding the whole window.
func testKilledMidCaptureESXi(t *testing.T, mode string) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: mode == "ssh"})
	labtest.Stream(t, l, 46, time.Millisecond)
	h := l.Hosts[0]
	caseID := "KILLED-" + strings.ToUpper(mode)
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf(`case: %s
datastore: %s
duration: 4s
ssh: { user: root, identity_file: %s, known_hosts: %s }
hosts:
  - name: %s
    kind: esxi
    address: %s
    captures:
      - uplink: vmnic0
        points: [UplinkRcvKernel]
        filter: { udpport: 9999 }
`, caseID, lab.ESXiDatastore, l.ClientKey, l.KnownHosts, h.Name, h.Addr)), 0o600)
	work := t.TempDir()
	cmd := exec.Command(casecapBinary(t), "run", plan)
	cmd.Dir = work
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := agentStatus(l, caseID, h)
		if err == nil && len(st.Captures) == 1 && st.Captures[0].State == "capturing" {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the capture did not start: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if running := pktcaps(t, h); len(running) != 1 {
		t.Errorf("pktcap-uw processes while capturing: %q, want one", running)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killedAt := time.Now()
	for {
		st, err := agentStatus(l, caseID, h)
		if err == nil && (st.State == agentproto.StateDone || st.State == agentproto.StateFailed) {
			if st.State != agentproto.StateDone || st.Captures[0].StopReason != "window-end" {
				t.Errorf("after casecap was killed: %s, capture stopped by %q; want done at the window's end", st.State, st.Captures[0].StopReason)
			}
			break
		}
		if time.Since(killedAt) > 20*time.Second {
			t.Fatalf("the capture did not end by itself: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for deadline := time.Now().Add(5 * time.Second); len(pktcaps(t, h)) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if left := pktcaps(t, h); len(left) > 0 {
		t.Errorf("pktcap-uw still runs after the window's end: %q", left)
	}
	out, stderr, code := casecap(t, work, "collect", "--json", plan)
	if code != 0 {
		t.Fatalf("collect after the kill: exit %d\n%s", code, stderr)
	}
	var m orchestrator.Manifest
	if err := json.Unmarshal([]byte(out), &m); err != nil || len(m.Captures) != 1 || string(m.Hosts[0].Mode) != mode {
		t.Fatalf("collect: %v, %d captures, mode %q", err, len(m.Captures), m.Hosts[0].Mode)
	}
	caseDir := filepath.Join(work, "Case_"+caseID)
	checkCollected(t, caseDir, &m)
	s, err := seqcast.ReadFile(filepath.Join(caseDir, m.Captures[0].File), 46)
	if err != nil || !s.Contiguous() || s.Distinct < 3000 {
		t.Errorf("%s: %+v %v; want the whole 4 s window (about 4000 packets)", m.Captures[0].File, s, err)
	}
}

func TestKilledMidCaptureESXiAgent(t *testing.T) { testKilledMidCaptureESXi(t, "agent") }

func TestKilledMidCaptureESXiSSH(t *testing.T) { testKilledMidCaptureESXi(t, "ssh") }
