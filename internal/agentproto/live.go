package agentproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The live stream (casecap live): casecap sends "live JOB" on a serve
// session, and from then on the agent's output is a sequence of frames
// until casecap ends the session (which stops every capture) or every
// capture ends:
//
//	kind (1 byte) | capture index in the job (u16 LE) | length (u32 LE) | payload
//
// FramePackets carries a piece of the capture's pcapng stream (whole
// blocks; the capture's first piece starts with its section and interface
// blocks); FrameDrops the packets the stream dropped so far for the
// capture (u64 LE: a reader too slow, never the capture); FrameStatus the
// capture's final CaptureStatus as JSON; FrameError why the job could not
// run (capture index 0xFFFF).
const (
	FramePackets byte = 'p'
	FrameDrops   byte = 'd'
	FrameStatus  byte = 's'
	FrameError   byte = 'e'
)

// LineLive, followed by a space and the Job as JSON: run it live.
const LineLive = "live"

// MaxFrame bounds a frame's payload.
const MaxFrame = 16 << 20

// AppendFrame appends one frame to dst.
func AppendFrame(dst []byte, kind byte, capture int, payload []byte) []byte {
	dst = append(dst, kind)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(capture))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// Frame is one frame read.
type Frame struct {
	Kind    byte
	Capture int
	Payload []byte
}

// ReadFrame reads one frame.
func ReadFrame(r *bufio.Reader) (Frame, error) {
	var h [7]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.LittleEndian.Uint32(h[3:])
	if n > MaxFrame {
		return Frame{}, fmt.Errorf("a live frame of %d bytes: the stream is broken", n)
	}
	f := Frame{Kind: h[0], Capture: int(binary.LittleEndian.Uint16(h[1:])), Payload: make([]byte, n)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	switch f.Kind {
	case FramePackets, FrameDrops, FrameStatus, FrameError:
	default:
		return Frame{}, fmt.Errorf("a live frame of unknown kind %q", f.Kind)
	}
	return f, nil
}

// LiveLine is the live request, newline ended.
func LiveLine(jobJSON []byte) []byte {
	return append(append([]byte(LineLive+" "), jobJSON...), '\n')
}
