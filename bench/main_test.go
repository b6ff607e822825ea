//go:build linux

package bench

import (
	"os"
	"testing"

	"github.com/casecap/casecap/internal/agent/agenttest"
)

// TestMain removes the agent the benchmarks built once they have all run:
// they share it, so none of them may remove it on its own.
func TestMain(m *testing.M) {
	code := m.Run()
	agenttest.Cleanup()
	os.Exit(code)
}
