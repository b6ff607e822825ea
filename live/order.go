package live

import (
	"container/heap"
	"sync"
	"time"
)

// DefaultDelay is how long a packet is held before it is shown, so that
// packets of other hosts stamped earlier but arriving later (each agent
// sends what it has at least every 100 ms, over its own SSH session) are
// shown before it.
const DefaultDelay = 500 * time.Millisecond

// Capture is one capture point of the view.
type Capture struct {
	Name string
	// Correction is the host's clock minus casecap's: subtracted from its
	// packets' timestamps.
	Correction time.Duration
}

// Feed puts the packets of every capture in time order and hands them to
// Out once they are Delay old (or all at once at Close). Feed and Drops
// may be called from many goroutines.
type Feed struct {
	Captures []Capture
	Delay    time.Duration
	Out      func(Packet)

	mu    sync.Mutex
	h     packetHeap
	links []uint16
	late  []uint64 // packets older than the last one shown when they came
	last  time.Time
	stop  chan struct{}
	done  chan struct{}
}

// Start begins handing packets out.
func (f *Feed) Start() {
	if f.Delay <= 0 {
		f.Delay = DefaultDelay
	}
	f.links = make([]uint16, len(f.Captures))
	f.late = make([]uint64, len(f.Captures))
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(f.done)
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				f.flush(time.Time{})
				return
			case now := <-t.C:
				f.flush(now.Add(-f.Delay))
			}
		}
	}()
}

// Piece takes one piece of capture i's pcapng stream.
func (f *Feed) Piece(i int, b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.Captures[i]
	return decodeBlocks(b, &f.links[i], func(ts int64, data []byte, length int, dir byte) {
		p := Packet{Capture: i, Time: time.Unix(0, ts).Add(-c.Correction), Data: append([]byte(nil), data...),
			Length: length, Dir: dir, LinkType: f.links[i]}
		heap.Push(&f.h, p)
	})
}

// LinkType is capture i's link type, once its stream said it (0 before).
func (f *Feed) LinkType(i int) uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.links[i]
}

// Late is how many packets of capture i came after a later one had been
// shown (the reordering delay was too short for them); they are shown
// all the same, out of order.
func (f *Feed) Late(i int) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.late[i]
}

// flush hands out the packets stamped before until (all: zero until).
func (f *Feed) flush(until time.Time) {
	var out []Packet
	f.mu.Lock()
	for f.h.Len() > 0 && (until.IsZero() || f.h[0].Time.Before(until)) {
		p := heap.Pop(&f.h).(Packet)
		if p.Time.Before(f.last) {
			f.late[p.Capture]++
		} else {
			f.last = p.Time
		}
		out = append(out, p)
	}
	f.mu.Unlock()
	for _, p := range out {
		f.Out(p)
	}
}

// Close hands out every packet left and stops.
func (f *Feed) Close() {
	close(f.stop)
	<-f.done
}

type packetHeap []Packet

func (h packetHeap) Len() int           { return len(h) }
func (h packetHeap) Less(i, j int) bool { return h[i].Time.Before(h[j].Time) }
func (h packetHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)        { *h = append(*h, x.(Packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
