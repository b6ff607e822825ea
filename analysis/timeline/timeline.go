// Package timeline reads a case's captures as one stream of sightings in
// time order on casecap's clock (each host's timestamps moved as merge
// moves them), each decoded to the packet it is (packetkey). It streams:
// one frame per capture is in memory at a time.
package timeline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/analysis/internal/kway"
	"github.com/casecap/casecap/analysis/packetkey"
)

// Sighting is one frame of one capture.
type Sighting struct {
	Point  int   // the capture's index in the case
	At     int64 // casecap's clock, Unix ns
	Packet packetkey.Packet
}

// Stats counts what a timeline read.
type Stats struct {
	Frames  uint64 // frames read
	Decoded uint64 // of those, IP packets decoded to a key
}

// Read calls fn with every sighting of c's captures in time order; frames
// that are not IP are counted and skipped. fn's Sighting is valid for the
// call only.
func Read(c *casedir.Case, fn func(*Sighting)) (Stats, error) {
	var st Stats
	srcs := make([]*source, 0, len(c.Captures))
	defer func() {
		for _, s := range srcs {
			s.f.Close()
		}
	}()
	h := kway.New(func(a, b *source) bool {
		if a.sighting.At != b.sighting.At {
			return a.sighting.At < b.sighting.At
		}
		return a.sighting.Point < b.sighting.Point
	})
	for i, cp := range c.Captures {
		s, err := open(i, cp)
		if err != nil {
			return st, err
		}
		srcs = append(srcs, s)
		ok, err := s.next(&st)
		if err != nil {
			return st, err
		}
		if ok {
			h.Push(s)
		}
	}
	for h.Len() > 0 {
		s := h.Top()
		fn(&s.sighting)
		ok, err := s.next(&st)
		if err != nil {
			return st, err
		}
		h.Next(ok)
	}
	return st, nil
}

type source struct {
	f        *os.File
	r        *pcapgo.NgReader
	path     string
	shift    int64
	dec      packetkey.Decoder
	sighting Sighting
}

const readBuf = 256 << 10

func open(i int, cp casedir.Capture) (*source, error) {
	f, err := os.Open(cp.Path)
	if err != nil {
		return nil, err
	}
	r, err := pcapgo.NewNgReader(bufio.NewReaderSize(f, readBuf), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a pcapng file casecap can read: %w", cp.Path, err)
	}
	return &source{f: f, r: r, path: cp.Path, shift: int64(cp.Clock.Shift()), sighting: Sighting{Point: i}}, nil
}

// next reads the source's next IP packet; false at its end.
func (s *source) next(st *Stats) (bool, error) {
	for {
		data, ci, err := s.r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s: %w", s.path, err)
		}
		st.Frames++
		intf, err := s.r.Interface(ci.InterfaceIndex)
		if err != nil {
			return false, fmt.Errorf("%s: %w", s.path, err)
		}
		p, ok := s.dec.Decode(intf.LinkType, data)
		if !ok {
			continue
		}
		st.Decoded++
		s.sighting.At = ci.Timestamp.UnixNano() + s.shift
		s.sighting.Packet = p
		return true, nil
	}
}

// Window is a capture's window on casecap's clock: from its start to its
// stop as the manifest has them, moved like its packets; zero when the
// manifest does not say.
func Window(cp casedir.Capture) (start, stop time.Time) {
	if !cp.Start.IsZero() {
		start = cp.Start.Add(cp.Clock.Shift())
	}
	if !cp.Stop.IsZero() {
		stop = cp.Stop.Add(cp.Clock.Shift())
	}
	return start, stop
}
