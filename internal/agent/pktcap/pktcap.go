//go:build linux

package pktcap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/agent/capture"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/pcapfile"
)

// Spec is one pktcap-uw session, as the agent is told to run it.
type Spec struct {
	Name string   // file stem: host.port.points
	File string   // the output path; Argv writes it (-o)
	Argv []string // the whole command line, argv[0] the tool
	// Start and Stop bound the session: pktcap-uw is started at Start (at
	// once when zero) and stopped at Stop. With Pending, it waits for Begin;
	// Stop is then its hard deadline.
	Start, Stop time.Time
	Pending     bool
	MaxPackets  uint64 // also given to pktcap-uw as -c; here to tell its own exit apart
	MaxBytes    uint64 // enforced by watching the file grow (see poll)
	MinFree     uint64 // free space to keep on the file's filesystem
	Note        string // what the command line could not honour, for the status
	// Grace is how long pktcap-uw has to flush and exit after SIGINT before
	// SIGTERM (and as long again before SIGKILL); 0: 5 s.
	Grace time.Duration
	// Host, Case and Version say whose capture it is.
	Host, Case, Version string
}

// pollInterval is how often the file's growth, free space and the stop
// time are looked at while pktcap-uw runs.
const pollInterval = 200 * time.Millisecond

// Capture is an armed or running pktcap-uw session.
type Capture struct {
	spec Spec
	capture.Window
	wake chan struct{}

	mu     sync.Mutex
	status agentproto.CaptureStatus
}

// Arm checks that the tool exists and that the file is not there yet, so
// that a bad host fails before any capture starts; pktcap-uw itself checks
// its arguments only when it runs.
func Arm(s Spec) (*Capture, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("no command line")
	}
	tool, err := exec.LookPath(s.Argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Argv[0], err)
	}
	s.Argv = append([]string{tool}, s.Argv[1:]...)
	if _, err := os.Lstat(s.File); err == nil {
		return nil, fmt.Errorf("%s already exists: a capture file is never overwritten", s.File)
	}
	if err := unix.Access(filepath.Dir(s.File), unix.W_OK); err != nil {
		return nil, fmt.Errorf("cannot write into %s: %w", filepath.Dir(s.File), err)
	}
	if s.Grace <= 0 {
		s.Grace = 5 * time.Second
	}
	c := &Capture{spec: s, wake: make(chan struct{}, 1)}
	c.SetWindow(s.Start, s.Stop, s.Pending)
	c.status = agentproto.CaptureStatus{Name: s.Name, File: s.File, State: agentproto.CaptureArmed, Stop: s.Stop,
		Command: strings.Join(append([]string{filepath.Base(tool)}, s.Argv[1:]...), " "), Note: s.Note}
	if !s.Pending {
		c.status.Start = s.Start
	}
	return c, nil
}

// Begin opens a pending session's window at start, for duration (ending no
// later than its deadline). It returns false if it already began.
func (c *Capture) Begin(start time.Time, duration time.Duration) bool {
	if !c.BeginWindow(start, duration) {
		return false
	}
	c.mu.Lock()
	c.status.Start = start
	c.mu.Unlock()
	c.poke()
	return true
}

// RequestStop moves the end earlier (never later): to at, or now when
// zero, and wakes Run to act on it.
func (c *Capture) RequestStop(at time.Time, reason agentproto.StopReason) {
	c.Window.RequestStop(at, reason)
	c.poke()
}

// Trigger stops the session at stop: a trigger fired at at. (pktcap-uw
// writes its own file: there is no ring to trim here yet.)
func (c *Capture) Trigger(at, stop time.Time) { c.RequestStop(stop, agentproto.StopTrigger) }

func (c *Capture) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Status returns a snapshot of the session's progress.
func (c *Capture) Status() agentproto.CaptureStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Stop = time.Unix(0, c.StopNanos())
	return st
}

func (c *Capture) update(f func(*agentproto.CaptureStatus)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// Run waits for the start, runs pktcap-uw until the end, a limit or a stop
// request, stops it by its PID and returns the final status, with the
// file's packets counted and hashed.
func (c *Capture) Run(ctx context.Context) agentproto.CaptureStatus {
	if !c.waitStart(ctx) {
		return c.never()
	}
	cmd, out, exited, err := c.spawn()
	if err != nil {
		return c.fail(fmt.Errorf("start %s: %w", filepath.Base(c.spec.Argv[0]), err))
	}
	started := time.Now()
	c.update(func(s *agentproto.CaptureStatus) { s.State, s.Start = agentproto.CaptureCapturing, started })

	f := &follower{path: c.spec.File, h: agentproto.NewCRC32C()}
	defer f.close()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var (
		exitErr      error
		gone         bool
		signalled    bool
		lastSize     int64
		lastPoll     = started
		reason       agentproto.StopReason
		escalateAt   time.Time
		escalateStep int
	)
	for !gone {
		now := time.Now()
		if !signalled {
			if ctx.Err() != nil {
				c.RequestStop(now, agentproto.StopSignal)
			}
			if now.UnixNano() >= c.StopNanos() {
				signalled, escalateAt = true, now.Add(c.spec.Grace)
				cmd.Process.Signal(syscall.SIGINT)
			}
		} else if now.After(escalateAt) && escalateStep < 2 {
			escalateStep++
			escalateAt = now.Add(c.spec.Grace)
			if escalateStep == 1 {
				cmd.Process.Signal(syscall.SIGTERM)
			} else {
				cmd.Process.Kill()
			}
		}
		wait := pollInterval
		if !signalled {
			wait = min(wait, time.Duration(c.StopNanos()-now.UnixNano()))
		}
		timer := time.NewTimer(max(wait, time.Millisecond))
		cancelled := ctx.Done()
		if signalled {
			cancelled = nil // heard already: wait for the exit, not spin
		}
		select {
		case exitErr = <-exited:
			gone = true
		case <-c.wake:
		case <-cancelled:
		case <-tick.C:
		case <-timer.C:
		}
		timer.Stop()
		f.follow()
		size := f.offset
		c.update(func(s *agentproto.CaptureStatus) { s.Packets, s.Bytes, s.Size = f.count.Packets, f.count.Bytes, size })
		if !signalled && !gone {
			since := time.Since(lastPoll)
			if r := c.guard(size, size-lastSize, since); r != "" {
				c.RequestStop(time.Now(), r)
			}
			lastSize, lastPoll = size, time.Now()
		}
	}
	stoppedAt := time.Now()
	f.finish()
	// pktcap-uw creates its file world-readable; a capture holds traffic.
	_ = os.Chmod(c.spec.File, 0o640)

	reason = c.Reason()
	var runErr error
	switch {
	case signalled && escalateStep == 2:
		runErr = fmt.Errorf("pktcap-uw did not exit on SIGINT nor SIGTERM and was killed; its file may lack its last packets: %s", tail(out))
	case !signalled && c.spec.MaxPackets > 0 && exitErr == nil:
		reason = agentproto.StopPacketCount
	case !signalled:
		runErr = fmt.Errorf("pktcap-uw ended by itself (%v): %s", exitStatus(exitErr), tail(out))
	}
	if f.err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("read %s: %w", c.spec.File, f.err))
	} else if f.count.Err() != nil {
		runErr = errors.Join(runErr, fmt.Errorf("%s: %w", c.spec.File, f.count.Err()))
	}
	dumped, dropped, haveDrops := parseSummary(out.String())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Packets, c.status.Bytes, c.status.Size = f.count.Packets, f.count.Bytes, f.offset
	c.status.Received, c.status.Drops = f.count.Packets, 0
	if haveDrops {
		c.status.Received, c.status.Drops = dumped+dropped, dropped
	}
	c.status.StoppedAt, c.status.StopReason, c.status.State = stoppedAt, reason, agentproto.CaptureStopped
	if f.offset > 0 && f.err == nil {
		c.status.CRC32C = agentproto.CRC32CHex(f.h)
	}
	if runErr != nil {
		c.status.State, c.status.StopReason, c.status.Error = agentproto.CaptureFailed, agentproto.StopError, runErr.Error()
	}
	st := c.status
	st.Stop = time.Unix(0, c.StopNanos())
	return st
}

// waitStart sleeps until the start instant, or returns false when the
// session ends (a stop request, a signal) before it starts.
func (c *Capture) waitStart(ctx context.Context) bool {
	for {
		now := time.Now().UnixNano()
		start, stop := c.StartNanos(), c.StopNanos()
		if stop <= now || (start != math.MaxInt64 && stop <= start) {
			return false
		}
		if ctx.Err() != nil {
			c.RequestStop(time.Now(), agentproto.StopSignal)
			return false
		}
		if start <= now {
			return true
		}
		t := time.NewTimer(time.Duration(min(start, stop) - now))
		select {
		case <-t.C:
		case <-c.wake:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// spawn starts pktcap-uw in its own process group, so that a terminal's ^C
// reaches only the agent, which then stops it in order. Where the kernel
// knows it, pktcap-uw also gets SIGINT should the agent die; ESXi's
// kernel may refuse that, and then it is started without.
func (c *Capture) spawn() (*exec.Cmd, *capped, <-chan error, error) {
	out := &capped{max: 64 << 10}
	start := func(deathSignal bool) (*exec.Cmd, error) {
		cmd := exec.Command(c.spec.Argv[0], c.spec.Argv[1:]...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if deathSignal {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
		}
		return cmd, cmd.Start()
	}
	cmd, err := start(true)
	if err != nil && !errors.Is(err, exec.ErrNotFound) && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) {
		cmd, err = start(false)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, out, exited, nil
}

// guard says when to stop for max_bytes or min_free. pktcap-uw writes on
// its own, so the file is watched: it stops once the file, grown at the
// rate seen, could pass max_bytes (or free space fall under min_free)
// before the next look.
func (c *Capture) guard(size, grown int64, since time.Duration) agentproto.StopReason {
	margin := uint64(2*float64(max(grown, 0))/max(since.Seconds(), 0.001)*pollInterval.Seconds()) + 64<<10
	if m := c.spec.MaxBytes; m > 0 && uint64(size)+margin >= m {
		return agentproto.StopMaxBytes
	}
	if c.spec.MinFree > 0 {
		var st unix.Statfs_t
		if unix.Statfs(filepath.Dir(c.spec.File), &st) == nil {
			if free := st.Bavail * uint64(st.Bsize); free < c.spec.MinFree+margin+1<<20 {
				return agentproto.StopMinFree
			}
		}
	}
	return ""
}

// never records a session that ended before it started (disarmed): no
// pktcap-uw ran, and no file is left, which would only be in the way of
// the next start of the case.
func (c *Capture) never() agentproto.CaptureStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.StoppedAt, c.status.StopReason, c.status.State = time.Now(), agentproto.StopDisarmed, agentproto.CaptureStopped
	c.status.Note = strings.TrimPrefix(c.status.Note+"; stopped before its window began: nothing captured, no file kept", "; ")
	st := c.status
	st.Stop = time.Unix(0, c.StopNanos())
	return st
}

func (c *Capture) fail(err error) agentproto.CaptureStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.State, c.status.StopReason, c.status.Error, c.status.StoppedAt = agentproto.CaptureFailed, agentproto.StopError, err.Error(), time.Now()
	st := c.status
	st.Stop = time.Unix(0, c.StopNanos())
	return st
}

// follower reads a file as it grows, counting its packets and hashing it.
type follower struct {
	path   string
	f      *os.File
	offset int64
	h      hash.Hash32
	count  pcapfile.Counter
	buf    []byte
	err    error
}

func (f *follower) follow() {
	if f.err != nil {
		return
	}
	if f.f == nil {
		var err error
		if f.f, err = os.Open(f.path); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				f.err = err
			}
			return
		}
		f.buf = make([]byte, 256<<10)
	}
	for {
		n, err := f.f.Read(f.buf)
		if n > 0 {
			f.h.Write(f.buf[:n])
			f.count.Feed(f.buf[:n])
			f.offset += int64(n)
		}
		if err == io.EOF || n == 0 {
			return
		}
		if err != nil {
			f.err = err
			return
		}
	}
}

// finish reads the file to its end once pktcap-uw is gone. Should the
// file have been rewritten under us (smaller than what was read), it is
// read again from the start.
func (f *follower) finish() {
	f.follow()
	if f.f == nil {
		if f.err == nil {
			f.err = errors.New("pktcap-uw wrote no file")
		}
		return
	}
	if st, err := f.f.Stat(); err == nil && st.Size() != f.offset {
		f.f.Close()
		*f = follower{path: f.path, h: agentproto.NewCRC32C()}
		f.follow()
	}
}

func (f *follower) close() {
	if f.f != nil {
		f.f.Close()
	}
}

// capped keeps the first max bytes written to it: pktcap-uw's messages.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// tail is the last lines of pktcap-uw's output, for an error message.
func tail(c *capped) string {
	lines := strings.Split(strings.TrimSpace(c.String()), "\n")
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	s := strings.Join(lines, "; ")
	if s == "" {
		return "no output"
	}
	return s
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// summary is pktcap-uw's last words: "Dumped 12 packet to file F, dropped
// 0 packets."
var summary = regexp.MustCompile(`Dumped (\d+) packets? to file .*, dropped (\d+) packets?`)

func parseSummary(out string) (dumped, dropped uint64, ok bool) {
	m := summary.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0, 0, false
	}
	last := m[len(m)-1]
	d, err1 := strconv.ParseUint(last[1], 10, 64)
	x, err2 := strconv.ParseUint(last[2], 10, 64)
	return d, x, err1 == nil && err2 == nil
}
