package hops

import "math/bits"

// histogram keeps latencies (ns) in log-linear buckets: 64 to each power
// of two, so a quantile is within 1/64 (1.6%) of the truth whatever the
// number of packets; max is exact. Negative latencies (a clock offset
// larger than the hop) count as 0.
type histogram struct {
	n       uint64
	max     int64
	buckets [64 * 64]uint64
}

const subBuckets = 64

func bucketOf(v int64) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - 7 // v >> e is in [64, 128)
	return (e+1)*subBuckets + int(v>>e) - subBuckets
}

// low is the smallest value of bucket i.
func low(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	e := i/subBuckets - 1
	return int64(i%subBuckets+subBuckets) << e
}

func (h *histogram) add(v int64) {
	h.n++
	h.max = max(h.max, v)
	if i := bucketOf(v); i < len(h.buckets) {
		h.buckets[i]++
	} else {
		h.buckets[len(h.buckets)-1]++
	}
}

// quantile is the value below which a fraction q of the latencies are
// (the middle of its bucket, and never above max).
func (h *histogram) quantile(q float64) int64 {
	want := uint64(q * float64(h.n))
	if want >= h.n {
		want = h.n - 1
	}
	var seen uint64
	for i, c := range h.buckets {
		seen += c
		if seen > want {
			mid := (low(i) + low(i+1)) / 2
			return min(mid, h.max)
		}
	}
	return h.max
}
