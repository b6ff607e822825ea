//go:build linux

package orchestrator

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/casecap/casecap/internal/lab/labtest"
)

// TestWriteFileAtomicOnAFullDisk: a write that runs out of space returns
// the error, naming the file, and leaves neither the file nor a temporary
// one (a full --out once left 0-byte manifest.json.tmp and plan.yaml.tmp).
func TestWriteFileAtomicOnAFullDisk(t *testing.T) {
	labtest.Require(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	err := writeFileAtomic(filepath.Join(dir, "manifest.json"), make([]byte, 64<<10))
	if err == nil || !strings.Contains(err.Error(), "manifest.json") || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("write 64 KiB into 4 KiB: %v, want an error naming the file and why", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
	// Room for it: written, whole, mode 0640, nothing else.
	if err := writeFileAtomic(filepath.Join(dir, "plan.yaml"), []byte("case: X\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "plan.yaml")); err != nil || fi.Mode().Perm() != 0o640 || fi.Size() != 8 {
		t.Errorf("plan.yaml: %v %v", fi, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("entries: %v", entries)
	}
}
