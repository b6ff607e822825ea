package live

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Packet is one packet of one capture point.
type Packet struct {
	Capture  int       // index in the Feed's captures
	Time     time.Time // on casecap's clock
	Data     []byte
	Length   int  // on the wire
	Dir      byte // 'I' received, 'O' sent, 0 unknown
	LinkType uint16
}

var le = binary.LittleEndian

// pcapng block types read here.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 1
	blockEPB = 6
)

// decodeBlocks reads the whole pcapng blocks of one piece of a capture's
// stream, as casecap's agent writes it (little endian, one interface,
// nanosecond timestamps), calling emit for each packet with its
// timestamp (the host's clock) and setting *link from the interface block.
func decodeBlocks(b []byte, link *uint16, emit func(ts int64, data []byte, length int, dir byte)) error {
	for len(b) > 0 {
		if len(b) < 12 {
			return errors.New("a piece of a stream that ends inside a block")
		}
		typ, size := le.Uint32(b), int(le.Uint32(b[4:]))
		if size < 12 || size%4 != 0 || size > len(b) {
			return fmt.Errorf("a pcapng block of %d bytes in a piece of %d", size, len(b))
		}
		blk := b[:size]
		b = b[size:]
		switch typ {
		case blockSHB:
			if le.Uint32(blk[8:]) != 0x1A2B3C4D {
				return errors.New("a big-endian section: not casecap's agent")
			}
		case blockIDB:
			if size >= 20 {
				*link = le.Uint16(blk[8:])
			}
		case blockEPB:
			if size < 32 {
				return errors.New("a short packet block")
			}
			ts := int64(uint64(le.Uint32(blk[12:]))<<32 | uint64(le.Uint32(blk[16:])))
			capLen, origLen := int(le.Uint32(blk[20:])), int(le.Uint32(blk[24:]))
			if 28+capLen > size-4 {
				return errors.New("a packet longer than its block")
			}
			data := blk[28 : 28+capLen]
			var dir byte
			// Options after the padded data: epb_flags (code 2) holds
			// the direction in its two low bits.
			for o := 28 + (capLen+3)&^3; o+4 <= size-4; {
				code, n := le.Uint16(blk[o:]), int(le.Uint16(blk[o+2:]))
				if code == 0 {
					break
				}
				if code == 2 && n == 4 && o+8 <= size-4 {
					switch le.Uint32(blk[o+4:]) & 3 {
					case 1:
						dir = 'I'
					case 2:
						dir = 'O'
					}
				}
				o += 4 + (n+3)&^3
			}
			emit(ts, data, origLen, dir)
		}
	}
	return nil
}
