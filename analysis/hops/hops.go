// Package hops answers where a case's packets were lost and how long each
// hop took: it finds each packet at every capture point that saw it
// (matcher, with packetkey's names), learns from the data which point
// comes first on each flow's path, and counts, for each hop between two
// consecutive points, the packets that reached its first point, those
// that reached its second, their latency, duplicates and reorderings.
// Two passes over the case: the first learns the paths and each hop's
// largest latency (the in-flight edge at a window's end), the second
// counts. Memory is bounded by one matching window of packets, the flows
// and the seconds of the case, never by its packets.
package hops

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/analysis/packetkey"
	"github.com/casecap/casecap/analysis/timeline"
)

// Options for Analyze.
type Options struct {
	// Window is the longest latency looked for between two points: a
	// packet not seen at a hop's second point within it of its first is
	// lost there (default 1 s).
	Window time.Duration
}

// DefaultWindow is Options.Window's default.
const DefaultWindow = time.Second

// Analyze analyzes the case's captures.
func Analyze(c *casedir.Case, opt Options) (*Report, error) {
	if opt.Window <= 0 {
		opt.Window = DefaultWindow
	}
	n := len(c.Captures)
	l := newLearner(n)
	m := newMatcher(n, int64(opt.Window), l.final)
	st, err := timeline.Read(c, func(s *timeline.Sighting) {
		l.saw(s)
		m.add(s)
	})
	if err != nil {
		return nil, err
	}
	m.flush()
	cnt := newCounter(c, l)
	m = newMatcher(n, int64(opt.Window), cnt.final)
	if _, err := timeline.Read(c, m.add); err != nil {
		return nil, err
	}
	m.flush()
	r := cnt.report(c)
	r.Frames, r.Packets = st.Frames, st.Decoded
	return r, nil
}

// learner is the first pass: for each pair of points, how often a packet
// both saw reached the second after the first, and the largest such
// latency; for each flow direction, when each point saw its packets
// (relative to their first sighting); each point's first and last
// sighting.
type learner struct {
	n           int
	pairs       [][]pairLearn
	dirs        map[packetkey.Flow]*dirLearn
	first, last []int64
}

type pairLearn struct {
	both, ahead uint64
	maxLatency  int64
}

type dirLearn struct {
	records uint64
	count   []uint64
	rel     []float64 // sum of (sighting - first sighting), ns
}

func newLearner(n int) *learner {
	l := &learner{n: n, dirs: map[packetkey.Flow]*dirLearn{}, first: make([]int64, n), last: make([]int64, n)}
	l.pairs = make([][]pairLearn, n)
	for i := range l.pairs {
		l.pairs[i] = make([]pairLearn, n)
	}
	return l
}

func (l *learner) saw(s *timeline.Sighting) {
	if l.first[s.Point] == 0 {
		l.first[s.Point] = s.At
	}
	l.last[s.Point] = s.At
}

func (l *learner) final(r *record) {
	d := l.dirs[r.flow]
	if d == nil {
		d = &dirLearn{count: make([]uint64, l.n), rel: make([]float64, l.n)}
		l.dirs[r.flow] = d
	}
	d.records++
	for a := range l.n {
		ta, ok := r.at(a)
		if !ok {
			continue
		}
		d.count[a]++
		d.rel[a] += float64(ta - r.first)
		for b := range l.n {
			tb, ok := r.at(b)
			if !ok || a == b {
				continue
			}
			p := &l.pairs[a][b]
			p.both++
			if tb > ta {
				p.ahead++
				p.maxLatency = max(p.maxLatency, tb-ta)
			}
		}
	}
}

// path is the points that saw a flow direction's packets, in the order
// its packets reached them: by their mean time after the first sighting,
// and where that ties (points a microsecond apart), by which of two saw
// most of the packets both saw first.
func (l *learner) path(flow packetkey.Flow) []int {
	d := l.dirs[flow]
	if d == nil {
		return nil
	}
	var most uint64
	for _, c := range d.count {
		most = max(most, c)
	}
	var pts []int
	for p, c := range d.count {
		// A point that saw a trace of the flow (a stray copy) is not on
		// its path.
		if c > 0 && c*100 >= most {
			pts = append(pts, p)
		}
	}
	mean := func(p int) float64 { return d.rel[p] / float64(d.count[p]) }
	sort.SliceStable(pts, func(i, j int) bool {
		a, b := pts[i], pts[j]
		if math.Abs(mean(a)-mean(b)) > 1e3 { // 1 µs
			return mean(a) < mean(b)
		}
		return l.pairs[a][b].ahead > l.pairs[b][a].ahead
	})
	return pts
}

// counter is the second pass: it counts each hop of each flow's path.
type counter struct {
	l       *learner
	paths   map[packetkey.Flow]*pathCount // each flow direction's path, found once
	windows [][2]int64                    // per point: its window, casecap's clock
	start   int64                         // the report's window
	hops    map[[2]int]*hopCount
	// pathUse counts the packets that took each path (by its points).
	pathUse map[string]*pathCount
}

type pathCount struct {
	points []int
	n      uint64
}

type hopCount struct {
	packets, lost, dups, reordered uint64
	latency                        histogram
	perSecond                      map[int64]*secondCount
	flows                          map[packetkey.Flow]*flowCount
	// eligible: a packet counts if it reached the first point within
	// [from, to): both points' windows, less the in-flight edge.
	from, to int64
}

type secondCount struct{ packets, lost uint64 }

type flowCount struct {
	packets, lost uint64
	// The latest arrival at the second point so far, and when that
	// packet reached the first (reorderings).
	lastArrival, lastDeparture int64
}

func newCounter(c *casedir.Case, l *learner) *counter {
	cnt := &counter{l: l, paths: map[packetkey.Flow]*pathCount{}, hops: map[[2]int]*hopCount{}, pathUse: map[string]*pathCount{}}
	for i, cp := range c.Captures {
		from, to := timeline.Window(cp)
		w := [2]int64{l.first[i], l.last[i] + 1}
		if !from.IsZero() && !to.IsZero() {
			w = [2]int64{from.UnixNano(), to.UnixNano()}
		}
		cnt.windows = append(cnt.windows, w)
	}
	cnt.start = math.MaxInt64
	for _, w := range cnt.windows {
		if w[0] != 0 {
			cnt.start = min(cnt.start, w[0])
		}
	}
	if cnt.start == math.MaxInt64 {
		cnt.start = 0 // no point saw a packet
	}
	return cnt
}

func (cnt *counter) hop(a, b int) *hopCount {
	k := [2]int{a, b}
	h := cnt.hops[k]
	if h == nil {
		// Both windows, less the packets still in flight at the end:
		// those that reached a later than b's end less the hop's
		// largest latency may have reached b after it stopped.
		wa, wb := cnt.windows[a], cnt.windows[b]
		h = &hopCount{perSecond: map[int64]*secondCount{}, flows: map[packetkey.Flow]*flowCount{},
			from: max(wa[0], wb[0]), to: min(wa[1], wb[1]) - cnt.l.pairs[a][b].maxLatency}
		cnt.hops[k] = h
	}
	return h
}

func (cnt *counter) final(r *record) {
	pc, ok := cnt.paths[r.flow]
	if !ok {
		path := cnt.l.path(r.flow)
		sig := fmt.Sprint(path)
		if pc = cnt.pathUse[sig]; pc == nil {
			pc = &pathCount{points: path}
			cnt.pathUse[sig] = pc
		}
		cnt.paths[r.flow] = pc
	}
	path := pc.points
	if len(path) > 1 {
		pc.n++
	}
	for i := 0; i+1 < len(path); i++ {
		a, b := path[i], path[i+1]
		ta, ok := r.at(a)
		if !ok {
			continue
		}
		h := cnt.hop(a, b)
		if ta < h.from || ta >= h.to {
			continue
		}
		// Each copy that reached a is a packet; those b saw as often are
		// delivered, the rest lost there; more at b are duplicates. (A
		// TCP segment lost and sent again reached a twice and b once.)
		na, nb := r.copiesAt(a), r.copiesAt(b)
		lost := na - min(na, nb)
		h.packets += na
		h.lost += lost
		sec := (ta - cnt.start) / int64(time.Second)
		s := h.perSecond[sec]
		if s == nil {
			s = &secondCount{}
			h.perSecond[sec] = s
		}
		s.packets += na
		s.lost += lost
		f := h.flows[r.flow]
		if f == nil {
			f = &flowCount{}
			h.flows[r.flow] = f
		}
		f.packets += na
		f.lost += lost
		if nb > na {
			h.dups += nb - na
		}
		tb, ok := r.at(b)
		if !ok || na != nb {
			// Where a copy was lost (or one came twice), the first
			// sighting at b may be another copy's than a's first (a
			// retransmission's): no latency or order can be read from
			// it.
			continue
		}
		h.latency.add(tb - ta)
		// Reordered: it reached a after the packet that reached b last so
		// far, and b before it (it overtook that one). Records come in
		// the order of their first sighting, which is not always their
		// order at a (one first seen at a, sent before the first point's
		// capture began, comes after those seen earlier upstream): the
		// order at a is what counts.
		if tb < f.lastArrival && ta > f.lastDeparture {
			h.reordered++
		}
		if tb > f.lastArrival {
			f.lastArrival, f.lastDeparture = tb, ta
		}
	}
}

// report sums the hops up, in path order.
func (cnt *counter) report(c *casedir.Case) *Report {
	r := &Report{Hops: []Hop{}, Flows: []FlowLoss{}}
	for _, cp := range c.Captures {
		r.Points = append(r.Points, cp.Name)
		if cp.Drops > 0 {
			if r.CaptureDrops == nil {
				r.CaptureDrops = map[string]uint64{}
			}
			r.CaptureDrops[cp.Name] = cp.Drops
		}
	}
	// Hops in the order of the paths they are on, the paths by how many
	// packets took them; a hop on several paths is listed once.
	var paths []*pathCount
	for _, pc := range cnt.pathUse {
		if len(pc.points) > 1 {
			paths = append(paths, pc)
		}
	}
	sort.Slice(paths, func(i, j int) bool {
		if paths[i].n != paths[j].n {
			return paths[i].n > paths[j].n
		}
		return fmt.Sprint(paths[i].points) < fmt.Sprint(paths[j].points)
	})
	var keys [][2]int
	listed := map[[2]int]bool{}
	for _, pc := range paths {
		var names []string
		for _, p := range pc.points {
			names = append(names, c.Captures[p].Name)
		}
		r.Paths = append(r.Paths, Path{Points: names, Packets: pc.n})
		for i := 0; i+1 < len(pc.points); i++ {
			k := [2]int{pc.points[i], pc.points[i+1]}
			if !listed[k] && cnt.hops[k] != nil {
				listed[k] = true
				keys = append(keys, k)
			}
		}
	}
	from, to := int64(math.MaxInt64), int64(math.MinInt64)
	for _, k := range keys {
		h := cnt.hops[k]
		if h.packets == 0 {
			continue
		}
		from, to = min(from, h.from), max(to, h.to)
		a, b := c.Captures[k[0]], c.Captures[k[1]]
		hop := Hop{From: a.Name, To: b.Name, Packets: h.packets, Lost: h.lost, Loss: float64(h.lost) / float64(h.packets),
			Duplicates: h.dups, Reordered: h.reordered, UncertaintyMs: ms(uncertainty(a, b))}
		if h.latency.n > 0 {
			hop.Latency = &Latency{P50: ms(h.latency.quantile(0.50)), P99: ms(h.latency.quantile(0.99)), Max: ms(h.latency.max)}
		}
		secs := make([]int64, 0, len(h.perSecond))
		for s := range h.perSecond {
			secs = append(secs, s)
		}
		slices.Sort(secs)
		for _, s := range secs {
			sc := h.perSecond[s]
			hop.PerSecond = append(hop.PerSecond, Second{At: time.Unix(0, cnt.start+s*int64(time.Second)).UTC(), Packets: sc.packets, Lost: sc.lost})
		}
		r.Hops = append(r.Hops, hop)
		for f, fc := range h.flows {
			if fc.lost > 0 {
				r.Flows = append(r.Flows, FlowLoss{Flow: flowString(f), From: a.Name, To: b.Name, Packets: fc.packets, Lost: fc.lost})
			}
		}
	}
	sort.Slice(r.Flows, func(i, j int) bool {
		if r.Flows[i].Lost != r.Flows[j].Lost {
			return r.Flows[i].Lost > r.Flows[j].Lost
		}
		return r.Flows[i].Flow < r.Flows[j].Flow
	})
	if len(r.Flows) > MaxFlows {
		r.Flows = r.Flows[:MaxFlows]
	}
	if from < to {
		r.Window = &Window{Start: time.Unix(0, from).UTC(), Stop: time.Unix(0, to).UTC()}
	}
	return r
}

// MaxFlows is how many of the flows that lost most the report lists.
const MaxFlows = 10

// uncertainty bounds a latency's error from the two hosts' clocks: none
// on one host (one clock).
func uncertainty(a, b casedir.Capture) time.Duration {
	if a.Host == b.Host {
		return 0
	}
	return a.Clock.Uncertainty + b.Clock.Uncertainty
}

// ms is nanoseconds in milliseconds.
func ms[T time.Duration | int64](ns T) float64 { return float64(ns) / 1e6 }

func flowString(f packetkey.Flow) string {
	proto := map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}[f.Proto]
	if proto == "" {
		proto = fmt.Sprintf("proto %d", f.Proto)
	}
	if f.SrcPort == 0 && f.DstPort == 0 {
		return fmt.Sprintf("%s %s > %s", proto, f.Src, f.Dst)
	}
	return fmt.Sprintf("%s %s > %s", proto, netAddrPort(f.Src.String(), f.SrcPort, f.Src.Is6()), netAddrPort(f.Dst.String(), f.DstPort, f.Dst.Is6()))
}

func netAddrPort(a string, port uint16, v6 bool) string {
	if v6 {
		return fmt.Sprintf("[%s]:%d", a, port)
	}
	return fmt.Sprintf("%s:%d", a, port)
}
