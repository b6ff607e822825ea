// Package agenttest builds the real casecap-agent binary for tests that run
// it on lab hosts, once per test binary.
package agenttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once  sync.Once
	dir   string
	path  string
	bErr  error
	bOut  []byte
	mutex sync.Mutex
)

// Binary returns the path of a static casecap-agent for this machine,
// building it on first use. Call Cleanup from TestMain to remove it.
func Binary(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, bErr = os.MkdirTemp("", "casecap-agent-test-")
		if bErr != nil {
			return
		}
		path = filepath.Join(dir, "casecap-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-o", path, "github.com/casecap/casecap/cmd/casecap-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		bOut, bErr = cmd.CombinedOutput()
	})
	if bErr != nil {
		t.Fatalf("build casecap-agent: %v\n%s", bErr, bOut)
	}
	return path
}

// Cleanup removes the built binary.
func Cleanup() {
	mutex.Lock()
	defer mutex.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// CopyTo copies the agent binary into dir (a lab datastore) and returns the
// copy's path.
func CopyTo(t testing.TB, dir string) string {
	t.Helper()
	src, err := os.ReadFile(Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "casecap-agent")
	if err := os.WriteFile(dst, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
