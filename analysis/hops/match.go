package hops

import (
	"sort"

	"github.com/casecap/casecap/analysis/packetkey"
	"github.com/casecap/casecap/analysis/timeline"
)

// record is one packet on its way: when each capture point first saw it,
// and how many copies each saw. A TCP segment that carries data is a byte
// range; a point saw it once its pieces there covered the whole range.
type record struct {
	key    packetkey.Key // exact records: the key they are listed by
	flow   packetkey.Flow
	first  int64    // the first sighting, casecap's clock
	seen   []int64  // per point: first sighting (0: none)
	copies []uint16 // exact records: per point, how many times (TCP ranges count by spans and again)
	// TCP data: the range, and per point the parts of it seen (spans of
	// offsets into it) and the bytes seen again (retransmissions: copies).
	data     bool
	seq, end uint32
	spans    [][]span
	again    []uint64
}

// span is a part [lo, hi) of a record's range, as offsets into it.
type span struct{ lo, hi uint32 }

// cover adds [lo, hi) to spans (sorted, apart), and says how many of its
// bytes were in them already.
func cover(spans []span, lo, hi uint32) ([]span, uint32) {
	out := make([]span, 0, len(spans)+1)
	var seen uint32
	nlo, nhi, placed := lo, hi, false
	for _, s := range spans {
		switch {
		case s.hi < nlo:
			out = append(out, s)
		case s.lo > nhi:
			if !placed {
				out, placed = append(out, span{nlo, nhi}), true
			}
			out = append(out, s)
		default: // overlapping or touching: merge
			if o := int64(min(s.hi, hi)) - int64(max(s.lo, lo)); o > 0 {
				seen += uint32(o)
			}
			nlo, nhi = min(nlo, s.lo), max(nhi, s.hi)
		}
	}
	if !placed {
		out = append(out, span{nlo, nhi})
	}
	return out, seen
}

// copiesAt is how many times point p saw the whole packet. A TCP range
// counts once for its first full covering and once more for each range's
// worth, or part of one, of its bytes seen again: a segment of which any
// part was sent again (a retransmission) was sent twice, so where the
// first point saw it twice and the second once, one was lost between.
// (The unit is the segment as the first point saw it: a 64 KB segment
// before segmentation offload, one MSS piece of which was lost and sent
// again, is one packet lost, not one of 45.)
func (r *record) copiesAt(p int) uint64 {
	if _, ok := r.at(p); !ok {
		return 0
	}
	if r.data {
		n := uint64(r.end - r.seq)
		return 1 + (r.again[p]+n-1)/n
	}
	return uint64(r.copies[p])
}

// at reports whether point p saw the whole packet, and when it began to.
func (r *record) at(p int) (int64, bool) {
	if r.seen[p] == 0 {
		return 0, false
	}
	if r.data && (len(r.spans[p]) != 1 || r.spans[p][0] != span{0, r.end - r.seq}) {
		return 0, false // some of its bytes never reached p
	}
	return r.seen[p], true
}

// matcher finds each packet at every point that saw it, from sightings in
// time order. A record is final once the window (the longest latency
// looked for) has passed since its first sighting: then final is called,
// and the record forgotten. Memory is bounded by the packets of one
// window, not by the case.
type matcher struct {
	points int
	window int64
	final  func(*record)
	exact  map[packetkey.Key]*record
	ranges map[packetkey.Flow][]*record // TCP data records, by seq
	queue  []*record                    // by first sighting
	head   int
}

func newMatcher(points int, window int64, final func(*record)) *matcher {
	return &matcher{points: points, window: window, final: final,
		exact: map[packetkey.Key]*record{}, ranges: map[packetkey.Flow][]*record{}}
}

func (m *matcher) newRecord(s *timeline.Sighting) *record {
	r := &record{flow: s.Packet.Key.Flow, first: s.At, seen: make([]int64, m.points)}
	m.queue = append(m.queue, r)
	return r
}

// add takes one sighting.
func (m *matcher) add(s *timeline.Sighting) {
	m.expire(s.At)
	p := &s.Packet
	if !p.Data {
		r := m.exact[p.Key]
		if r == nil {
			r = m.newRecord(s)
			r.key, r.copies = p.Key, make([]uint16, m.points)
			m.exact[p.Key] = r
		}
		if r.seen[s.Point] == 0 {
			r.seen[s.Point] = s.At
		}
		r.copies[s.Point]++
		return
	}
	flow, seq, end := p.Range()
	list := m.ranges[flow]
	// The records overlapping [seq, end): list is sorted by seq, and
	// records of one flow do not overlap one another.
	i := sort.Search(len(list), func(i int) bool { return after(list[i].end, seq) })
	covered := uint32(0)
	for j := i; j < len(list) && before(list[j].seq, end); j++ {
		r := list[j]
		lo, hi := maxSeq(seq, r.seq), minSeq(end, r.end)
		covered += hi - lo
		if r.seen[s.Point] == 0 {
			r.seen[s.Point] = s.At
		}
		// The bytes seen here, as spans of the range: a piece fills its
		// part (a retransmission may fill a hole after later pieces
		// came); bytes seen here already count as a copy, so a repeated
		// piece never stands in for a missing one.
		var again uint32
		r.spans[s.Point], again = cover(r.spans[s.Point], lo-r.seq, hi-r.seq)
		r.again[s.Point] += uint64(again)
	}
	if covered >= end-seq {
		return
	}
	// Bytes no record holds yet: new records for the gaps.
	at := seq
	var fresh []*record
	for j := i; j < len(list) && before(list[j].seq, end); j++ {
		if before(at, list[j].seq) {
			fresh = append(fresh, m.rangeRecord(s, at, list[j].seq))
		}
		at = maxSeq(at, list[j].end)
	}
	if before(at, end) {
		fresh = append(fresh, m.rangeRecord(s, at, end))
	}
	inOrder := len(list) == 0 || !before(fresh[0].seq, list[len(list)-1].end)
	list = append(list, fresh...)
	if !inOrder {
		// A retransmission of bytes before the flow's newest, or a gap
		// filled: rare; the common case (new bytes) appends in order.
		sort.Slice(list, func(a, b int) bool { return before(list[a].seq, list[b].seq) })
	}
	m.ranges[flow] = list
}

func (m *matcher) rangeRecord(s *timeline.Sighting, seq, end uint32) *record {
	r := m.newRecord(s)
	r.data, r.seq, r.end, r.spans, r.again = true, seq, end, make([][]span, m.points), make([]uint64, m.points)
	r.seen[s.Point], r.spans[s.Point] = s.At, []span{{0, end - seq}}
	return r
}

// expire finalizes the records whose window has passed by now.
func (m *matcher) expire(now int64) {
	for m.head < len(m.queue) && now-m.queue[m.head].first > m.window {
		m.finish(m.queue[m.head])
		m.queue[m.head] = nil
		m.head++
	}
	if m.head > 4096 && m.head*2 > len(m.queue) {
		m.queue = append(m.queue[:0], m.queue[m.head:]...)
		m.head = 0
	}
}

// flush finalizes every record left, at the end of the case.
func (m *matcher) flush() {
	for ; m.head < len(m.queue); m.head++ {
		m.finish(m.queue[m.head])
	}
	m.queue, m.head = nil, 0
}

func (m *matcher) finish(r *record) {
	if r.data {
		list := m.ranges[r.flow]
		// Records of a flow do not overlap: find r by its seq (expired
		// records are at the front, mostly).
		i := sort.Search(len(list), func(i int) bool { return !before(list[i].seq, r.seq) })
		if i < len(list) && list[i] == r {
			if i == 0 {
				list = list[1:]
			} else {
				list = append(list[:i], list[i+1:]...)
			}
		}
		if len(list) == 0 {
			delete(m.ranges, r.flow)
		} else {
			m.ranges[r.flow] = list
		}
	} else if m.exact[r.key] == r {
		delete(m.exact, r.key)
	}
	m.final(r)
}

// Sequence numbers compare modulo 2^32 (RFC 1982).
func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(a-b) > 0 }
func maxSeq(a, b uint32) uint32 {
	if after(a, b) {
		return a
	}
	return b
}
func minSeq(a, b uint32) uint32 {
	if before(a, b) {
		return a
	}
	return b
}
