// Package casedir reads a case folder as casecap collect left it: the
// manifest, and each collected capture's file with its host's clock
// against casecap's. It reads manifest.json by its documented fields
// (docs/design.md, "manifest.json"), not through the orchestrator's
// types: the analysis needs a case folder, not the code that made it.
package casedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ManifestFile is the manifest's name in a case folder.
const ManifestFile = "manifest.json"

// Case is a case folder: its captures that can be read, and those that
// cannot (with why).
type Case struct {
	Dir      string
	Name     string    // the case id
	Begin    time.Time // the agreed start, casecap's clock
	Captures []Capture
	Skipped  []Skipped
}

// Capture is one capture file of the case.
type Capture struct {
	Name  string // the file's name without .pcapng: esxi01.app01.eth0.VnicTxRx
	Path  string
	Host  string
	Clock Clock
	// Start and Stop are the capture's window on its host's clock, as the
	// manifest has them (zero if unknown).
	Start, Stop time.Time
	// Drops are packets the capture itself lost (its kernel buffer was
	// full): missing there, though the network delivered them.
	Drops uint64
}

// Skipped is a capture of the manifest that is not there to read.
type Skipped struct {
	File string `json:"file"`
	Host string `json:"host"`
	Why  string `json:"why"`
}

// Clock is a host's clock against casecap's, as the run measured it.
type Clock struct {
	Offset      time.Duration // host minus casecap
	Uncertainty time.Duration // the offset's error bound (half the best round trip)
	Corrected   bool          // the offset exceeded its uncertainty, and was applied
}

// Shift is what moves a timestamp of the host's onto casecap's clock: the
// offset taken off where the run applied it, and nothing where it was
// inside its own uncertainty (the host's clock was taken as right, and
// its instants were not moved either: correcting by noise adds skew).
func (c Clock) Shift() time.Duration {
	if c.Corrected {
		return -c.Offset
	}
	return 0
}

// String says how the host's timestamps are moved, and why.
func (c Clock) String() string {
	if c.Corrected {
		return fmt.Sprintf("moved by %s onto casecap's clock (host clock offset %s ± %v)", signed(c.Shift()), signed(c.Offset), c.Uncertainty)
	}
	return fmt.Sprintf("not moved: host clock offset %s is within its uncertainty ± %v", signed(c.Offset), c.Uncertainty)
}

// signed writes a duration with its sign, + included.
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// manifest is what casedir reads of manifest.json.
type manifest struct {
	Case  string    `json:"case"`
	Begin time.Time `json:"begin"`
	Hosts []struct {
		Name        string        `json:"name"`
		Offset      time.Duration `json:"clock_offset_ns"`
		Uncertainty time.Duration `json:"clock_uncertainty_ns"`
		Corrected   bool          `json:"clock_corrected"`
	} `json:"hosts"`
	Captures []struct {
		File      string    `json:"file"`
		Host      string    `json:"host"`
		Start     time.Time `json:"start"`
		Stop      time.Time `json:"stop"`
		Drops     uint64    `json:"drops"`
		Collected bool      `json:"collected"`
		Error     string    `json:"error"`
	} `json:"captures"`
}

// Open reads the case folder dir.
func Open(dir string) (*Case, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a case folder: it has no %s (casecap run or collect writes one)", dir, ManifestFile)
		}
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	clocks := map[string]Clock{}
	for _, h := range m.Hosts {
		clocks[h.Name] = Clock{Offset: h.Offset, Uncertainty: h.Uncertainty, Corrected: h.Corrected}
	}
	c := &Case{Dir: dir, Name: m.Case, Begin: m.Begin}
	for _, mc := range m.Captures {
		// Names come from the manifest: a plain file name in the folder,
		// nothing else.
		if mc.File == "" || mc.File != filepath.Base(mc.File) || strings.ContainsAny(mc.File, `/\`) || !strings.HasSuffix(mc.File, ".pcapng") {
			c.Skipped = append(c.Skipped, Skipped{File: mc.File, Host: mc.Host, Why: "not a capture file name"})
			continue
		}
		p := filepath.Join(dir, mc.File)
		if !mc.Collected {
			why := "not collected"
			if mc.Error != "" {
				why += ": " + mc.Error
			}
			c.Skipped = append(c.Skipped, Skipped{File: mc.File, Host: mc.Host, Why: why})
			continue
		}
		if _, err := os.Stat(p); err != nil {
			c.Skipped = append(c.Skipped, Skipped{File: mc.File, Host: mc.Host, Why: "collected, but not in the folder: " + err.Error()})
			continue
		}
		c.Captures = append(c.Captures, Capture{Name: strings.TrimSuffix(mc.File, ".pcapng"), Path: p, Host: mc.Host,
			Clock: clocks[mc.Host], Start: mc.Start, Stop: mc.Stop, Drops: mc.Drops})
	}
	if len(c.Captures) == 0 {
		return c, fmt.Errorf("%s has no collected capture to read (%d in its manifest)", dir, len(m.Captures))
	}
	return c, nil
}
