//go:build linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/internal/agent/ring"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// writeRing writes one packet to the ring's current segment, rotating
// first when the segment is full. A ring has no packet or size limit: it
// keeps the latest packets, whatever their number.
func (c *Capture) writeRing(p *ring.Packet) (bool, agentproto.StopReason, error) {
	if c.seg.Due(p.Nanos, c.w.size()) {
		if err := c.rotate(); err != nil {
			return false, agentproto.StopError, err
		}
	}
	data, length := c.w.frame(p)
	if err := c.w.writeFrame(p, data, length); err != nil {
		return false, agentproto.StopError, fmt.Errorf("write a segment of %s: %w", c.spec.Name, err)
	}
	c.seg.Wrote(p.Nanos)
	c.n.packets++
	c.n.bytes += uint64(len(data))
	if c.n.first == 0 {
		c.n.first = p.Nanos
	}
	c.n.last = p.Nanos
	return true, "", nil
}

// rotate closes the current segment and opens the next. Segments are not
// synced: they are the capture's working files, and the file the capture
// keeps is synced at the end.
func (c *Capture) rotate() error {
	if err := c.w.flush(); err != nil {
		return err
	}
	size := c.w.size()
	if err := c.segFile.Close(); err != nil {
		return err
	}
	c.seg.Rotate(size)
	f, err := c.seg.Open()
	if err != nil {
		return err
	}
	c.segFile = f
	w, err := newSegmentWriter(f, c.hdr, c.cooked)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.w = w
	c.mu.Unlock()
	return c.seg.Prune(c.n.last, c.trimFrom.Load(), c.w.size())
}

// keepRing does a ring's periodic work at now: a quiet segment that spans
// its length is rotated too (so that its packets can age out), and the
// segments the ring no longer needs are deleted.
func (c *Capture) keepRing(now int64) error {
	if c.seg.Old(now) {
		if err := c.rotate(); err != nil {
			return err
		}
	}
	return c.seg.Prune(now, c.trimFrom.Load(), c.w.size())
}

// Trigger makes the capture stop at stop, and a ring capture keep its
// packets from at - keep (from its start without a keep time). A later
// call for an earlier trigger moves both earlier; the agent keeps the
// earliest trigger it hears of. A trigger at or after the capture's end
// (it was stopped first: Ctrl-C, casecap stop) changes nothing: its file
// keeps the last keep before that end.
func (c *Capture) Trigger(at, stop time.Time) {
	if at.UnixNano() >= c.stopAt.Load() {
		return
	}
	if c.seg != nil {
		from := int64(math.MinInt64)
		if k := c.spec.Ring.Keep; k > 0 {
			from = at.Add(-k).UnixNano()
		}
		for cur := c.trimFrom.Load(); from < cur && !c.trimFrom.CompareAndSwap(cur, from); cur = c.trimFrom.Load() {
		}
	}
	c.RequestStop(stop, agentproto.StopTrigger)
}

// trim copies the ring's packets into the capture's file: from the
// trigger's start (or, with no trigger, the last Keep before the end) to
// the end. It returns the file's start: where the ring still held every
// packet, which may be later than asked when segments were rotated out
// before a late trigger came (the status's note then says so). It leaves
// c.w writing the file (for its statistics block and checksum). On an
// error the file is still valid pcapng, and the segments not copied stay
// in the ring's folder.
func (c *Capture) trim(start, end time.Time) (time.Time, error) {
	// What the current segment holds is kept even if it cannot be closed
	// cleanly: its whole blocks are read back.
	ferr := c.w.flush()
	size := c.w.size()
	cerr := c.segFile.Close()
	c.seg.Rotate(size)
	from := c.trimFrom.Load()
	if from == math.MaxInt64 { // no trigger
		from = math.MinInt64
		if k := c.spec.Ring.Keep; k > 0 {
			from = end.Add(-k).UnixNano()
		}
	}
	asked := max(from, start.UnixNano())
	from = min(max(asked, c.seg.Covered()), end.UnixNano())
	if from > asked {
		c.mu.Lock()
		c.status.Note = strings.TrimPrefix(c.status.Note+fmt.Sprintf("; the file starts %v later than asked (%s): the ring had rotated that out before the trigger came",
			time.Duration(from-asked).Round(time.Millisecond), time.Unix(0, asked).UTC().Format("15:04:05.000000")), "; ")
		c.mu.Unlock()
	}
	// The file holds its headers from arming (valid should the agent die);
	// it is written again from its start.
	if _, err := c.file.Seek(0, io.SeekStart); err != nil {
		return start, errors.Join(ferr, cerr, err)
	}
	if err := c.file.Truncate(0); err != nil {
		return start, errors.Join(ferr, cerr, err)
	}
	w, err := newFileWriter(c.file, c.hdr, c.cooked)
	if err != nil {
		return start, errors.Join(ferr, cerr, err)
	}
	c.mu.Lock()
	c.w = w
	c.mu.Unlock()
	n, err := c.seg.Trim(from, end.UnixNano(), w.write)
	c.n = counters{packets: n.Packets, bytes: n.Bytes, first: n.First, last: n.Last}
	c.publish()
	return time.Unix(0, from), errors.Join(ferr, cerr, err)
}

// watcher is a packet rule's own socket: the capture's filter and the
// rule's, chained in one program, so that the kernel hands over only the
// packets that fire it.
type watcher struct {
	id   string
	r    *ring.Ring
	stop chan struct{}
	done chan struct{}
}

// armWatch opens a packet rule's socket on the capture's interface.
func (c *Capture) armWatch(ctx context.Context, w PacketWatch, capture []bpf.RawInstruction, cooked bool) (*watcher, error) {
	s := c.spec
	s.Filter, s.Direction, s.Exclude = w.Filter, bpfgen.Both, nil
	rule, _, err := Program(ctx, s, cooked)
	if err != nil {
		return nil, err
	}
	prog, err := bpfgen.And(capture, rule)
	if err != nil {
		return nil, err
	}
	r, err := ring.Open(ring.Options{Interface: s.Interface, Program: prog, BlockSize: 256 << 10, Blocks: 2, BlockTimeout: 10 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	wt := &watcher{id: w.ID, r: r, stop: make(chan struct{}), done: make(chan struct{})}
	go c.watch(wt)
	return wt, nil
}

// watch reads a packet rule's socket until a packet inside the window
// fires it (once: the earliest trigger is the one that counts) or the
// capture ends. Packets before a pending window's begin do not count.
func (c *Capture) watch(w *watcher) {
	defer close(w.done)
	defer w.r.Close()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		p, err := w.r.Next(100 * time.Millisecond)
		if errors.Is(err, ring.ErrTimeout) {
			continue
		}
		if err != nil {
			return
		}
		if p.Nanos < c.startAt.Load() || p.Nanos >= c.stopAt.Load() {
			continue
		}
		data, length := appendFrame(nil, &p, c.cooked)
		tp := agentproto.TriggerPacket{Capture: c.spec.Name, LinkType: linkEthernet, Time: p.Time(),
			Length: length, Outgoing: p.Outgoing(), Data: append([]byte(nil), data...)}
		if c.cooked {
			tp.LinkType = linkLinuxSLL
		}
		if c.spec.OnPacket != nil {
			c.spec.OnPacket(w.id, tp)
		}
		return
	}
}

// stopWatches ends the watchers and waits for them: each closes its own
// socket.
func (c *Capture) stopWatches() {
	for _, w := range c.watchers {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
	}
	for _, w := range c.watchers {
		select {
		case <-w.done:
		case <-time.After(time.Second):
		}
	}
	c.watchers = nil
}

// vmWatch is a packet rule checked in the agent, on each packet a Source
// gives the capture: where the kernel cannot check it (pktcap-uw filters
// on ESXi, the agent only reads its output). Fires once.
type vmWatch struct {
	id    string
	vm    *bpf.VM
	fired bool
}

// newVMWatch compiles a structured rule for Ethernet frames (pktcap-uw's
// output); a raw expr needs tcpdump, which ESXi does not have.
func newVMWatch(w PacketWatch) (*vmWatch, error) {
	switch {
	case w.Filter.Expr != "":
		return nil, errors.New("a packet rule on ESXi takes structured filter keys only (no expr): the agent checks it itself")
	case w.Filter.VLAN != nil:
		return nil, errors.New("a packet rule on ESXi cannot match a vlan (pktcap-uw's stream has no VLAN metadata to check it against); leave vlan out of the rule")
	}
	ins, err := bpfgen.Build(w.Filter, bpfgen.Options{})
	if err != nil {
		return nil, err
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		return nil, err
	}
	return &vmWatch{id: w.ID, vm: vm}, nil
}

// checkRules runs the packet rules on a packet the capture kept. A frame
// whose VLAN tag is still in it (pktcap-uw's stream) is matched without
// it, as the rule's program expects the kernel to have taken it off.
func (c *Capture) checkRules(p *ring.Packet) {
	data := p.Data
	if len(data) >= 18 && (data[12] == 0x81 && data[13] == 0x00 || data[12] == 0x88 && data[13] == 0xa8) {
		data = append(append(c.untagged[:0], data[:12]...), data[16:]...)
		c.untagged = data
	}
	for _, w := range c.vmWatches {
		if w.fired {
			continue
		}
		if n, err := w.vm.Run(data); err != nil || n == 0 {
			continue
		}
		w.fired = true
		if c.spec.OnPacket != nil {
			c.spec.OnPacket(w.id, agentproto.TriggerPacket{Capture: c.spec.Name, LinkType: linkEthernet, Time: p.Time(),
				Length: p.Length, Outgoing: p.Outgoing(), Data: append([]byte(nil), p.Data...)})
		}
	}
}
