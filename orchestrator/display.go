package orchestrator

import (
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// Display shows a command's progress to a person. The orchestrator calls
// it from many goroutines.
type Display interface {
	// HostPhase says what a host has just done.
	HostPhase(host, msg string)
	// HostFailed says a host failed a phase.
	HostFailed(host, phase string, err error)
	// Captures shows every capture's progress while they run.
	Captures(window time.Duration, elapsed time.Duration, caps []Progress)
	// Download starts showing one file's download.
	Download(host, file string, total int64) Transfer
	// Close ends the display.
	Close()
}

// Progress is one capture's state for the live display.
type Progress struct {
	Host      string
	Reachable bool
	agentproto.CaptureStatus
}

// Transfer is one download's progress.
type Transfer interface {
	Add(n int64)
	Done(err error)
}

type nopDisplay struct{}

func (nopDisplay) HostPhase(string, string)                          {}
func (nopDisplay) HostFailed(string, string, error)                  {}
func (nopDisplay) Captures(time.Duration, time.Duration, []Progress) {}
func (nopDisplay) Download(string, string, int64) Transfer           { return nopTransfer{} }
func (nopDisplay) Close()                                            {}

type nopTransfer struct{}

func (nopTransfer) Add(int64)  {}
func (nopTransfer) Done(error) {}
