//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/lab/ciskip"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// TestDemoEndToEnd builds casecap and runs `casecap run --demo` in an empty
// directory, as the README's quick start does: the case folder must hold a
// verified pcapng that tshark reads, with the demo's own datagrams in it.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		ciskip.Skipf(t, "builds casecap and captures for 5 s (-short)")
	}
	labtest.Require(t) // root and capture rights, as the demo needs
	for _, tool := range []string{"tshark", "capinfos"} {
		if _, err := exec.LookPath(tool); err != nil {
			ciskip.Skipf(t, "%s not installed (./test.sh installs it): %v", tool, err)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "casecap")
	agenttest.BuildCasecap(t, bin)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--demo", "--json")
	cmd.Dir = work
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("casecap run --demo: %v\nstderr:\n%s", err, stderr.String())
	}
	var m orchestrator.Manifest
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if !strings.HasPrefix(m.Case, "demo-") || len(m.Captures) != 1 {
		t.Fatalf("manifest: case %q, %d captures", m.Case, len(m.Captures))
	}
	// The demo's datastore is a fixed directory on this machine: the demo
	// removes its working copy there once the case folder holds it (and the
	// test does, should the demo not have).
	if p, err := plans.Load(filepath.Join(work, "Case_"+m.Case, "plan.yaml")); err == nil && len(p.Hosts) == 1 && p.Hosts[0].Datastore != "" {
		ds := p.Hosts[0].Datastore
		for _, dir := range []string{filepath.Join(ds, "Case_"+m.Case), filepath.Join(ds, ".casecap", "cases", m.Case)} {
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("the demo left %s behind", dir)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
		}
	} else {
		t.Errorf("the plan as run: %v", err)
	}
	c := m.Captures[0]
	if c.File != "local.any.RxTx.pcapng" || !c.Collected || c.State != "stopped" || c.StopReason != "window-end" || c.Packets == 0 || c.SHA256 == "" {
		t.Fatalf("capture in manifest: %+v", c)
	}
	caseDir := filepath.Join(work, "Case_"+m.Case)
	for _, f := range []string{"manifest.json", "plan.yaml", "casecap.log", c.File} {
		if _, err := os.Stat(filepath.Join(caseDir, f)); err != nil {
			t.Errorf("case folder: %v", err)
		}
	}
	pcap := filepath.Join(caseDir, c.File)
	info, err := exec.Command("capinfos", "-M", "-T", "-r", "-c", pcap).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos: %v\n%s", err, info)
	}
	fields := strings.Fields(strings.TrimSpace(string(info)))
	if n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64); err != nil || n != c.Packets {
		t.Errorf("capinfos counts %q packets, manifest %d", fields[len(fields)-1], c.Packets)
	}
	// The demo sends ten datagrams a second for the 5 s window; on loopback
	// with "any" each appears once per direction seen (outgoing and incoming).
	demo, err := exec.Command("tshark", "-r", pcap, "-Y", `udp.dstport == 9 && data.data contains "casecap demo packet"`, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if n := len(strings.Fields(string(demo))); n < 30 {
		t.Errorf("tshark finds %d demo datagrams in %s, want at least 30 (10/s for 5 s)", n, c.File)
	}
	// The case merges into one pcapng that Wireshark's tools read: every
	// packet, on an interface named after the capture.
	if o, err := exec.Command(bin, "merge", caseDir).CombinedOutput(); err != nil {
		t.Fatalf("casecap merge: %v\n%s", err, o)
	}
	merged := filepath.Join(caseDir, "merged.pcapng")
	names, err := exec.Command("tshark", "-r", merged, "-T", "fields", "-e", "frame.interface_name").Output()
	if err != nil {
		t.Fatalf("tshark -r merged.pcapng: %v", err)
	}
	lines := strings.Fields(string(names))
	if uint64(len(lines)) != c.Packets || lines[0] != "local.any.RxTx" {
		t.Errorf("merged.pcapng: %d packets (manifest %d), interface %q", len(lines), c.Packets, lines[0])
	}
}
