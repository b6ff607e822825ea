package pcapfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Counter counts the packets of a pcapng (or pcap) file fed to it in
// order, in pieces as it grows: whole blocks only, the rest kept for the
// next piece. Its zero value is ready.
type Counter struct {
	Packets uint64 // whole packet blocks seen
	Bytes   uint64 // their captured bytes
	pending []byte
	format  int // 0 unknown, 1 pcapng, 2 pcap
	order   binary.ByteOrder
	err     error
}

// Err is why counting stopped: the data is neither pcapng nor pcap.
func (c *Counter) Err() error { return c.err }

// Pending is how many bytes fed so far are not yet a whole block.
func (c *Counter) Pending() int { return len(c.pending) }

var errFormat = errors.New("neither pcapng nor pcap")

// Feed counts the next piece of the file.
func (c *Counter) Feed(p []byte) {
	if c.err != nil {
		return
	}
	c.pending = append(c.pending, p...)
	b := c.pending
	if c.format == 0 {
		if len(b) < 24 {
			return
		}
		switch {
		case binary.LittleEndian.Uint32(b) == 0x0a0d0d0a:
			c.format = 1
			if binary.LittleEndian.Uint32(b[8:]) == 0x1a2b3c4d {
				c.order = binary.LittleEndian
			} else {
				c.order = binary.BigEndian
			}
		case binary.LittleEndian.Uint32(b) == 0xa1b2c3d4 || binary.LittleEndian.Uint32(b) == 0xa1b23c4d:
			c.format, c.order = 2, binary.LittleEndian
			b = b[24:]
		case binary.BigEndian.Uint32(b) == 0xa1b2c3d4 || binary.BigEndian.Uint32(b) == 0xa1b23c4d:
			c.format, c.order = 2, binary.BigEndian
			b = b[24:]
		default:
			c.err = errFormat
			return
		}
	}
	for {
		if c.format == 1 {
			if len(b) < 12 {
				break
			}
			typ, size := c.order.Uint32(b), c.order.Uint32(b[4:])
			if typ == 0x0a0d0d0a && len(b) >= 12 { // a new section may change byte order
				if binary.LittleEndian.Uint32(b[8:]) == 0x1a2b3c4d {
					c.order = binary.LittleEndian
				} else {
					c.order = binary.BigEndian
				}
				size = c.order.Uint32(b[4:])
			}
			if size < 12 || size%4 != 0 {
				c.err = errFormat
				return
			}
			if uint32(len(b)) < size {
				break
			}
			switch typ {
			case 6: // enhanced packet block
				if size >= 32 {
					c.Packets++
					c.Bytes += uint64(c.order.Uint32(b[20:]))
				}
			case 3: // simple packet block
				c.Packets++
				c.Bytes += uint64(size - 16)
			}
			b = b[size:]
		} else {
			if len(b) < 16 {
				break
			}
			n := c.order.Uint32(b[8:])
			if n > 1<<26 {
				c.err = errFormat
				return
			}
			if uint32(len(b)) < 16+n {
				break
			}
			c.Packets++
			c.Bytes += uint64(n)
			b = b[16+n:]
		}
	}
	c.pending = append(c.pending[:0], b...)
}

// Count reads a whole pcapng or pcap file and counts its packets and their
// captured bytes.
func Count(r io.Reader) (packets, bytes uint64, err error) {
	var c Counter
	buf := make([]byte, 256<<10)
	for {
		n, rerr := r.Read(buf)
		c.Feed(buf[:n])
		if c.err != nil {
			return c.Packets, c.Bytes, c.err
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return c.Packets, c.Bytes, rerr
		}
	}
	if len(c.pending) > 0 {
		return c.Packets, c.Bytes, fmt.Errorf("the file ends inside a block (%d bytes left over)", len(c.pending))
	}
	return c.Packets, c.Bytes, nil
}
