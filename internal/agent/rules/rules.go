// Package rules watches a host for the trigger rules that need no packet:
// a command that succeeds (run every so often) and a new line of a log
// file that matches. (Packet rules are the capture engine's; drop rules
// read its counters.) Each rule fires at most once; the agent keeps the
// earliest trigger.
package rules

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/casecap/casecap/internal/agent/hostclock"
	"github.com/casecap/casecap/internal/agentproto"
)

// Fire is called (from a rule's goroutine) when a rule fires: at is when
// the host saw it (host clock), note what it saw.
type Fire func(r agentproto.Rule, at time.Time, note string)

// LogPoll is how often a log rule looks for new lines.
const LogPoll = 100 * time.Millisecond

// Set is the command and log rules of a job, checked and ready to start.
type Set struct {
	starts []func(ctx context.Context, fire Fire)
	files  []*os.File
}

// Prepare checks the command and log rules among rs, so that a rule that
// cannot work fails the arming: a log file must exist (its new lines are
// those written from now on) and its pattern compile.
func Prepare(rs []agentproto.Rule) (*Set, error) {
	s := &Set{}
	var errs []error
	for _, r := range rs {
		switch {
		case r.Command != "":
			every := r.Every
			if every <= 0 {
				every = 2 * time.Second
			}
			s.starts = append(s.starts, func(ctx context.Context, fire Fire) { go command(ctx, r, every, fire) })
		case r.LogFile != "":
			re, err := regexp.Compile(r.LogMatch)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.ID, err))
				continue
			}
			f, err := os.Open(r.LogFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("log rule: %w", err))
				continue
			}
			s.files = append(s.files, f)
			end, err := f.Seek(0, io.SeekEnd)
			if err != nil {
				errs = append(errs, fmt.Errorf("log rule: %s: %w", r.LogFile, err))
				continue
			}
			s.starts = append(s.starts, func(ctx context.Context, fire Fire) {
				// New lines are those written from the window's begin on.
				if at, err := f.Seek(0, io.SeekEnd); err == nil {
					end = at
				}
				go follow(ctx, r, re, f, end, fire)
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Start runs the rules until ctx ends.
func (s *Set) Start(ctx context.Context, fire Fire) {
	for _, st := range s.starts {
		st(ctx, fire)
	}
	s.starts, s.files = nil, nil // the followers own their files now
}

// Close releases a Set that was not started.
func (s *Set) Close() {
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
}

// command runs the rule's command with /bin/sh every `every` (a run that
// takes longer delays the next), and fires on its first exit status 0, at
// the instant the run started: what it found was there by then.
func command(ctx context.Context, r agentproto.Rule, every time.Duration, fire Fire) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		at := hostclock.Now()
		rctx, cancel := context.WithTimeout(ctx, max(every, 10*time.Second))
		cmd := exec.CommandContext(rctx, "/bin/sh", "-c", r.Command)
		// Its own process group, killed whole at the timeout: a pipeline
		// or a background child would otherwise hold the output open, and
		// the rule would hang.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			fire(r, at, firstLine(out))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// follow reads the lines appended to a log file from offset on, and fires
// on the first that matches. A file that shrinks or is replaced (rotated)
// is read again from its start.
func follow(ctx context.Context, r agentproto.Rule, re *regexp.Regexp, f *os.File, offset int64, fire Fire) {
	defer func() { f.Close() }()
	var partial []byte
	t := time.NewTicker(LogPoll)
	defer t.Stop()
	br := bufio.NewReader(f)
	for {
		for {
			line, err := br.ReadBytes('\n')
			offset += int64(len(line))
			if err != nil { // no full line yet: keep what there is
				partial = append(partial, line...)
				break
			}
			if len(partial) > 0 {
				line, partial = append(partial, line...), nil
			}
			line = bytes.TrimRight(line, "\r\n") // so that a pattern may end in $
			if re.Match(line) {
				fire(r, hostclock.Now(), strings.TrimSpace(string(line)))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Rotated or truncated: start over on the file now at the path.
		cur, err := os.Stat(r.LogFile)
		if err != nil {
			continue
		}
		if st, err := f.Stat(); err == nil && (!os.SameFile(st, cur) || cur.Size() < offset) {
			nf, err := os.Open(r.LogFile)
			if err != nil {
				continue
			}
			f.Close()
			f, offset, partial = nf, 0, nil
			br.Reset(f)
		}
	}
}
