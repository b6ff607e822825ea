package hosts

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Conn is one host, reached once and reused for everything.
type Conn interface {
	// Name is the host's name in the plan.
	Name() string
	// Run runs argv on the host and returns its standard output. A command
	// that fails returns a *RunError holding its exit status and stderr.
	Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error)
	// ReadFile reads a file on the host.
	ReadFile(path string) ([]byte, error)
	// WriteFile writes a file on the host atomically (temporary file, then
	// rename): readers see the old content or the new, never half.
	WriteFile(path string, r io.Reader, mode uint32) error
	// Stat returns a file's size, or an error wrapping fs.ErrNotExist.
	Stat(path string) (int64, error)
	// MkdirAll creates a directory and its parents.
	MkdirAll(path string, mode uint32) error
	// CreateExclusive creates a file that must not exist yet (O_EXCL: of
	// writers racing for one name, exactly one succeeds) and writes data
	// into it; a file already there returns an error wrapping
	// fs.ErrExist. Readers may see it empty for a moment.
	CreateExclusive(path string, data []byte, mode uint32) error
	// ReadDir lists a directory.
	ReadDir(path string) ([]Entry, error)
	// Remove removes a file; one that is not there is not an error.
	Remove(path string) error
	// Download copies a remote file into w from offset, reporting progress,
	// and returns the bytes copied.
	Download(ctx context.Context, path string, w io.WriterAt, offset int64, progress func(int64)) (int64, error)
	// Start starts argv with its standard input and output connected, for
	// an exchange (the clock measurement).
	Start(ctx context.Context, argv []string) (Process, error)
	// Close ends the connection.
	Close() error
}

// Entry is a file in a directory listing, with its modification time on
// the host's clock.
type Entry struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Process is a command running on a host.
type Process interface {
	Stdin() io.WriteCloser
	Stdout() io.Reader
	// Wait waits for the command to end; a command that failed returns a
	// *RunError holding its exit status and (the start of) its stderr.
	Wait() error
}

// stderrCap bounds the stderr kept from a started command: enough for any
// message, not a whole log.
const stderrCap = 64 << 10

// cappedBuffer keeps the first stderrCap bytes written to it.
type cappedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := stderrCap - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// RunError is a command that ran and failed.
type RunError struct {
	Host   string
	Argv   []string
	Status int // exit status, -1 when killed by a signal or cut off
	Stderr string
	Err    error
}

func (e *RunError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s failed (exit %d): %s", e.Argv[0], e.Status, msg)
}

func (e *RunError) Unwrap() error { return e.Err }
