//go:build linux

package pktcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/casecap/casecap/internal/agent/ring"
)

// Stream runs pktcap-uw with its packets on its standard output (`-o -`,
// as the KB pipes them into `tcpdump-uw -r -`) and reads them: a packet
// source for the agent's own capture engine (package capture), which
// then keeps them by timestamp, in a ring or in one file. pktcap-uw is
// started when the capture is armed, so that the window is kept to the
// packet, as on Linux, rather than from when a process happened to start.
type Stream struct {
	cmd     *exec.Cmd
	msgs    *capped // pktcap-uw's messages (stderr)
	packets chan ring.Packet
	exited  chan error
	grace   time.Duration
	ptype   uint8

	last     atomic.Int64 // unix ns when the last packet was read
	received atomic.Uint64
	ending   atomic.Bool
	done     chan struct{} // the reader's end
	err      error         // why the reader ended, once done

	endOnce           sync.Once
	endRecv, endDrops uint64
}

// StreamSpec is one streamed pktcap-uw session.
type StreamSpec struct {
	Argv []string // the command line, writing to "-o -"
	// Dir is the session's direction (input, output, inputAndOutput): the
	// stream's packets carry none of their own.
	Dir   string
	Grace time.Duration // SIGINT to SIGTERM to SIGKILL; 0: 5 s
}

// streamHeaderWait bounds how long pktcap-uw may take to start writing.
const streamHeaderWait = 10 * time.Second

// OpenStream starts pktcap-uw and reads its stream's header: a session
// pktcap-uw refuses fails here, at arming, with its message.
func OpenStream(s StreamSpec) (*Stream, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("no command line")
	}
	tool, err := exec.LookPath(s.Argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Argv[0], err)
	}
	if s.Grace <= 0 {
		s.Grace = 5 * time.Second
	}
	st := &Stream{msgs: &capped{max: 64 << 10}, packets: make(chan ring.Packet, 8192), exited: make(chan error, 1),
		grace: s.Grace, done: make(chan struct{}), ptype: ring.PacketUnknown}
	switch s.Dir {
	case "input":
		st.ptype = 0 // to this host
	case "output":
		st.ptype = ring.PacketOutgoing
	}
	start := func(deathSignal bool) (*exec.Cmd, io.ReadCloser, error) {
		cmd := exec.Command(tool, s.Argv[1:]...)
		cmd.Stderr = st.msgs
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if deathSignal {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
		}
		return cmd, out, cmd.Start()
	}
	cmd, out, err := start(true)
	if err != nil && !errors.Is(err, os.ErrPermission) {
		cmd, out, err = start(false)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", tool, err)
	}
	st.cmd = cmd
	br := bufio.NewReaderSize(out, 256<<10)
	header := make(chan error, 1)
	go func() {
		nanos, err := readHeader(br)
		header <- err
		if err == nil {
			err = st.read(br, nanos)
		}
		st.err = err
		close(st.packets)
		close(st.done)
	}()
	// Wait closes the pipe: only once the reader has read it to its end
	// (os/exec), so that neither the last packets nor a refusal are lost.
	go func() {
		<-st.done
		st.exited <- cmd.Wait()
	}()
	select {
	case err = <-header:
	case <-time.After(streamHeaderWait):
		err = fmt.Errorf("pktcap-uw wrote nothing in %v", streamHeaderWait)
	}
	if err != nil {
		st.End()
		return nil, fmt.Errorf("pktcap-uw: %v: %s", err, tail(st.msgs))
	}
	return st, nil
}

// readHeader reads a pcap stream's header: it must be Ethernet; it says
// whether timestamps are in nanoseconds.
func readHeader(r io.Reader) (nanos bool, err error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return false, fmt.Errorf("no pcap header on its output: %w", err)
	}
	switch binary.LittleEndian.Uint32(h[0:]) {
	case 0xa1b2c3d4:
	case 0xa1b23c4d:
		nanos = true
	default:
		return false, fmt.Errorf("its output is not a little-endian pcap stream (magic %x)", h[0:4])
	}
	if lt := binary.LittleEndian.Uint32(h[20:]); lt != 1 {
		return false, fmt.Errorf("its output has link type %d, not Ethernet", lt)
	}
	return nanos, nil
}

// maxRecord bounds a record's length: anything larger is a broken stream.
const maxRecord = 1 << 20

// read hands every record of the stream to Next, until its end.
func (s *Stream) read(r io.Reader, nanos bool) error {
	var h [16]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return err
		}
		sec, frac := int64(binary.LittleEndian.Uint32(h[0:])), int64(binary.LittleEndian.Uint32(h[4:]))
		incl, orig := binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:])
		if incl > maxRecord {
			return fmt.Errorf("a record of %d bytes: the stream is broken", incl)
		}
		data := make([]byte, incl)
		if _, err := io.ReadFull(r, data); err != nil {
			return err
		}
		ns := sec*1e9 + frac*1000
		if nanos {
			ns = sec*1e9 + frac
		}
		s.received.Add(1)
		s.last.Store(time.Now().UnixNano())
		s.packets <- ring.Packet{Data: data, Length: int(max(orig, incl)), Nanos: ns, Type: s.ptype}
	}
}

// streamQuiet is how long after the last packet the stream may still
// hold some in pktcap-uw's and the pipe's buffers.
const streamQuiet = 250 * time.Millisecond

// Next returns the next packet (ring.ErrTimeout: none within timeout).
func (s *Stream) Next(timeout time.Duration) (ring.Packet, error) {
	select {
	case p, ok := <-s.packets:
		if ok {
			return p, nil
		}
	default:
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case p, ok := <-s.packets:
			if ok {
				return p, nil
			}
		case <-t.C:
			return ring.Packet{}, ring.ErrTimeout
		}
	}
	if s.ending.Load() {
		return ring.Packet{}, ring.ErrTimeout
	}
	return ring.Packet{}, fmt.Errorf("pktcap-uw's stream ended (%v): %s", s.err, tail(s.msgs))
}

// Pending says whether packets may still come through the pipe.
func (s *Stream) Pending() bool {
	select {
	case <-s.done:
		return false
	default:
	}
	return time.Since(time.Unix(0, s.last.Load())) < streamQuiet
}

// Gone is false: a stream that ends by itself is Next's error, with
// pktcap-uw's words (there is no interface to be removed).
func (s *Stream) Gone() bool { return false }

// Stats: the packets read so far; pktcap-uw tells its drops only at its end.
func (s *Stream) Stats() (received, dropped uint64, err error) {
	return s.received.Load(), 0, nil
}

// End stops pktcap-uw by its PID (SIGINT, then SIGTERM, then SIGKILL after
// a grace each) and returns what it says it received and dropped.
func (s *Stream) End() (received, dropped uint64) {
	s.endOnce.Do(func() {
		s.ending.Store(true)
		// Keep reading what is left, so that pktcap-uw is never blocked on
		// a full pipe while it is asked to stop.
		go func() {
			for range s.packets {
			}
		}()
		var err error
		exited := false
		for step, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
			_ = s.cmd.Process.Signal(sig)
			select {
			case err = <-s.exited:
				exited = true
			case <-time.After(s.grace):
			}
			if exited || step == 2 {
				break
			}
		}
		if !exited {
			// Killed, and still the pipe is held open (by a child of its
			// own?): give up on it rather than hang the agent.
			select {
			case err = <-s.exited:
			case <-time.After(s.grace):
			}
		}
		s.endRecv = s.received.Load()
		if dumped, dropped, ok := parseSummary(s.msgs.String()); ok {
			s.endRecv, s.endDrops = dumped+dropped, dropped
		}
		_ = err
	})
	return s.endRecv, s.endDrops
}
