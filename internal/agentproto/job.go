package agentproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans/filter"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// JobVersion is the job format this casecap writes and its agent reads.
const JobVersion = 1

// Job is every capture of one case on one host.
type Job struct {
	Version  int          `json:"version"`
	Case     string       `json:"case"`
	Host     string       `json:"host"`
	StateDir string       `json:"state_dir"` // the state directory (see files.go)
	CaseDir  string       `json:"case_dir"`  // where the capture files go
	Captures []JobCapture `json:"captures"`
	// ESXi is the host's release, for pktcap-uw's command lines; nil on Linux.
	ESXi *esxi.Version `json:"esxi,omitempty"`
	// Record is casecap's own note on this run (clock offset, agent
	// path...), kept as RecordFile in the state directory so that later
	// commands find it; the agent does not read it.
	Record json.RawMessage `json:"record,omitempty"`
	// Until are the plan's trigger rules this host watches, Post how long
	// every capture runs on after a trigger (wherever it fired). A job with
	// a Post stops on a trigger; one without ignores triggers.
	Until []Rule        `json:"until,omitempty"`
	Post  time.Duration `json:"post,omitempty"`
}

// JobCapture is one capture of a job.
type JobCapture struct {
	Name          string           `json:"name"` // file stem, e.g. kvm01.eth0.RxTx
	File          string           `json:"file"` // file name inside CaseDir
	Interface     string           `json:"interface"`
	Direction     bpfgen.Direction `json:"direction"`
	Filter        filter.Filter    `json:"filter"`
	ExcludeOwnSSH bool             `json:"exclude_own_ssh"`
	Exclude       []bpfgen.Conn    `json:"exclude,omitempty"`
	Snaplen       int              `json:"snaplen"`
	// Either a fixed window (Start, Stop, on the host's clock), or a
	// Duration that begins when `begin` says (two-phase start: every host
	// armed first, then started at one instant), ending by Stop whatever.
	Start      time.Time     `json:"start,omitzero"`
	Stop       time.Time     `json:"stop"`
	Duration   time.Duration `json:"duration,omitempty"`
	MaxPackets uint64        `json:"max_packets,omitempty"`
	MaxBytes   uint64        `json:"max_bytes,omitempty"`
	MinFree    uint64        `json:"min_free,omitempty"`
	Buffer     uint64        `json:"buffer,omitempty"` // kernel ring size; 0: the default (4 MiB)
	// Pktcap, on ESXi, is the pktcap-uw session that makes this capture
	// (Interface, Direction, Filter and Snaplen are then not used).
	Pktcap *esxi.Capture `json:"pktcap,omitempty"`
	// Ring: keep only the latest packets (see Ring).
	Ring *Ring `json:"ring,omitempty"`
}

// Check refuses jobs that would write outside their folders or never end.
// Paths are the host's (slash-separated, absolute), whatever casecap runs on.
func (j *Job) Check() error {
	var errs []error
	if j.Version != JobVersion {
		errs = append(errs, fmt.Errorf("job format %d, this agent reads %d (deploy the matching agent)", j.Version, JobVersion))
	}
	if !path.IsAbs(j.StateDir) || !path.IsAbs(j.CaseDir) {
		errs = append(errs, errors.New("state_dir and case_dir must be absolute"))
	}
	if len(j.Captures) == 0 {
		errs = append(errs, errors.New("the job has no captures"))
	}
	seen := map[string]bool{}
	for _, c := range j.Captures {
		switch {
		case c.File == "" || c.File != path.Base(c.File) || c.File[0] == '.' || containsAny(c.File, `\`):
			errs = append(errs, fmt.Errorf("capture file %q must be a plain file name", c.File))
		case seen[c.File]:
			errs = append(errs, fmt.Errorf("capture file %q appears twice", c.File))
		case c.Stop.IsZero() || !c.Stop.After(c.Start):
			errs = append(errs, fmt.Errorf("capture %s: stop %v must be after start %v: nothing runs forever", c.Name, c.Stop, c.Start))
		case c.Duration < 0 || (c.Duration > 0 && !c.Start.IsZero()):
			errs = append(errs, fmt.Errorf("capture %s: give a start or a duration, not both", c.Name))
		case c.Ring != nil && c.Ring.Segment == 0 && c.Ring.SegmentBytes == 0:
			errs = append(errs, fmt.Errorf("capture %s: a ring needs a segment length or size", c.Name))
		case c.Pktcap != nil && j.ESXi == nil:
			errs = append(errs, fmt.Errorf("capture %s is a pktcap-uw session but the job names no ESXi release", c.Name))
		}
		seen[c.File] = true
	}
	return errors.Join(errs...)
}

func containsAny(s, chars string) bool {
	for _, r := range s {
		for _, c := range chars {
			if r == c {
				return true
			}
		}
	}
	return false
}
