//go:build linux

package capture

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/agent/bpfgen"
	"github.com/casecap/casecap/agent/ring"
)

// fileWriter writes one capture's pcapng stream: a section header naming
// tool and host, one interface block naming host, port and points, one
// enhanced packet block per packet (with its direction), and an interface
// statistics block at the end. It counts and hashes every byte it writes.
type fileWriter struct {
	out     *countingWriter
	buf     *bufio.Writer
	ng      *pcapgo.NgWriter // section, interface and statistics blocks
	cooked  bool
	scratch []byte
}

// countingWriter hashes and counts what reaches the file.
type countingWriter struct {
	w io.Writer
	h hash.Hash
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
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

func newFileWriter(w io.Writer, h header, cooked bool) (*fileWriter, error) {
	f := &fileWriter{out: &countingWriter{w: w, h: sha256.New()}, cooked: cooked, scratch: make([]byte, 0, bpfgen.WholePacket+64)}
	f.buf = bufio.NewWriterSize(f.out, 256<<10)
	lt := layers.LinkTypeEthernet
	if cooked {
		lt = layers.LinkTypeLinuxSLL
	}
	dir := map[bpfgen.Direction]string{bpfgen.Both: "both directions", bpfgen.In: "received only", bpfgen.Out: "sent only"}[h.Direction]
	snap := uint32(h.Snaplen)
	if snap == 0 {
		snap = bpfgen.WholePacket
	}
	intf := pcapgo.NgInterface{
		Name:                h.Name,
		Description:         fmt.Sprintf("casecap capture on host %s, interface %s, %s", h.Host, h.Interface, dir),
		Filter:              h.Filter,
		OS:                  kernelRelease(),
		LinkType:            lt,
		SnapLength:          snap,
		TimestampResolution: 9,
	}
	info := pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          kernelRelease(),
		Application: "casecap-agent " + h.Version,
		Comment:     fmt.Sprintf("case %s, host %s, written by casecap-agent", h.Case, h.Host),
	}
	var err error
	if f.ng, err = pcapgo.NewNgWriterInterface(f.buf, intf, pcapgo.NgWriterOptions{SectionInfo: info}); err != nil {
		return nil, err
	}
	// pcapgo buffers too: empty its buffer before packets go straight to ours.
	return f, f.ng.Flush()
}

// frame returns the bytes to record for p and their length on the wire: a
// Linux cooked header in front for cooked sockets, the VLAN tag the kernel
// took off put back (as libpcap does) for Ethernet ones.
func (f *fileWriter) frame(p *ring.Packet) ([]byte, int) {
	switch {
	case f.cooked:
		b := f.scratch[:16]
		binary.BigEndian.PutUint16(b[0:], uint16(p.Type))
		binary.BigEndian.PutUint16(b[2:], p.HAType)
		binary.BigEndian.PutUint16(b[4:], uint16(len(p.Addr)))
		clear(b[6:14])
		copy(b[6:14], p.Addr)
		binary.BigEndian.PutUint16(b[14:], p.Protocol)
		return append(b, p.Data...), p.Length + 16
	case p.VLAN && len(p.Data) >= 12:
		b := append(f.scratch[:0], p.Data[:12]...)
		b = binary.BigEndian.AppendUint16(b, p.VLANTPID)
		b = binary.BigEndian.AppendUint16(b, p.VLANTCI)
		return append(b, p.Data[12:]...), p.Length + 4
	}
	return p.Data, p.Length
}

// recordSize is what an enhanced packet block of n bytes takes: header,
// data padded to 4, the flags option, end of options, trailer.
func recordSize(n int) uint64 { return uint64(28 + (n+3)&^3 + 8 + 4 + 4) }

// statsSize is what the closing interface statistics block takes (20-byte header,
// timestamp, four 8-byte options, end of options, trailer): room a size
// limit keeps for it.
const statsSize = 20 + 4*12 + 4 + 4

// Reception types of the pcapng packet flags, by kernel packet type.
var reception = [...]pcapgo.NgEpbFlag{
	0: pcapgo.NgEpbFlagReceptionTypeUnicast,
	1: pcapgo.NgEpbFlagReceptionTypeBroadcast,
	2: pcapgo.NgEpbFlagReceptionTypeMulticast,
	3: pcapgo.NgEpbFlagReceptionTypePromiscuous,
}

// writeFrame writes one enhanced packet block, encoded here rather than by
// pcapgo: this is the per-packet hot path, and pcapgo allocates for every
// packet's options. Layout (little endian, as pcapgo's section header says):
// type 6, length, interface 0, timestamp high and low (ns), captured and
// original length, data padded to 4 bytes, option epb_flags (code 2,
// length 4), end of options, length again.
func (f *fileWriter) writeFrame(p *ring.Packet, data []byte, length int) error {
	flags := uint32(pcapgo.NgEpbFlagDirectionInbound)
	if p.Outgoing() {
		flags = uint32(pcapgo.NgEpbFlagDirectionOutbound)
	} else if int(p.Type) < len(reception) {
		flags |= uint32(reception[p.Type])
	}
	total := int(recordSize(len(data)))
	ts := uint64(p.Nanos)
	// One record, assembled in the buffer's free space when it fits.
	b := f.buf.AvailableBuffer()
	if cap(b) < total {
		if err := f.buf.Flush(); err != nil {
			return err
		}
		if b = f.buf.AvailableBuffer(); cap(b) < total {
			b = make([]byte, 0, total)
		}
	}
	le := binary.LittleEndian
	b = le.AppendUint32(b, 6)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, uint32(max(length, len(data))))
	b = append(b, data...)
	b = append(b, zeros[:(4-len(data)&3)&3]...)
	b = le.AppendUint16(b, 2) // epb_flags
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, flags)
	b = le.AppendUint32(b, 0) // end of options
	b = le.AppendUint32(b, uint32(total))
	_, err := f.buf.Write(b)
	return err
}

var zeros [4]byte

// size is what the file holds so far, buffered bytes included.
func (f *fileWriter) size() int64 { return f.out.n.Load() + int64(f.buf.Buffered()) }

// close writes the statistics block and flushes everything to w.
func (f *fileWriter) close(start, end time.Time, received, dropped uint64) error {
	stats := pcapgo.NgInterfaceStatistics{
		LastUpdate:      time.Now(),
		StartTime:       start,
		EndTime:         end,
		PacketsReceived: received,
		PacketsDropped:  dropped,
	}
	if err := f.ng.WriteInterfaceStats(0, stats); err != nil {
		return err
	}
	if err := f.ng.Flush(); err != nil {
		return err
	}
	return f.buf.Flush()
}

func (f *fileWriter) sum() string { return hex.EncodeToString(f.out.h.Sum(nil)) }
