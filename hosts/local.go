package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"

	"github.com/casecap/casecap/internal/atomicfile"
)

// LocalConn is this machine: commands run as processes (no shell), files
// are local files.
type LocalConn struct {
	name string
}

// Local returns the connection to this machine.
func Local(name string) *LocalConn { return &LocalConn{name: name} }

// Name is the host's name in the plan.
func (c *LocalConn) Name() string { return c.name }

// Run runs argv directly.
func (c *LocalConn) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &RunError{Host: c.name, Argv: argv, Status: exitCode(err), Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// exitCode is a failed command's exit status, or -1 when it did not run or
// was killed by a signal.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

type localProcess struct {
	host   string
	argv   []string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    io.Reader
	stderr cappedBuffer
}

func (p *localProcess) Stdin() io.WriteCloser { return p.in }
func (p *localProcess) Stdout() io.Reader     { return p.out }
func (p *localProcess) Wait() error {
	if err := p.cmd.Wait(); err != nil {
		return &RunError{Host: p.host, Argv: p.argv, Status: exitCode(err), Stderr: p.stderr.String(), Err: err}
	}
	return nil
}

// Start starts argv with pipes.
func (c *LocalConn) Start(ctx context.Context, argv []string) (Process, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	p := &localProcess{host: c.name, argv: argv, cmd: cmd}
	cmd.Stderr = &p.stderr
	in, err1 := cmd.StdinPipe()
	out, err2 := cmd.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	p.in, p.out = in, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// ReadFile reads a local file.
func (c *LocalConn) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

// WriteFile writes a local file atomically.
func (c *LocalConn) WriteFile(p string, r io.Reader, mode uint32) error {
	return atomicfile.Write(p, r, fs.FileMode(mode))
}

// CreateExclusive creates a new local file with data.
func (c *LocalConn) CreateExclusive(p string, data []byte, mode uint32) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(mode))
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	return errors.Join(werr, f.Close())
}

// ReadDir lists a local directory.
func (c *LocalConn) ReadDir(p string) ([]Entry, error) {
	des, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range des {
		fi, err := d.Info()
		if err != nil {
			continue // gone since the listing
		}
		out = append(out, Entry{Name: d.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, nil
}

// Remove removes a local file; a missing one is not an error.
func (c *LocalConn) Remove(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Stat returns a local file's size.
func (c *LocalConn) Stat(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// MkdirAll creates a local directory.
func (c *LocalConn) MkdirAll(p string, mode uint32) error {
	if err := os.MkdirAll(p, fs.FileMode(mode)); err != nil {
		return err
	}
	return os.Chmod(p, fs.FileMode(mode))
}

// Download copies a local file from offset.
func (c *LocalConn) Download(ctx context.Context, p string, w io.WriterAt, offset int64, progress func(int64)) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.Copy(&progressWriter{w: io.NewOffsetWriter(w, offset), progress: progress}, &ctxReader{ctx: ctx, r: io.NewSectionReader(f, offset, 1<<62)})
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", p, err)
	}
	return n, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// Close does nothing: this machine stays.
func (c *LocalConn) Close() error { return nil }
