package capture

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/casecap/casecap/internal/agent/hostclock"
	"github.com/casecap/casecap/internal/agentproto"
)

// Window is when a capture keeps packets, [start, stop): a start that may
// wait for Begin, and a stop that only ever moves earlier (the capture's
// end, a limit, a stop request). Both engines, this package's and
// pktcap-uw's, keep theirs in one; it is safe for concurrent use.
type Window struct {
	startAt    atomic.Int64 // unix ns; MaxInt64 while pending
	stopAt     atomic.Int64 // unix ns
	stopReason atomic.Value // StopReason for an early stop
}

// SetWindow sets the window before the capture runs: from start (or,
// pending, from Begin) to stop, its hard deadline.
func (w *Window) SetWindow(start, stop time.Time, pending bool) {
	w.stopAt.Store(stop.UnixNano())
	w.startAt.Store(start.UnixNano())
	if pending {
		w.startAt.Store(math.MaxInt64)
	}
}

// BeginWindow opens a pending window at start, for duration (ending no
// later than its deadline). It returns false if it already began.
func (w *Window) BeginWindow(start time.Time, duration time.Duration) bool {
	if !w.startAt.CompareAndSwap(math.MaxInt64, start.UnixNano()) {
		return false
	}
	w.RequestStop(start.Add(duration), agentproto.StopWindowEnd)
	return true
}

// RequestStop moves the end of the window earlier (never later): to at, or
// to now when at is zero.
func (w *Window) RequestStop(at time.Time, reason agentproto.StopReason) {
	if at.IsZero() {
		at = hostclock.Now()
	}
	for {
		cur := w.stopAt.Load()
		if at.UnixNano() >= cur {
			return
		}
		if w.stopAt.CompareAndSwap(cur, at.UnixNano()) {
			if reason != agentproto.StopWindowEnd {
				w.stopReason.Store(reason)
			}
			return
		}
	}
}

// StartNanos is the window's start in unix ns (MaxInt64 while pending).
func (w *Window) StartNanos() int64 { return w.startAt.Load() }

// StopNanos is the window's end in unix ns.
func (w *Window) StopNanos() int64 { return w.stopAt.Load() }

// Reason says why the window ended: the early stop's reason, or
// StopWindowEnd.
func (w *Window) Reason() agentproto.StopReason {
	if r, ok := w.stopReason.Load().(agentproto.StopReason); ok {
		return r
	}
	return agentproto.StopWindowEnd
}
