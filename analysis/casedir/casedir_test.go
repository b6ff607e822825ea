package casedir_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/orchestrator"
)

// TestOpenReadsTheManifest: casedir reads manifest.json as the
// orchestrator writes it (its own view of the fields, kept in step by this
// test): the captures there to read, each with its host's clock, and
// those that are not, with why. A name that is not a plain capture file
// name is never opened.
func TestOpenReadsTheManifest(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	m := orchestrator.Manifest{Case: "C1", Begin: start,
		Hosts: []orchestrator.ManifestHost{
			{Name: "h1", ClockOffsetNs: 80 * time.Millisecond, ClockUncertaintyNs: time.Millisecond, ClockCorrected: true},
			{Name: "h2", ClockOffsetNs: 300 * time.Microsecond, ClockUncertaintyNs: 2 * time.Millisecond},
		},
		Captures: []orchestrator.ManifestCapture{
			{File: "h1.eth0.RxTx.pcapng", Host: "h1", Collected: true, Start: start, Stop: start.Add(time.Second)},
			{File: "h2.eth0.RxTx.pcapng", Host: "h2", Collected: true},
			{File: "h3.eth0.RxTx.pcapng", Host: "h3", Error: "unreachable"},
			{File: "../escape.pcapng", Host: "h2", Collected: true},
			{File: "h4.eth0.RxTx.pcapng", Host: "h4", Collected: true}, // collected, then deleted
		},
	}
	for _, f := range []string{"h1.eth0.RxTx.pcapng", "h2.eth0.RxTx.pcapng"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o600)
	}
	raw, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, casedir.ManifestFile), raw, 0o600)
	c, err := casedir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "C1" || !c.Begin.Equal(start) || len(c.Captures) != 2 {
		t.Fatalf("%+v", c)
	}
	a, b := c.Captures[0], c.Captures[1]
	if a.Name != "h1.eth0.RxTx" || a.Host != "h1" || a.Clock.Shift() != -80*time.Millisecond || !a.Start.Equal(start) || a.Path != filepath.Join(dir, "h1.eth0.RxTx.pcapng") {
		t.Errorf("first capture %+v", a)
	}
	if b.Clock.Shift() != 0 || b.Clock.Offset != 300*time.Microsecond || !strings.Contains(b.Clock.String(), "not moved: host clock offset +300µs is within its uncertainty ± 2ms") {
		t.Errorf("second capture %+v: %s", b, b.Clock)
	}
	if s := a.Clock.String(); s != "moved by -80ms onto casecap's clock (host clock offset +80ms ± 1ms)" {
		t.Errorf("clock: %s", s)
	}
	var why []string
	for _, s := range c.Skipped {
		why = append(why, s.File+": "+s.Why)
	}
	want := "h3.eth0.RxTx.pcapng: not collected: unreachable | ../escape.pcapng: not a capture file name | h4.eth0.RxTx.pcapng: collected, but not in the folder"
	if got := strings.Join(why, " | "); !strings.HasPrefix(got, want) {
		t.Errorf("skipped: %s\nwant:    %s...", got, want)
	}

	if _, err := casedir.Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a case folder") {
		t.Errorf("a folder with no manifest: %v", err)
	}
}
