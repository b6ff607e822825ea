//go:build linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/agent/ring"
	"github.com/casecap/casecap/internal/agent/segments"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans/filter"
	"github.com/casecap/casecap/plans/filter/bpfgen"

	"github.com/casecap/casecap/internal/agent/hostclock"
)

// Spec is one capture, as the agent is told to run it.
type Spec struct {
	Name      string // file stem: host.port.points; also the interface block's name
	File      string // output path
	Host      string
	Case      string
	Interface string // Linux interface, or "any"
	Direction bpfgen.Direction
	Filter    filter.Filter
	Exclude   []bpfgen.Conn // TCP connections to leave out (casecap's own SSH sessions)
	Snaplen   int           // 0: whole packets
	// Start and Stop bound the window: packets stamped in [Start, Stop) are
	// kept. A zero Start starts at once. With Pending, the capture is armed
	// but waits for Begin; Stop is then its hard deadline.
	Start, Stop time.Time
	Pending     bool
	MaxPackets  uint64
	MaxBytes    uint64       // file size limit
	MinFree     uint64       // free space to keep on the file's filesystem
	Tcpdump     string       // tcpdump to compile a raw expr with ("" = none on this host)
	Buffer      ring.Options // the socket's ring
	Version     string       // of the agent, for the section header
	Note        string       // what the capture could not honour, for its status
	// Ring, with RingDir for its segment files, keeps only the latest
	// packets (package segments) and trims them into File at the end.
	Ring    *agentproto.Ring
	RingDir string
	// Watch are the packet rules to fire a trigger on: OnPacket is called
	// (from another goroutine) with the first packet inside the window
	// that the capture's filter and a rule's both select.
	Watch    []PacketWatch
	OnPacket func(rule string, p agentproto.TriggerPacket)
	// Source, when set, is where the packets come from instead of an
	// AF_PACKET socket on Interface: pktcap-uw's output stream on ESXi,
	// filtered already (Filter is then not compiled; SourceFilter is what
	// the file's interface block records). Packet rules are then checked
	// in the agent, on each packet the capture keeps.
	Source       Source
	SourceFilter string
	// Live, when set, takes the capture's pcapng stream instead of File
	// (casecap live): no file is written, the stream is flushed at least
	// every 100 ms, and Live must never block (it drops instead).
	Live io.Writer
}

// Source is a stream of packets in the order they were stamped, as an
// AF_PACKET ring gives them.
type Source interface {
	// Next returns the next packet, ring.ErrTimeout when none came within
	// timeout, or another error at the stream's end.
	Next(timeout time.Duration) (ring.Packet, error)
	// Pending says whether packets may still be on their way (the drain
	// waits for them).
	Pending() bool
	// Gone says whether the stream ended by itself.
	Gone() bool
	// Stats are the packets the source saw and dropped so far.
	Stats() (received, dropped uint64, err error)
	// End stops the stream and returns its final counts.
	End() (received, dropped uint64)
}

// socket is an AF_PACKET ring as a Source.
type socket struct{ *ring.Ring }

func (s socket) End() (received, dropped uint64) {
	received, dropped, _ = s.Stats()
	s.Close()
	return received, dropped
}

// PacketWatch is a packet rule a capture watches for.
type PacketWatch struct {
	ID     string
	Filter filter.Filter
}

// counters are the loop goroutine's own.
type counters struct {
	packets, bytes uint64
	first, last    int64
}

// Capture is an armed or running capture.
type Capture struct {
	spec Spec
	ring Source
	file *os.File
	w    *fileWriter

	Window
	// Published counters, for Status from other goroutines; the loop keeps
	// its own (n) and publishes them every clockEvery packets and at the end:
	// an atomic read-modify-write per packet costs more than the rest of
	// the packet's bookkeeping.
	packets atomic.Uint64
	bytes   atomic.Uint64
	first   atomic.Int64 // unix ns of the first and last packet written
	last    atomic.Int64
	size    atomic.Int64 // file size, buffered bytes included
	n       counters

	mu     sync.Mutex
	status agentproto.CaptureStatus

	// A ring capture writes segments (c.w writes the current one, segFile)
	// and keeps the file, c.file, for the end; trimFrom is where a trigger
	// says its file starts (math.MaxInt64 until one fires).
	seg      *segments.Ring
	segFile  *os.File
	hdr      header
	cooked   bool
	trimFrom atomic.Int64
	watchers []*watcher
	// vmWatches are packet rules checked here, on a Source's packets;
	// untagged is checkRules' scratch.
	vmWatches []*vmWatch
	untagged  []byte
}

// Program compiles the spec's filter: in Go for structured filters, with the
// host's tcpdump for a raw expr. It returns the program and its expression.
func Program(ctx context.Context, s Spec, cooked bool) ([]bpf.RawInstruction, string, error) {
	opt := bpfgen.Options{Direction: s.Direction, Snaplen: s.Snaplen, Exclude: s.Exclude}
	if cooked {
		opt.Layout = bpfgen.Cooked
	}
	expr := bpfgen.Expression(s.Filter, opt)
	if s.Filter.Expr == "" {
		prog, err := bpfgen.Build(s.Filter, opt)
		if err != nil {
			return nil, expr, err
		}
		raw, err := bpf.Assemble(prog)
		return raw, expr, err
	}
	if cooked {
		return nil, expr, errors.New("a raw expr is not supported on interface any or interfaces without Ethernet headers; use structured filter keys")
	}
	if s.Tcpdump == "" {
		return nil, expr, errors.New("the filter has a raw expr, which needs tcpdump on the host to compile it; install tcpdump or use structured filter keys")
	}
	raw, err := bpfgen.Compile(ctx, s.Tcpdump, s.Interface, s.Snaplen, expr)
	return raw, expr, err
}

// Arm compiles the filter, creates the file with its headers and opens the
// capture socket, so that Run only has to read packets.
func Arm(ctx context.Context, s Spec) (c *Capture, err error) {
	var cooked bool
	var prog []bpf.RawInstruction
	expr := s.SourceFilter
	if s.Source == nil {
		if cooked, err = ring.Cooked(s.Interface); err != nil {
			return nil, err
		}
		if prog, expr, err = Program(ctx, s, cooked); err != nil {
			return nil, fmt.Errorf("filter %q: %w", expr, err)
		}
	}
	if s.Start.IsZero() && !s.Pending {
		s.Start = hostclock.Now() // "at once": from arming on
	}
	c = &Capture{spec: s}
	c.SetWindow(s.Start, s.Stop, s.Pending)
	c.status = agentproto.CaptureStatus{Name: s.Name, File: s.File, State: agentproto.CaptureArmed, Filter: expr, Stop: s.Stop, Note: s.Note}
	if !s.Pending {
		c.status.Start = s.Start
	}
	defer func() {
		if err != nil {
			c.abandon()
		}
	}()
	h := header{Name: s.Name, Host: s.Host, Case: s.Case, Interface: s.Interface, Filter: expr, Version: s.Version, Direction: s.Direction, Snaplen: s.Snaplen}
	c.hdr, c.cooked = h, cooked
	c.trimFrom.Store(math.MaxInt64)
	var out io.Writer = s.Live
	if s.Live == nil {
		if c.file, err = os.OpenFile(s.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640); err != nil {
			return nil, fmt.Errorf("create %s: %w", s.File, err)
		}
		out = c.file
	}
	if r := s.Ring; r != nil && s.Live == nil {
		// The file holds its headers only until the end (valid pcapng,
		// should the agent die: its packets are then in the segments,
		// RingDir); packets go to segments.
		hw, err := newFileWriter(c.file, h, cooked)
		if err == nil {
			err = hw.flush()
		}
		if err != nil {
			return nil, err
		}
		c.seg, err = segments.New(segments.Options{Dir: s.RingDir, Keep: r.Keep, KeepBytes: r.KeepBytes, Segment: r.Segment, SegmentBytes: r.SegmentBytes})
		if err != nil {
			return nil, err
		}
		if c.segFile, err = c.seg.Open(); err != nil {
			return nil, err
		}
		out = c.segFile
	}
	newW := newFileWriter
	if c.seg != nil {
		newW = newSegmentWriter
	}
	if c.w, err = newW(out, h, cooked); err != nil {
		return nil, err
	}
	c.size.Store(c.w.size())
	if s.Source != nil {
		c.ring = s.Source
		for _, w := range s.Watch {
			vw, err := newVMWatch(w)
			if err != nil {
				return nil, fmt.Errorf("packet rule %s: %w", w.ID, err)
			}
			c.vmWatches = append(c.vmWatches, vw)
		}
		return c, nil
	}
	ropt := s.Buffer
	ropt.Interface, ropt.Program = s.Interface, prog
	r, err := ring.Open(ropt)
	if err != nil {
		return nil, err
	}
	c.ring = socket{r}
	for _, w := range s.Watch {
		wt, err := c.armWatch(ctx, w, prog, cooked)
		if err != nil {
			return nil, fmt.Errorf("packet rule %s: %w", w.ID, err)
		}
		c.watchers = append(c.watchers, wt)
	}
	return c, nil
}

// abandon undoes a failed Arm: nothing half-made is left behind.
func (c *Capture) abandon() {
	if c.ring != nil {
		c.ring.End()
	}
	c.stopWatches()
	if c.seg != nil {
		if c.segFile != nil {
			c.segFile.Close()
		}
		c.seg.Discard()
	}
	if c.file != nil {
		c.file.Close()
		os.Remove(c.spec.File)
	}
}

// Status returns a snapshot of the capture's progress.
func (c *Capture) Status() agentproto.CaptureStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	c.fill(&st)
	if c.w != nil {
		st.Size = c.size.Load()
	}
	if c.seg != nil && !st.State.Ended() {
		rs := c.seg.Status(st.Size)
		st.Ring, st.Size = &rs, rs.Bytes
	}
	return st
}

// publish makes the loop's counters visible to Status.
func (c *Capture) publish() {
	c.packets.Store(c.n.packets)
	c.bytes.Store(c.n.bytes)
	c.first.Store(c.n.first)
	c.last.Store(c.n.last)
	c.size.Store(c.w.size())
}

// fill copies the published counters into a status.
func (c *Capture) fill(st *agentproto.CaptureStatus) {
	st.Packets, st.Bytes = c.packets.Load(), c.bytes.Load()
	if t := c.first.Load(); t != 0 {
		st.FirstPacket, st.LastPacket = time.Unix(0, t), time.Unix(0, c.last.Load())
	}
	st.Stop = time.Unix(0, c.stopAt.Load())
}

// Begin opens a pending capture's window at start, for duration (ending no
// later than its deadline). It returns false if the capture already began.
func (c *Capture) Begin(start time.Time, duration time.Duration) bool {
	if !c.BeginWindow(start, duration) {
		return false
	}
	c.mu.Lock()
	c.status.Start = start
	c.mu.Unlock()
	return true
}

// guardInterval is how often free space and kernel counters are checked.
const guardInterval = 200 * time.Millisecond

// Run reads packets until the window ends, a limit is reached, ctx is
// cancelled (a signal) or a stop is requested, then closes the file. It
// returns the final status; the file is valid pcapng whatever happened.
func (c *Capture) Run(ctx context.Context) agentproto.CaptureStatus {
	reason, runErr := c.loop(ctx)
	return c.finish(reason, runErr)
}

// reorderSlack bounds how far out of timestamp order packets from different
// CPUs can reach the ring.
const reorderSlack = 2 * time.Millisecond

// clockEvery and stampEvery say when the loop does its periodic work
// (stop checks, free-space guard, published counters): after clockEvery
// packets, or once packets are stamped stampEvery after the last time, or
// when the ring is quiet. Packets carry the kernel's timestamps, so a busy
// loop never needs to read the clock itself.
const (
	clockEvery = 4096
	stampEvery = 50 * time.Millisecond
)

func (c *Capture) loop(ctx context.Context) (agentproto.StopReason, error) {
	var (
		lastGuard   time.Time
		lastWritten int64
		inWindow    bool
		sinceClock  = clockEvery
		wait        time.Duration
		lastStamp   int64
	)
	for {
		stopAt, start := c.stopAt.Load(), c.startAt.Load()
		if sinceClock >= clockEvery {
			sinceClock = 0
			if ctx.Err() != nil {
				c.RequestStop(hostclock.Now(), agentproto.StopSignal)
				stopAt = c.stopAt.Load()
			}
			now := hostclock.Now()
			if now.UnixNano() >= stopAt {
				return c.drain(stopAt)
			}
			wait = max(min(100*time.Millisecond, time.Duration(stopAt-now.UnixNano())), time.Millisecond)
			if !inWindow && now.UnixNano() >= start {
				inWindow = true
				c.setState(agentproto.CaptureCapturing)
			}
			if now.Sub(lastGuard) >= guardInterval {
				if c.ring.Gone() {
					return c.gone()
				}
				if c.seg != nil {
					if err := c.keepRing(now.UnixNano()); err != nil {
						return agentproto.StopError, err
					}
				}
				written := c.w.size()
				if r := c.guard(now.Sub(lastGuard), written-lastWritten); r != "" {
					c.RequestStop(now, r)
					continue
				}
				lastGuard, lastWritten = now, written
			}
		}
		sinceClock++
		if sinceClock == 1 {
			c.publish()
			if c.spec.Live != nil {
				c.w.flush() // what came since the last look goes out now
			}
		}
		p, err := c.ring.Next(wait)
		if err != nil {
			if errors.Is(err, ring.ErrTimeout) {
				sinceClock = clockEvery
				continue
			}
			if errors.Is(err, ring.ErrInterfaceGone) {
				return c.gone()
			}
			return agentproto.StopError, err
		}
		t := p.Nanos
		if t >= stopAt {
			// Stamped after the end: the window is over.
			return c.drain(stopAt)
		}
		if t-lastStamp >= int64(stampEvery) {
			lastStamp, sinceClock = t, clockEvery
		}
		if t < start {
			continue
		}
		written, r, err := c.write(&p)
		if err != nil {
			return agentproto.StopError, err
		}
		if written && c.vmWatches != nil {
			c.checkRules(&p)
		}
		if r != "" {
			// A limit: the window now ends at this packet (after it, if it
			// was written); the drain keeps nothing stamped later.
			end := p.Nanos
			if written {
				end++
			}
			c.RequestStop(time.Unix(0, end), r)
			sinceClock = clockEvery
		}
	}
}

// gone ends a capture whose interface was removed: it keeps what the
// kernel stamped before now (handed over, or in the block it still fills),
// and fails, saying so.
func (c *Capture) gone() (agentproto.StopReason, error) {
	at := hostclock.Now()
	c.RequestStop(at, agentproto.StopInterfaceGone)
	if _, err := c.drain(c.stopAt.Load()); err != nil {
		return agentproto.StopError, err
	}
	return agentproto.StopInterfaceGone, fmt.Errorf("interface %s was removed from the host at %s; the capture kept what it had",
		c.spec.Interface, at.UTC().Format(time.RFC3339Nano))
}

// drainQuiet is how long the ring must stay quiet, with no packet left in
// the kernel's block, for the drain to end: time for packets stamped
// before the end (as the stack queued them) to reach the ring.
const drainQuiet = 55 * time.Millisecond

// drain takes, once the window is over, what the kernel stamped before its
// end and has not handed over yet. It ends at the first packet stamped past
// the end (by more than reorderSlack): packets enter the ring in the order
// they are stamped, give or take microseconds across CPUs, so every earlier
// one has been read. Or it ends when the ring stays quiet for drainQuiet
// and the kernel holds no partly filled block: such a block is handed over
// only at its block timeout, which a quiet period alone could miss under
// load (the last 40 ms of a capture were once lost so). A backlog of
// in-window packets is still read to its end.
func (c *Capture) drain(stopAt int64) (agentproto.StopReason, error) {
	start := c.startAt.Load()
	// Bound the wait for a block the kernel should hand over within one
	// block timeout, should it never come.
	limit := time.Now().Add(2*c.blockTimeout() + time.Second)
	for {
		p, err := c.ring.Next(drainQuiet)
		quiet := errors.Is(err, ring.ErrTimeout) || errors.Is(err, ring.ErrInterfaceGone)
		if quiet && c.ring.Pending() && time.Now().Before(limit) {
			continue
		}
		if err != nil {
			break
		}
		t := p.Nanos
		if t >= stopAt+reorderSlack.Nanoseconds() {
			break
		}
		if t >= start && t < stopAt {
			written, r, err := c.write(&p)
			if err != nil {
				return agentproto.StopError, err
			}
			if written && c.vmWatches != nil {
				c.checkRules(&p)
			}
			if r != "" && !written {
				return r, nil
			}
		}
	}
	return c.Reason(), nil
}

func (c *Capture) blockTimeout() time.Duration {
	if c.spec.Buffer.BlockTimeout > 0 {
		return c.spec.Buffer.BlockTimeout
	}
	return 50 * time.Millisecond
}

func (c *Capture) setState(s agentproto.CaptureState) {
	c.mu.Lock()
	c.status.State = s
	c.mu.Unlock()
}

// guard refreshes the kernel counters and checks free space: it stops the
// capture before the filesystem's free space falls under MinFree, keeping a
// margin for what may be written before the next check and what is buffered.
func (c *Capture) guard(since time.Duration, written int64) agentproto.StopReason {
	if recv, drops, err := c.ring.Stats(); err == nil {
		c.mu.Lock()
		c.status.Received, c.status.Drops = recv, drops
		c.mu.Unlock()
	}
	if c.spec.MinFree == 0 || c.file == nil {
		return ""
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(c.file.Fd()), &st); err != nil {
		return ""
	}
	free := st.Bavail * uint64(st.Bsize)
	// (A ring capture's writer starts again at each segment: what it wrote
	// since the last look may come out negative then.)
	rate := float64(max(written, 0)) / max(since.Seconds(), 0.001)
	margin := uint64(2*rate*guardInterval.Seconds()) + uint64(cap(c.w.buf)) + 1<<20
	if free < c.spec.MinFree+margin {
		return agentproto.StopMinFree
	}
	return ""
}

// disarmed ends a capture whose window never began: its file (headers
// only) is removed.
func (c *Capture) disarmed() agentproto.CaptureStatus {
	var err error
	if c.file != nil {
		err = errors.Join(c.file.Close(), os.Remove(c.spec.File))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.StoppedAt, c.status.StopReason, c.status.State = hostclock.Now(), agentproto.StopDisarmed, agentproto.CaptureStopped
	c.status.Start, c.status.Note = time.Time{}, strings.TrimPrefix(c.status.Note+"; stopped before its window began: nothing captured, no file kept", "; ")
	if err != nil {
		c.status.State, c.status.Error = agentproto.CaptureFailed, strings.TrimSpace(err.Error())
	}
	st := c.status
	c.fill(&st)
	st.Size = 0
	return st
}

// write appends one packet to the file, unless a limit forbids it. It
// returns the limit's stop reason when no packet may follow (or this one
// was refused).
func (c *Capture) write(p *ring.Packet) (written bool, limit agentproto.StopReason, err error) {
	if c.seg != nil {
		return c.writeRing(p)
	}
	if m := c.spec.MaxPackets; m > 0 && c.n.packets >= m {
		return false, agentproto.StopPacketCount, nil
	}
	data, length := c.w.frame(p)
	if m := c.spec.MaxBytes; m > 0 && uint64(c.w.size())+recordSize(len(data))+statsSize > m {
		return false, agentproto.StopMaxBytes, nil
	}
	if err := c.w.writeFrame(p, data, length); err != nil {
		return false, agentproto.StopError, fmt.Errorf("write %s: %w", c.spec.File, err)
	}
	c.n.packets++
	c.n.bytes += uint64(len(data))
	if c.n.first == 0 {
		c.n.first = p.Nanos
	}
	c.n.last = p.Nanos
	if m := c.spec.MaxPackets; m > 0 && c.n.packets >= m {
		return true, agentproto.StopPacketCount, nil
	}
	return true, "", nil
}

// finish ends the file with an interface statistics block, flushes, syncs
// and closes it, and records the stop.
func (c *Capture) finish(reason agentproto.StopReason, runErr error) agentproto.CaptureStatus {
	c.publish()
	recv, drops := c.ring.End()
	c.stopWatches()
	if c.startAt.Load() >= c.stopAt.Load() && runErr == nil {
		if c.seg != nil {
			c.segFile.Close()
			c.seg.Discard()
		}
		return c.disarmed()
	}
	start, end := time.Unix(0, c.startAt.Load()), time.Unix(0, c.stopAt.Load())
	var err error
	if c.seg != nil {
		start, err = c.trim(start, end)
	}
	err = errors.Join(runErr, err, c.w.close(start, end, recv, drops))
	if c.file != nil {
		err = errors.Join(err, c.file.Sync(), c.file.Close())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Received, c.status.Drops = recv, drops
	c.status.Start = start
	c.status.StoppedAt, c.status.StopReason = hostclock.Now(), reason
	c.status.State = agentproto.CaptureStopped
	if err != nil {
		c.status.State, c.status.Error = agentproto.CaptureFailed, strings.TrimSpace(err.Error())
		if runErr == nil || reason == "" {
			c.status.StopReason = agentproto.StopError
		}
	}
	c.status.CRC32C = c.w.sum()
	// The file's final size (statistics block included), for Status too:
	// the agent's periodic status of a capture that ended before the
	// others must match its checksum.
	c.size.Store(c.w.out.n.Load())
	st := c.status
	c.fill(&st)
	st.Size = c.w.out.n.Load()
	return st
}
