// Package merge writes a case's captures as one pcapng in time order, on
// casecap's clock: every source interface kept as an interface of its own,
// named after its capture, its timestamps moved by its host's measured
// clock offset where the run applied it (casedir.Clock). It streams: one
// packet per source is in memory at a time, however large the case.
package merge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/analysis/internal/kway"
)

// Stats is what a merge wrote.
type Stats struct {
	Sources    int    // capture files read
	Interfaces int    // interfaces written
	Packets    uint64 // packets written
}

// readBuf is each source's read buffer.
const readBuf = 256 << 10

// source is one capture file being read.
type source struct {
	cap   casedir.Capture
	f     *os.File
	r     *pcapgo.NgReader
	shift time.Duration
	// out maps the file's interface numbers to the merged file's.
	out map[int]int
	// stats are the file's interface statistics blocks, by its interface
	// number, as they were read (the agent writes them at the end).
	stats map[int]pcapgo.NgInterfaceStatistics
	// The packet read next (valid until the next read of this source).
	data []byte
	ci   gopacket.CaptureInfo
	opts pcapgo.NgPacketOptions
	at   int64 // its timestamp on casecap's clock, Unix ns
}

// Merge writes c's captures to w as one pcapng.
func Merge(c *casedir.Case, w io.Writer) (Stats, error) {
	var st Stats
	var srcs []*source
	defer func() {
		for _, s := range srcs {
			s.f.Close()
		}
	}()
	for _, cp := range c.Captures {
		s, err := open(cp)
		if err != nil {
			return st, err
		}
		srcs = append(srcs, s)
	}
	st.Sources = len(srcs)
	bw := bufio.NewWriterSize(w, readBuf)
	var nw *pcapgo.NgWriter
	// addInterface gives a source's interface i its own interface in
	// the merged file (the writer is made with the first).
	addInterface := func(s *source, i int) error {
		in, err := s.r.Interface(i)
		if err != nil {
			return fmt.Errorf("%s: %w", s.cap.Path, err)
		}
		out := pcapgo.NgInterface{
			Name:                s.cap.Name,
			Description:         in.Description,
			Comment:             fmt.Sprintf("%s, %s: timestamps %s", s.cap.Name, s.cap.Host, s.cap.Clock),
			Filter:              in.Filter,
			OS:                  in.OS,
			LinkType:            in.LinkType,
			SnapLength:          in.SnapLength,
			TimestampResolution: 9, // nanoseconds: the offsets are
		}
		if s.r.NInterfaces() > 1 {
			out.Name = fmt.Sprintf("%s#%d", s.cap.Name, i)
			if in.Name != "" {
				out.Name += " (" + in.Name + ")"
			}
		}
		if nw == nil {
			nw, err = pcapgo.NewNgWriterInterface(bw, out, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
				Application: "casecap merge",
				Comment:     fmt.Sprintf("case %s: %d captures merged on casecap's clock", c.Name, len(c.Captures)),
			}})
			if err != nil {
				return err
			}
			s.out[i] = 0
		} else {
			id, err := nw.AddInterface(out)
			if err != nil {
				return err
			}
			s.out[i] = id
		}
		st.Interfaces++
		return nil
	}
	// Every interface the files declare up front goes in first, in the
	// case's order; one declared later in a file is added when its first
	// packet comes.
	for _, s := range srcs {
		for i := range s.r.NInterfaces() {
			if err := addInterface(s, i); err != nil {
				return st, err
			}
		}
	}
	h := kway.New(func(a, b *source) bool {
		// By time on casecap's clock, then in the case's order (a stable
		// merge of equal times).
		if a.at != b.at {
			return a.at < b.at
		}
		return a.cap.Name < b.cap.Name
	})
	for _, s := range srcs {
		ok, err := s.next()
		if err != nil {
			return st, err
		}
		if ok {
			h.Push(s)
		}
	}
	for h.Len() > 0 {
		s := h.Top()
		id, known := s.out[s.ci.InterfaceIndex]
		if !known {
			if err := addInterface(s, s.ci.InterfaceIndex); err != nil {
				return st, err
			}
			id = s.out[s.ci.InterfaceIndex]
		}
		ci := s.ci
		ci.Timestamp = time.Unix(0, s.at)
		ci.InterfaceIndex = id
		if err := nw.WritePacketWithOptions(ci, s.data, s.opts); err != nil {
			return st, err
		}
		st.Packets++
		ok, err := s.next()
		if err != nil {
			return st, err
		}
		h.Next(ok)
	}
	// The sources' interface statistics, their times moved as the
	// packets were.
	for _, s := range srcs {
		for i, isb := range s.stats {
			id, ok := s.out[i]
			if !ok {
				continue
			}
			for _, t := range []*time.Time{&isb.LastUpdate, &isb.StartTime, &isb.EndTime} {
				if !t.IsZero() {
					*t = t.Add(s.shift)
				}
			}
			if err := nw.WriteInterfaceStats(id, isb); err != nil {
				return st, err
			}
		}
	}
	if nw == nil {
		return st, errors.New("the case's captures declare no interface")
	}
	if err := nw.Flush(); err != nil {
		return st, err
	}
	return st, bw.Flush()
}

// open starts reading one capture file.
func open(cp casedir.Capture) (*source, error) {
	f, err := os.Open(cp.Path)
	if err != nil {
		return nil, err
	}
	s := &source{cap: cp, f: f, shift: cp.Clock.Shift(), out: map[int]int{}, stats: map[int]pcapgo.NgInterfaceStatistics{}}
	s.r, err = pcapgo.NewNgReader(bufio.NewReaderSize(f, readBuf), pcapgo.NgReaderOptions{
		WantMixedLinkType: true,
		StatisticsCallback: func(i int, st pcapgo.NgInterfaceStatistics) {
			s.stats[i] = st
		},
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a pcapng file casecap can read: %w", cp.Path, err)
	}
	return s, nil
}

// next reads the source's next packet; false at its end.
func (s *source) next() (bool, error) {
	data, ci, opts, err := s.r.ZeroCopyReadPacketDataWithOptions()
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.cap.Path, err)
	}
	s.data, s.ci, s.opts = data, ci, opts
	s.at = ci.Timestamp.UnixNano() + int64(s.shift)
	return true, nil
}
