//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/orchestrator"
)

// smallOut mounts a tmpfs with room for inodes files and directories (its
// root included) and returns it; the test unmounts it.
func smallOut(t *testing.T, inodes string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes="+inodes, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a small tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// TestCaseFolderWriteFails: --out has room for the captures but not for the
// manifest (no inode left). The run says so, naming the file and why, in
// the summary and in --json; leaves no temporary files; and a later collect
// with room writes the case folder, the captures kept as collected.
func TestCaseFolderWriteFails(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 45, time.Millisecond)
	plan := labPlanFile(t, l, "FULL", time.Second)
	// The root, Case_FULL/, casecap.log, the folder's lock and the two
	// captures: nothing more.
	out := smallOut(t, "6")
	stdout, stderr, code := casecap(t, t.TempDir(), "run", "--out", out, plan)
	if code != 1 {
		t.Errorf("run into a full --out: exit %d, want 1", code)
	}
	if !strings.Contains(stdout, "error: ") || !strings.Contains(stdout, "manifest.json") || !strings.Contains(stdout, "no space left on device") {
		t.Errorf("the summary does not say the manifest could not be written:\n%s\n%s", stdout, stderr)
	}
	caseDir := filepath.Join(out, "Case_FULL")
	if tmp, _ := filepath.Glob(filepath.Join(caseDir, "*.tmp")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if tmp, _ := filepath.Glob(filepath.Join(caseDir, ".*.tmp")); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if _, err := os.Stat(filepath.Join(caseDir, "manifest.json")); err == nil {
		t.Error("a manifest.json exists although it could not be written")
	}
	// Room again: collect finishes the case folder.
	if b, err := exec.Command("mount", "-o", "remount,nr_inodes=100", out).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, b)
	}
	jsonOut, errOut, code := casecap(t, t.TempDir(), "collect", "--json", "--out", out, plan)
	if code != 0 {
		t.Fatalf("collect with room: exit %d\n%s", code, errOut)
	}
	var m orchestrator.Manifest
	if err := json.Unmarshal([]byte(jsonOut), &m); err != nil {
		t.Fatal(err)
	}
	checkCollected(t, caseDir, readManifest(t, caseDir))
	if len(m.Errors) != 0 {
		t.Errorf("collect with room: errors %v", m.Errors)
	}
}

// TestCaseFolderWriteFailsJSON: with --json the same failure is in the
// document's errors.
func TestCaseFolderWriteFailsJSON(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	plan := labPlanFile(t, l, "FULLJ", time.Second)
	out := smallOut(t, "6")
	stdout, _, code := casecap(t, t.TempDir(), "run", "--json", "--out", out, plan)
	var m orchestrator.Manifest
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	found := false
	for _, e := range m.Errors {
		found = found || strings.Contains(e, "manifest.json") && strings.Contains(e, "no space left on device")
	}
	if code != 1 || !found {
		t.Errorf("exit %d, errors %v: want the manifest's failure among them", code, m.Errors)
	}
}
