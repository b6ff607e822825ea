//go:build linux

package orchestrator

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSuperviseReadsPublicLastWords: the ssh-mode script's own sed, taken
// from supervise.sh and run by sh, reads pktcap-uw's summary as published
// (internal/agent/pktcap/testdata/public) as the agent does: 10241 dumped, 0
// dropped; and nothing from a run that printed none.
func TestSuperviseReadsPublicLastWords(t *testing.T) {
	m := regexp.MustCompile(`sed -n '([^']*Dumped[^']*)'`).FindStringSubmatch(superviseScript)
	if m == nil {
		t.Fatal("supervise.sh has no sed that reads pktcap-uw's summary")
	}
	for file, want := range map[string]string{"pktcap-uw.last-words.txt": "10241 0", "pktcap-uw.no-summary.txt": ""} {
		path := filepath.Join("..", "internal", "agent", "pktcap", "testdata", "public", file)
		if _, err := os.Stat(path); err != nil {
			t.Fatal(err) // sed would read nothing from a missing file, and pass the no-summary case
		}
		out, err := exec.Command("sh", "-c", `sed -n "$1" "$2" | tail -n 1`, "sh", m[1], path).Output()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%s: the script reads %q (%v), want %q", file, out, err, want)
		}
	}
}
