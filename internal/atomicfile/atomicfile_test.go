package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentWriters: writers of one file at once each go through a
// temporary file of their own; the file ends whole (one writer's content),
// and no temporary file is left.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "status.json")
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			body := strings.Repeat(fmt.Sprintf("%02d", i), 50000)
			if err := Write(p, strings.NewReader(body), 0o640); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	raw, err := os.ReadFile(p)
	if err != nil || len(raw) != 100000 || strings.Count(string(raw), string(raw[:2])) != 50000 {
		t.Fatalf("%d bytes, %v: not one writer's whole content", len(raw), err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left in the directory: %v", ents)
	}
}

// TestFailureLeavesNothing: a write that cannot finish leaves the old file
// as it was and no temporary file, and says which file.
func TestFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "manifest.json")
	os.WriteFile(p, []byte("old"), 0o640)
	err := WriteDurable(p, failingReader{}, 0o640)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err %v, want one naming %s", err, p)
	}
	if raw, _ := os.ReadFile(p); string(raw) != "old" {
		t.Errorf("the old file became %q", raw)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left in the directory: %v", ents)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, fmt.Errorf("disk on fire") }
