package hosts

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sync"
)

// Fake is an in-process host for unit tests: files live in a map, and
// commands go to a handler the test provides. It records every command.
type Fake struct {
	HostName string
	Handler  func(argv []string, stdin []byte) (stdout []byte, err error)

	mu    sync.Mutex
	Files map[string][]byte
	Calls [][]string
}

// NewFake returns a fake host with no files.
func NewFake(name string, handler func(argv []string, stdin []byte) ([]byte, error)) *Fake {
	return &Fake{HostName: name, Handler: handler, Files: map[string][]byte{}}
}

// Name is the host's name.
func (f *Fake) Name() string { return f.HostName }

// Run records argv and asks the handler.
func (f *Fake) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	var in []byte
	if stdin != nil {
		in, _ = io.ReadAll(stdin)
	}
	f.mu.Lock()
	f.Calls = append(f.Calls, argv)
	f.mu.Unlock()
	if f.Handler == nil {
		return nil, &RunError{Host: f.HostName, Argv: argv, Status: 127, Stderr: "no handler"}
	}
	return f.Handler(argv, in)
}

// ReadFile reads a fake file.
func (f *Fake) ReadFile(p string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.Files[p]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return bytes.Clone(b), nil
}

// WriteFile writes a fake file.
func (f *Fake) WriteFile(p string, r io.Reader, _ uint32) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.Files[p] = b
	f.mu.Unlock()
	return nil
}

// Stat returns a fake file's size.
func (f *Fake) Stat(p string) (int64, error) {
	b, err := f.ReadFile(p)
	return int64(len(b)), err
}

// MkdirAll does nothing: fake directories need no creating.
func (f *Fake) MkdirAll(string, uint32) error { return nil }

// Download copies a fake file from offset.
func (f *Fake) Download(_ context.Context, p string, w io.WriterAt, offset int64, progress func(int64)) (int64, error) {
	b, err := f.ReadFile(p)
	if err != nil {
		return 0, err
	}
	if offset > int64(len(b)) {
		return 0, fmt.Errorf("offset %d past the end of %s", offset, p)
	}
	n, err := w.WriteAt(b[offset:], offset)
	if progress != nil {
		progress(int64(n))
	}
	return int64(n), err
}

// fakeProcess runs the handler once per line written to it: enough for
// request/answer exchanges such as the clock.
type fakeProcess struct {
	in  *io.PipeWriter
	out *io.PipeReader
	err chan error
}

func (p *fakeProcess) Stdin() io.WriteCloser { return p.in }
func (p *fakeProcess) Stdout() io.Reader     { return p.out }
func (p *fakeProcess) Wait() error           { return <-p.err }

// Start runs argv with the handler answering each input line.
func (f *Fake) Start(_ context.Context, argv []string) (Process, error) {
	f.mu.Lock()
	f.Calls = append(f.Calls, argv)
	f.mu.Unlock()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &fakeProcess{in: inW, out: outR, err: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		var err error
		for {
			n, rerr := inR.Read(buf)
			if n > 0 && f.Handler != nil {
				var out []byte
				if out, err = f.Handler(argv, buf[:n]); err != nil {
					break
				}
				if _, err = outW.Write(out); err != nil {
					break
				}
			}
			if rerr != nil {
				break
			}
		}
		outW.Close()
		p.err <- err
	}()
	return p, nil
}

// Close does nothing.
func (f *Fake) Close() error { return nil }

// Commands returns the recorded commands as quoted lines.
func (f *Fake) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.Calls))
	for i, c := range f.Calls {
		out[i] = Quote(c)
	}
	return out
}
