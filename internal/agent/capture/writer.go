//go:build linux

package capture

import (
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/agent/ring"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/plans/filter/bpfgen"

	"github.com/casecap/casecap/internal/agent/hostclock"
)

// fileWriter writes one capture's pcapng stream: a section header naming
// tool and host, one interface block naming host, port and points, one
// enhanced packet block per packet (with its direction), and an interface
// statistics block at the end. It counts and hashes every byte it writes.
//
// The blocks are encoded here (pcapng, little endian, nanosecond
// timestamps) rather than with gopacket's pcapgo: the agent is uploaded to
// every datastore and pcapgo would add 1.7 MB to it, and its per-packet
// path allocates. Tests read the files back with pcapgo, tshark and capinfos.
type fileWriter struct {
	out *countingWriter
	// buf holds what is not written yet (cap bufSize): blocks are encoded
	// straight into it, which saves the per-packet copy a bufio.Writer
	// makes of even its own AvailableBuffer.
	buf     []byte
	cooked  bool
	scratch []byte
}

// bufSize is how much a capture buffers before it writes to its file.
// 64 KiB, not more: with 256 KiB writes the agent's system time doubled in
// about half the 1 Mpps bench runs that followed another large file's
// delete (the kernel's page cache allocating large folios, it seems),
// where 64 KiB writes never did; tcpdump writes 4 KiB at a time.
const bufSize = 64 << 10

// countingWriter checksums (unless h is nil: a ring's segment, which is
// never collected) and counts what reaches the file.
type countingWriter struct {
	w io.Writer
	h hash.Hash32
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	c.n.Add(int64(n))
	return n, err
}

// header is what the section and interface blocks say.
type header struct {
	Name, Host, Case, Interface, Filter, Version string
	Direction                                    bpfgen.Direction
	Snaplen                                      int
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "Linux"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// pcapng block types, option codes and link types.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockISB = 5
	blockEPB = 6

	optEnd        = 0
	optComment    = 1
	shbHardware   = 2
	shbOS         = 3
	shbUserAppl   = 4
	ifName        = 2
	ifDescription = 3
	ifTsresol     = 9
	ifFilter      = 11
	ifOS          = 12
	epbFlags      = 2
	isbStartTime  = 2
	isbEndTime    = 3
	isbIfRecv     = 4
	isbIfDrop     = 5

	linkEthernet = 1
	linkLinuxSLL = 113
)

// EPB flags: direction in bits 0-1, reception type in bits 2-4.
const (
	flagInbound  = 1
	flagOutbound = 2
)

// reception types of the packet flags, by kernel packet type (host,
// broadcast, multicast, other host).
var reception = [...]uint32{0: 1 << 2, 1: 3 << 2, 2: 2 << 2, 3: 4 << 2}

var le = binary.LittleEndian

// block assembles one block: type, length, body, options, end of options
// (when there are options), length again.
type block struct{ b []byte }

func newBlock(typ uint32) *block {
	return &block{b: le.AppendUint32(le.AppendUint32(nil, typ), 0)}
}

func (k *block) u16(v uint16) *block { k.b = le.AppendUint16(k.b, v); return k }
func (k *block) u32(v uint32) *block { k.b = le.AppendUint32(k.b, v); return k }

func (k *block) option(code uint16, value []byte) *block {
	if len(value) == 0 {
		return k
	}
	k.b = le.AppendUint16(le.AppendUint16(k.b, code), uint16(len(value)))
	k.b = append(k.b, value...)
	k.b = append(k.b, zeros[:(4-len(value)&3)&3]...)
	return k
}

func (k *block) text(code uint16, s string) *block { return k.option(code, []byte(s)) }

func (k *block) u64(code uint16, v uint64) *block {
	return k.option(code, le.AppendUint64(nil, v))
}

// timestamp writes a pcapng timestamp option: high and low 32 bits.
func (k *block) timestamp(code uint16, t time.Time) *block {
	ns := uint64(t.UnixNano())
	return k.option(code, le.AppendUint32(le.AppendUint32(nil, uint32(ns>>32)), uint32(ns)))
}

// bytes ends the options (code 0, length 0) and the block.
func (k *block) bytes() []byte {
	k.b = le.AppendUint32(k.b, optEnd)
	n := uint32(len(k.b) + 4)
	le.PutUint32(k.b[4:], n)
	return le.AppendUint32(k.b, n)
}

func newFileWriter(w io.Writer, h header, cooked bool) (*fileWriter, error) {
	return newWriter(w, h, cooked, true)
}

// newSegmentWriter writes a ring's segment: the same, with no checksum.
func newSegmentWriter(w io.Writer, h header, cooked bool) (*fileWriter, error) {
	return newWriter(w, h, cooked, false)
}

func newWriter(w io.Writer, h header, cooked, sum bool) (*fileWriter, error) {
	cw := &countingWriter{w: w}
	if sum {
		cw.h = agentproto.NewCRC32C()
	}
	f := &fileWriter{out: cw, buf: make([]byte, 0, bufSize), cooked: cooked, scratch: make([]byte, 0, bpfgen.WholePacket+64)}
	link := uint16(linkEthernet)
	if cooked {
		link = linkLinuxSLL
	}
	dir := map[bpfgen.Direction]string{bpfgen.Both: "both directions", bpfgen.In: "received only", bpfgen.Out: "sent only"}[h.Direction]
	snap := uint32(h.Snaplen)
	if snap == 0 {
		snap = bpfgen.WholePacket
	}
	shb := newBlock(blockSHB).u32(0x1A2B3C4D).u16(1).u16(0).u32(0xFFFFFFFF).u32(0xFFFFFFFF).
		text(shbHardware, runtime.GOARCH).
		text(shbOS, kernelRelease()).
		text(shbUserAppl, "casecap-agent "+h.Version).
		text(optComment, fmt.Sprintf("case %s, host %s, written by casecap-agent", h.Case, h.Host))
	idb := newBlock(blockIDB).u16(link).u16(0).u32(snap).
		text(ifName, h.Name).
		text(ifDescription, fmt.Sprintf("casecap capture on host %s, interface %s, %s", h.Host, h.Interface, dir)).
		text(ifOS, kernelRelease()).
		option(ifTsresol, []byte{9}) // nanoseconds
	if h.Filter != "" {
		idb.option(ifFilter, append([]byte{0}, h.Filter...)) // 0: a pcap-filter string
	}
	if err := f.write(shb.bytes()); err != nil {
		return nil, err
	}
	return f, f.write(idb.bytes())
}

// write buffers b, writing out the buffer first when b does not fit.
func (f *fileWriter) write(b []byte) error {
	if len(b) > cap(f.buf)-len(f.buf) {
		if err := f.flush(); err != nil {
			return err
		}
		if len(b) > cap(f.buf) {
			_, err := f.out.Write(b)
			return err
		}
	}
	f.buf = append(f.buf, b...)
	return nil
}

// flush writes out the buffer. After a failed write the capture ends (with
// the error), so what was not written is dropped rather than retried.
func (f *fileWriter) flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.out.Write(f.buf)
	f.buf = f.buf[:0]
	return err
}

// frame returns the bytes to record for p and their length on the wire: a
// Linux cooked header in front for cooked sockets, the VLAN tag the kernel
// took off put back (as libpcap does) for Ethernet ones.
func (f *fileWriter) frame(p *ring.Packet) ([]byte, int) {
	return appendFrame(f.scratch[:0], p, f.cooked)
}

// appendFrame appends to dst what frame returns, when the packet needs a
// header put in front or back; else it returns the packet's own data.
func appendFrame(dst []byte, p *ring.Packet, cooked bool) ([]byte, int) {
	switch {
	case cooked:
		b := append(dst, make([]byte, 16)...)[len(dst):]
		binary.BigEndian.PutUint16(b[0:], uint16(p.Type))
		binary.BigEndian.PutUint16(b[2:], p.HAType)
		binary.BigEndian.PutUint16(b[4:], uint16(len(p.Addr)))
		clear(b[6:14])
		copy(b[6:14], p.Addr)
		binary.BigEndian.PutUint16(b[14:], p.Protocol)
		return append(b, p.Data...), p.Length + 16
	case p.VLAN && len(p.Data) >= 12:
		b := append(dst, p.Data[:12]...)
		b = binary.BigEndian.AppendUint16(b, p.VLANTPID)
		b = binary.BigEndian.AppendUint16(b, p.VLANTCI)
		return append(b, p.Data[12:]...), p.Length + 4
	}
	return p.Data, p.Length
}

// recordSize is what an enhanced packet block of n bytes takes: header,
// data padded to 4, the flags option, end of options, trailer.
func recordSize(n int) uint64 { return uint64(28 + (n+3)&^3 + 8 + 4 + 4) }

// statsSize is what the closing interface statistics block takes (20-byte
// header, four 8-byte options, end of options, trailer): room a size limit
// keeps for it.
const statsSize = 20 + 4*12 + 4 + 4

var zeros [4]byte

// writeFrame writes one enhanced packet block, encoded in place at the end
// of the buffer: type, length, interface 0, timestamp high and low (ns),
// captured and original length, data padded to 4 bytes, epb_flags, end of
// options, length again. This is the per-packet hot path: no allocation,
// one copy of the data.
func (f *fileWriter) writeFrame(p *ring.Packet, data []byte, length int) error {
	flags := uint32(flagInbound)
	switch {
	case p.Outgoing():
		flags = flagOutbound
	case p.Type == ring.PacketUnknown:
		flags = 0
	case int(p.Type) < len(reception):
		flags |= reception[p.Type]
	}
	total := int(recordSize(len(data)))
	if total > cap(f.buf)-len(f.buf) {
		if err := f.flush(); err != nil {
			return err
		}
		if total > cap(f.buf) { // a packet near the whole-packet snap length (256 KiB)
			f.buf = make([]byte, 0, total+bufSize)
		}
	}
	n := len(f.buf)
	b := f.buf[n : n+total]
	ts := uint64(p.Nanos)
	le.PutUint32(b[0:], blockEPB)
	le.PutUint32(b[4:], uint32(total))
	le.PutUint32(b[8:], 0)
	le.PutUint32(b[12:], uint32(ts>>32))
	le.PutUint32(b[16:], uint32(ts))
	le.PutUint32(b[20:], uint32(len(data)))
	le.PutUint32(b[24:], uint32(max(length, len(data))))
	o := 28 + copy(b[28:], data)
	padded := 28 + (len(data)+3)&^3
	clear(b[o:padded])
	t := b[padded:]
	le.PutUint16(t[0:], epbFlags)
	le.PutUint16(t[2:], 4)
	le.PutUint32(t[4:], flags)
	le.PutUint32(t[8:], optEnd)
	le.PutUint32(t[12:], uint32(total))
	f.buf = f.buf[:n+total]
	return nil
}

// size is what the file holds so far, buffered bytes included. Only the
// goroutine that writes may call it; others read written().
func (f *fileWriter) size() int64 { return f.out.n.Load() + int64(len(f.buf)) }

// written is what has reached the file, safe to read from any goroutine.
func (f *fileWriter) written() int64 { return f.out.n.Load() }

// close writes the statistics block (when the interface's capture started
// and ended, packets the kernel passed to the socket and dropped) and
// flushes everything to the file.
func (f *fileWriter) close(start, end time.Time, received, dropped uint64) error {
	ns := uint64(hostclock.Now().UnixNano())
	isb := newBlock(blockISB).u32(0).u32(uint32(ns>>32)).u32(uint32(ns)).
		timestamp(isbStartTime, start).
		timestamp(isbEndTime, end).
		u64(isbIfRecv, received).
		u64(isbIfDrop, dropped)
	if err := f.write(isb.bytes()); err != nil {
		return err
	}
	return f.flush()
}

// sum is the CRC-32C of everything written, in hex.
func (f *fileWriter) sum() string {
	if f.out.h == nil {
		return "" // a segment: never collected
	}
	return agentproto.CRC32CHex(f.out.h)
}
