//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab/labtest"
)

// TestLivePcapngToTshark: `casecap live PLAN --pcapng -` piped into
// `tshark -r -`: tshark reads the stream as it grows and prints each
// packet within a second of its stamp, from both hosts' capture points
// (an interface each, named like the files); Ctrl-C ends casecap cleanly,
// tshark at the stream's end, and no agent is left running.
func TestLivePcapngToTshark(t *testing.T) {
	labtest.Require(t)
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is not installed")
	}
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 71, 5*time.Millisecond)
	var b strings.Builder
	fmt.Fprintf(&b, "case: LIVE-TSHARK\ndatastore: %s\nduration: 1m\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", l.Datastore, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0, filter: { udpport: 9999 } } ] }\n", h.Name, h.Addr)
	}
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte(b.String()), 0o600)

	cc := exec.Command(casecapBinary(t), "live", plan, "--pcapng", "-")
	ts := exec.Command("tshark", "-r", "-", "-l", "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.interface_name")
	pipe, err := cc.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ts.Stdin = pipe
	var ccErr strings.Builder
	cc.Stderr = &ccErr
	tsOut, _ := ts.StdoutPipe()
	if err := cc.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ts.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(tsOut)
	lags := []time.Duration{}
	ifaces := map[string]int{}
	stopAt := time.Time{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		sec, _ := strconv.ParseFloat(f[0], 64)
		lags = append(lags, time.Since(time.Unix(0, int64(sec*1e9))))
		ifaces[f[1]]++
		if stopAt.IsZero() {
			stopAt = time.Now().Add(2 * time.Second)
		}
		if !stopAt.IsZero() && time.Now().After(stopAt) && cc.ProcessState == nil {
			cc.Process.Signal(syscall.SIGINT) // Ctrl-C
			stopAt = time.Now().Add(time.Hour)
		}
	}
	ccWait := cc.Wait()
	ts.Wait()
	if ccWait != nil {
		t.Errorf("casecap live after Ctrl-C: %v\n%s", ccWait, ccErr.String())
	}
	if len(lags) < 200 || lags[0] > time.Second {
		t.Fatalf("tshark printed %d packets, the first %v after its stamp; casecap said:\n%s", len(lags), lags, ccErr.String())
	}
	worst := time.Duration(0)
	for _, d := range lags {
		worst = max(worst, d)
	}
	for _, h := range l.Hosts {
		if ifaces[h.Name+".eth0.RxTx"] < 100 {
			t.Errorf("interface %s.eth0.RxTx: %d packets (%v)", h.Name, ifaces[h.Name+".eth0.RxTx"], ifaces)
		}
	}
	if worst > time.Second {
		t.Errorf("a packet reached tshark %v after its stamp, want within a second", worst)
	}
	t.Logf("tshark read %d packets live, the first %v after its stamp, the slowest %v; casecap said:\n%s", len(lags), lags[0], worst, ccErr.String())
	time.Sleep(500 * time.Millisecond)
	for _, h := range l.Hosts {
		procs, _ := h.Processes()
		for _, argv := range procs {
			if strings.Contains(argv[0], "casecap-agent") {
				t.Errorf("%s: an agent is still running: %v", h.Name, argv)
			}
		}
	}
}
