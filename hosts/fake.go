package hosts

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
	"time"
)

// FakeFS is the files of fake hosts; hosts that share one share a datastore.
type FakeFS struct {
	mu    sync.Mutex
	files map[string][]byte
	mtime map[string]time.Time
	// SlowCreate makes CreateExclusive leave the new file empty this long
	// before its content lands, as over a real network.
	SlowCreate time.Duration
}

// NewFakeFS returns an empty filesystem.
func NewFakeFS() *FakeFS {
	return &FakeFS{files: map[string][]byte{}, mtime: map[string]time.Time{}}
}

// Touch sets a file's modification time.
func (f *FakeFS) Touch(p string, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mtime[p] = t
}

// Get returns a file's content and whether it exists.
func (f *FakeFS) Get(p string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[p]
	return bytes.Clone(b), ok
}

// Put sets a file's content.
func (f *FakeFS) Put(p string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[p] = bytes.Clone(b)
	f.mtime[p] = time.Now()
}

// create puts a new file, unless one is there.
func (f *FakeFS) create(p string, b []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.files[p]; ok {
		return false
	}
	f.files[p], f.mtime[p] = bytes.Clone(b), time.Now()
	return true
}

// list returns the files directly in dir.
func (f *FakeFS) list(dir string) []Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Entry
	for p, b := range f.files {
		if path.Dir(p) == path.Clean(dir) {
			out = append(out, Entry{Name: path.Base(p), Size: int64(len(b)), ModTime: f.mtime[p]})
		}
	}
	return out
}

// remove deletes a file.
func (f *FakeFS) remove(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files, p)
	delete(f.mtime, p)
}

// Fake is an in-process host for unit tests: its files live in a FakeFS,
// and its commands go to a handler the test provides. It records every
// command.
type Fake struct {
	HostName string
	// Handler answers a command: called with stdin nil when the command
	// starts (for Run, with its whole stdin), then, for a started process,
	// once per chunk written to its stdin.
	Handler func(argv []string, stdin []byte) (stdout []byte, err error)
	FS      *FakeFS

	mu    sync.Mutex
	calls [][]string
}

// NewFake returns a fake host with a filesystem of its own.
func NewFake(name string, handler func(argv []string, stdin []byte) ([]byte, error)) *Fake {
	return &Fake{HostName: name, Handler: handler, FS: NewFakeFS()}
}

// Name is the host's name.
func (f *Fake) Name() string { return f.HostName }

func (f *Fake) record(argv []string) {
	f.mu.Lock()
	f.calls = append(f.calls, argv)
	f.mu.Unlock()
}

// Run records argv and asks the handler.
func (f *Fake) Run(_ context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	var in []byte
	if stdin != nil {
		in, _ = io.ReadAll(stdin)
	}
	f.record(argv)
	if f.Handler == nil {
		return nil, &RunError{Host: f.HostName, Argv: argv, Status: 127, Stderr: "no handler"}
	}
	return f.Handler(argv, in)
}

// ReadFile reads a fake file.
func (f *Fake) ReadFile(p string) ([]byte, error) {
	b, ok := f.FS.Get(p)
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return b, nil
}

// WriteFile writes a fake file.
func (f *Fake) WriteFile(p string, r io.Reader, _ uint32) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	f.FS.Put(p, b)
	return nil
}

// Stat returns a fake file's size.
func (f *Fake) Stat(p string) (int64, error) {
	b, err := f.ReadFile(p)
	return int64(len(b)), err
}

// CreateExclusive creates a fake file that must not exist yet.
func (f *Fake) CreateExclusive(p string, data []byte, _ uint32) error {
	first := data
	if f.FS.SlowCreate > 0 {
		first = nil
	}
	if !f.FS.create(p, first) {
		return &fs.PathError{Op: "create", Path: p, Err: fs.ErrExist}
	}
	if f.FS.SlowCreate > 0 {
		time.Sleep(f.FS.SlowCreate)
		f.FS.Put(p, data)
	}
	return nil
}

// ReadDir lists the fake files in a directory.
func (f *Fake) ReadDir(p string) ([]Entry, error) { return f.FS.list(p), nil }

// Remove removes a fake file.
func (f *Fake) Remove(p string) error { f.FS.remove(p); return nil }

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

// fakeProcess runs the handler when it starts and once per chunk written
// to it: enough for the check-and-clock exchange.
type fakeProcess struct {
	in  *io.PipeWriter
	out *io.PipeReader
	err chan error
}

func (p *fakeProcess) Stdin() io.WriteCloser { return p.in }
func (p *fakeProcess) Stdout() io.Reader     { return p.out }
func (p *fakeProcess) Wait() error           { return <-p.err }

// Start runs argv with the handler speaking first, then answering each
// chunk of input.
func (f *Fake) Start(_ context.Context, argv []string) (Process, error) {
	f.record(argv)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &fakeProcess{in: inW, out: outR, err: make(chan error, 1)}
	go func() {
		var err error
		answer := func(in []byte) bool {
			if f.Handler == nil {
				return true
			}
			var out []byte
			if out, err = f.Handler(argv, in); err != nil {
				return false
			}
			if len(out) > 0 {
				if _, err = outW.Write(out); err != nil {
					return false
				}
			}
			return true
		}
		if answer(nil) {
			buf := make([]byte, 4096)
			for {
				n, rerr := inR.Read(buf)
				if n > 0 && !answer(buf[:n]) {
					break
				}
				if rerr != nil {
					break
				}
			}
		}
		inR.Close()
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
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = Quote(c)
	}
	return out
}
