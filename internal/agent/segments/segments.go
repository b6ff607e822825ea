// Package segments keeps a ring capture's packets on disk: segment files
// written one after the other, the oldest deleted once the ring holds
// enough without them, and at the end the packets of the wanted time span
// copied out of the segments into the capture's one file. It decides
// which file and when; the capture engine writes the pcapng inside.
//
// A capture that keeps the last minute cannot know, while it runs, which
// minute it will be asked for: a trigger may fire on another host and
// reach this one a moment later. So a segment is deleted only when all its
// packets are older than Keep plus Grace (the time a trigger takes to come
// here), or once the trigger is known, older than its start.
package segments

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// Options size a ring.
type Options struct {
	Dir          string        // the segment files' folder (created; removed at the end)
	Keep         time.Duration // keep at least this much before the newest packet
	KeepBytes    uint64        // keep at least this many bytes (with Keep: the cap, see Prune)
	Segment      time.Duration // rotate once a segment spans this long
	SegmentBytes uint64        // or holds this many bytes
	// Grace is kept beyond Keep for a trigger heard late (default 2 s).
	Grace time.Duration
}

// DefaultGrace bounds how long after a trigger fires elsewhere this host
// hears of it: casecap passes it on within a second.
const DefaultGrace = 2 * time.Second

// segment is one file of the ring.
type segment struct {
	path        string
	first, last int64 // unix ns of its first and last packet; 0: none yet
	size        int64
}

// Ring is a capture's ring of segment files. One goroutine writes (Open,
// Due, Wrote, Rotate, Prune, Trim); Status may be called from any.
type Ring struct {
	opt  Options
	next int // number of the next segment file

	mu      sync.Mutex
	closed  []segment // oldest first
	cur     *segment
	deleted int
	bytes   int64 // of the closed segments
	// gone is where the ring's packets still begin: just after the last
	// packet of the newest segment deleted (math.MinInt64: none deleted).
	gone int64
}

// New creates the ring's folder; it must not hold an earlier ring's files.
func New(opt Options) (*Ring, error) {
	if opt.Segment <= 0 && opt.SegmentBytes == 0 {
		return nil, errors.New("a ring needs a segment length or size")
	}
	if opt.Grace == 0 {
		opt.Grace = DefaultGrace
	}
	if err := os.MkdirAll(opt.Dir, 0o750); err != nil {
		return nil, err
	}
	if left, _ := filepath.Glob(filepath.Join(opt.Dir, "*.pcapng")); len(left) > 0 {
		return nil, fmt.Errorf("%s holds segments of an earlier run (%d files): remove them first", opt.Dir, len(left))
	}
	return &Ring{opt: opt, gone: math.MinInt64}, nil
}

// Covered is the earliest instant (unix ns) from which the ring still
// holds every packet it was given: math.MinInt64 until it deleted a
// segment.
func (r *Ring) Covered() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// Open creates the next segment file; the caller writes its headers and
// packets, then calls Rotate (or Trim at the end).
func (r *Ring) Open() (*os.File, error) {
	p := filepath.Join(r.opt.Dir, fmt.Sprintf("%06d.pcapng", r.next))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, err
	}
	r.next++
	r.mu.Lock()
	r.cur = &segment{path: p}
	r.mu.Unlock()
	return f, nil
}

// Due says whether the current segment is full before a packet stamped at
// nanos is written to it, size being what it holds: time to Rotate.
func (r *Ring) Due(nanos, size int64) bool {
	c := r.cur
	if c == nil || c.first == 0 {
		return false
	}
	return (r.opt.Segment > 0 && nanos-c.first >= int64(r.opt.Segment)) ||
		(r.opt.SegmentBytes > 0 && uint64(size) >= r.opt.SegmentBytes)
}

// Old says whether the current segment has spanned its length by now,
// with no packet to say so (a quiet capture rotates too).
func (r *Ring) Old(now int64) bool {
	c := r.cur
	return c != nil && c.first != 0 && r.opt.Segment > 0 && now-c.first >= int64(r.opt.Segment)
}

// Wrote records a packet stamped at nanos written to the current segment.
func (r *Ring) Wrote(nanos int64) {
	c := r.cur
	if c.first == 0 {
		r.mu.Lock()
		c.first = nanos
		r.mu.Unlock()
	}
	c.last = nanos
}

// Rotate records the current segment, closed at size bytes.
func (r *Ring) Rotate(size int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return
	}
	r.cur.size = size
	r.closed = append(r.closed, *r.cur)
	r.bytes += size
	r.cur = nil
}

// Prune deletes the oldest closed segments the ring no longer needs at
// now: those whose every packet is older than now - Keep - Grace and than
// keepFrom (a trigger's start, math.MaxInt64 without one); with
// KeepBytes, also those the rest of the ring (the current segment's size
// bytes included) holds enough bytes without (so KeepBytes caps a ring
// that also has a Keep).
func (r *Ring) Prune(now, keepFrom, size int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	horizon := int64(math.MinInt64)
	if r.opt.Keep > 0 {
		horizon = min(now-int64(r.opt.Keep+r.opt.Grace), keepFrom)
	}
	var errs []error
	for len(r.closed) > 0 {
		s := r.closed[0]
		old := r.opt.Keep > 0 && s.last < horizon
		enough := r.opt.KeepBytes > 0 && uint64(r.bytes+size-s.size) >= r.opt.KeepBytes && s.last < keepFrom
		if !old && !enough {
			break
		}
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			break
		}
		r.closed = r.closed[1:]
		r.bytes -= s.size
		r.deleted++
		r.gone = max(r.gone, s.last+1)
	}
	return errors.Join(errs...)
}

// Status is what the ring holds now; size is the current segment's.
func (r *Ring) Status(size int64) agentproto.RingStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := agentproto.RingStatus{Segments: len(r.closed), Bytes: r.bytes, Deleted: r.deleted}
	if r.cur != nil {
		st.Segments++
		st.Bytes += size
	}
	oldest := int64(0)
	if len(r.closed) > 0 {
		oldest = r.closed[0].first
	} else if r.cur != nil {
		oldest = r.cur.first
	}
	if oldest != 0 {
		st.Oldest = time.Unix(0, oldest)
	}
	return st
}

// Counts are what Trim copied.
type Counts struct {
	Packets, Bytes uint64 // packets and their captured bytes
	First, Last    int64  // unix ns of the first and last copied
}

// pcapng block types Trim knows.
const (
	blockSHB = 0x0A0D0D0A
	blockEPB = 6
)

// Trim copies the enhanced packet blocks stamped in [from, to) from every
// segment, oldest first, to out, deleting each segment once copied, and
// the folder at the end. The current segment must be Rotated (closed)
// first. On an error it stops: the segments not copied yet stay, and the
// error names their folder (the packets are not lost with the disk that
// filled up). Segments are this package's user's own pcapng files: one
// section, one interface, little endian, nanosecond timestamps; the
// blocks are copied as they are.
func (r *Ring) Trim(from, to int64, out func(block []byte) error) (Counts, error) {
	var n Counts
	r.mu.Lock()
	segs := r.closed
	r.closed, r.bytes = nil, 0
	r.mu.Unlock()
	buf := make([]byte, 0, 64<<10)
	for i, s := range segs {
		var err error
		if s.last >= from && s.first < to && s.first != 0 {
			err = copyBlocks(s.path, from, to, &buf, out, &n)
		}
		if err == nil {
			err = os.Remove(s.path)
		}
		if err != nil {
			r.mu.Lock()
			r.closed = segs[i:]
			r.mu.Unlock()
			return n, fmt.Errorf("%w; the segments not copied are left in %s", err, r.opt.Dir)
		}
	}
	os.Remove(r.opt.Dir)
	return n, nil
}

// Discard deletes every segment and the folder: the capture kept nothing.
func (r *Ring) Discard() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.closed {
		os.Remove(s.path)
	}
	if r.cur != nil {
		os.Remove(r.cur.path)
	}
	r.closed, r.cur = nil, nil
	os.Remove(r.opt.Dir)
}

var le = binary.LittleEndian

func copyBlocks(path string, from, to int64, buf *[]byte, out func([]byte) error, n *Counts) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		typ, size := le.Uint32(hdr[0:]), int(le.Uint32(hdr[4:]))
		if size < 12 || size%4 != 0 || size > 16<<20 {
			return fmt.Errorf("%s: a block of %d bytes: not a segment this ring wrote", path, size)
		}
		b := append((*buf)[:0], hdr[:]...)
		if cap(b) < size {
			b = make([]byte, 8, size)
			copy(b, hdr[:])
		}
		b = b[:size]
		*buf = b
		if _, err := io.ReadFull(br, b[8:]); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if typ != blockEPB || size < 32 {
			continue
		}
		ts := int64(uint64(le.Uint32(b[12:]))<<32 | uint64(le.Uint32(b[16:])))
		if ts < from || ts >= to {
			continue
		}
		if err := out(b); err != nil {
			return err
		}
		n.Packets++
		n.Bytes += uint64(le.Uint32(b[20:]))
		if n.First == 0 {
			n.First = ts
		}
		n.Last = ts
	}
}
