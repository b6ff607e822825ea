// Package agenttest builds the real casecap-agent binary for tests that run
// it on lab hosts, once per test binary.
package agenttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// RaceEnv names a directory: when it is set, the agent is built with the
// race detector (the tests then run the race build on the lab hosts, and
// Races reports what it found). Lab hosts share this machine's root
// filesystem but not its /tmp: use a directory such as
// /var/tmp/casecap-race. For example:
//
//	CASECAP_AGENT_RACE=/var/tmp/casecap-race go test -race ./internal/agent ./orchestrator
const RaceEnv = "CASECAP_AGENT_RACE"

// TestTags are the build tags of the agent the tests run: its test hooks
// (a clock a lab host can skew: see agent/hostclock).
const TestTags = "casecap_testhooks"

var (
	once  sync.Once
	dir   string
	path  string
	bErr  error
	bOut  []byte
	mutex sync.Mutex
)

// Binary returns the path of a static casecap-agent for this machine, with
// its test hooks, building it on first use. Call Cleanup from TestMain to remove it.
func Binary(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		dir, bErr = os.MkdirTemp("", "casecap-agent-test-")
		if bErr != nil {
			return
		}
		path = filepath.Join(dir, "casecap-agent")
		if race := os.Getenv(RaceEnv); race != "" {
			bOut, bErr = buildRace(race)
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-tags", TestTags, "-o", path, "github.com/casecap/casecap/cmd/casecap-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		bOut, bErr = cmd.CombinedOutput()
	})
	if bErr != nil {
		t.Fatalf("build casecap-agent: %v\n%s", bErr, bOut)
	}
	return path
}

// buildRace builds the agent with the race detector into dir, and makes
// path a script that runs it with its reports written into dir (GORACE
// cannot reach an agent started over SSH any other way).
func buildRace(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "casecap-agent-race")
	cmd := exec.Command("go", "build", "-race", "-trimpath", "-tags", TestTags, "-o", bin, "github.com/casecap/casecap/cmd/casecap-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return out, err
	}
	script := fmt.Sprintf("#!/bin/sh\nGORACE='log_path=%s/report' exec '%s' \"$@\"\n", dir, bin)
	return nil, os.WriteFile(path, []byte(script), 0o755)
}

// Races returns an error holding the race build's reports, if any (see
// RaceEnv); nil when there are none or the agent was not built for races.
func Races() error {
	race := os.Getenv(RaceEnv)
	if race == "" {
		return nil
	}
	reports, _ := filepath.Glob(filepath.Join(race, "report.*"))
	var text []byte
	for _, r := range reports {
		b, _ := os.ReadFile(r)
		text = append(text, b...)
	}
	if len(reports) == 0 {
		return nil
	}
	return fmt.Errorf("the race-built agent reported data races (%d reports in %s):\n%s", len(reports), race, text)
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

// BuildCasecap builds casecap into out around the agent Binary builds (for
// this machine's architecture), instead of the agents `go generate
// ./internal/agent/dist` last left: what a test runs on its lab hosts is the agent
// of the source under test.
func BuildCasecap(t testing.TB, out string) {
	t.Helper()
	agent := Binary(t)
	dir := filepath.Join(filepath.Dir(out), "agents")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(agent, filepath.Join(dir, "casecap-agent-linux-"+runtime.GOARCH)); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/casecap/casecap/internal/agent/dist.dir="+dir, "-o", out, "github.com/casecap/casecap/cmd/casecap")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build casecap: %v\n%s", err, b)
	}
}
