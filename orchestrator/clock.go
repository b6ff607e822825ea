package orchestrator

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// clockReading is a host's clock against casecap's, as measured: the
// offset (host minus casecap) of the probe with the shortest round trip,
// and that round trip.
type clockReading struct {
	offset time.Duration
	rtt    time.Duration
}

// uncertainty bounds the error of the offset: the answer was stamped
// somewhere inside the round trip, which the offset takes as its middle.
func (c clockReading) uncertainty() time.Duration { return c.rtt / 2 }

// correction is what instants told to the host are moved by: the measured
// offset where it is larger than its own uncertainty, and none otherwise.
// An offset inside its uncertainty is noise, and correcting by noise adds
// skew: hosts that share one clock measured offsets of -3.2 to +2.4 ms
// with 7 ms round trips, and applying them put their captures' starts
// 5.4 ms apart (issue 13).
func (c clockReading) correction() time.Duration {
	if c.offset > c.uncertainty() || -c.offset > c.uncertainty() {
		return c.offset
	}
	return 0
}

// corrected says whether the host's clock is corrected at all.
func (c clockReading) corrected() bool { return c.correction() != 0 }

func (c clockReading) String() string {
	verdict := "within it: taken as right"
	if c.corrected() {
		verdict = "corrected"
	}
	return fmt.Sprintf("clock offset %v ± %v (%s)", c.offset.Round(time.Microsecond), c.uncertainty().Round(time.Microsecond), verdict)
}

// Clock probes: at least a round's min, then more, a little apart, until
// the best round trip is at most goodRTT or the round's max were sent. A
// loaded host (or link) answers some probes late; the shortest round trip
// is the one least delayed on either way (NTP's minimum-delay filter), and
// waiting a little between probes lets a burst of load pass. A run spreads
// its probes over the time it arms: a round at check, and, unless that one
// found a small round trip, another once the host is armed, for as long as
// other hosts still arm (time the host would spend waiting anyway: the
// last host to arm sends none); the best of both counts.
const (
	goodRTT    = time.Millisecond
	probeSpace = 2 * time.Millisecond
)

// probeRound is how many probes one round sends: at least min (unless an
// earlier round's reading is good already), at most max.
type probeRound struct{ min, max int }

var (
	checkRound = probeRound{min: 4, max: 8}
	armRound   = probeRound{min: 0, max: 24} // and only while others arm
	aloneRound = probeRound{min: 8, max: 32} // a command that measures once (stop)
)

// measureClock runs the agent's clock responder on its own.
func measureClock(ctx context.Context, h *hostRun) (c clockReading, err error) {
	p, err := h.conn.Start(ctx, append(slices.Clone(h.facts.agent), agentproto.CmdClock))
	if err != nil {
		return c, err
	}
	defer func() {
		p.Stdin().Close()
		if werr := p.Wait(); err == nil && werr != nil {
			err = werr
		}
	}()
	return clockExchange(ctx, p.Stdin(), bufio.NewReader(p.Stdout()), nil, aloneRound, nil)
}

// clockExchange sends a round of clock probes and keeps the one with the
// shortest round trip (offset = host time - (t0 + t1)/2), or prev's, the
// reading of an earlier round, if it is shorter; a good prev needs no
// round at all. Past the round's min, the round also ends when until is
// closed (nil: never).
func clockExchange(ctx context.Context, w io.Writer, r *bufio.Reader, prev *clockReading, round probeRound, until <-chan struct{}) (clockReading, error) {
	best := clockReading{rtt: time.Hour}
	if prev != nil {
		if prev.rtt <= goodRTT {
			return *prev, nil
		}
		best = *prev
	}
	for n := 0; n < round.max; n++ {
		if n >= round.min {
			if best.rtt <= goodRTT || closed(until) || n > 0 && !sleep(ctx, probeSpace) {
				break
			}
		}
		t0 := time.Now()
		if _, err := w.Write([]byte("t\n")); err != nil {
			return clockReading{}, err
		}
		line, err := r.ReadString('\n')
		t1 := time.Now()
		if err != nil {
			return clockReading{}, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
		if err != nil {
			return clockReading{}, fmt.Errorf("bad clock answer %q", line)
		}
		if d := t1.Sub(t0); d < best.rtt {
			best = clockReading{offset: time.Unix(0, ns).Sub(t0.Add(d / 2)), rtt: d}
		}
	}
	return best, ctx.Err()
}

// closed says whether c is closed (a nil c never is).
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// armWait tracks the hosts still arming, for the clock round each sends
// once armed (see clockExchange).
type armWait struct {
	mu   sync.Mutex
	left map[*hostRun]bool
	all  chan struct{} // closed once no host is left arming
}

func newArmWait(hs []*hostRun) *armWait {
	a := &armWait{left: map[*hostRun]bool{}, all: make(chan struct{})}
	for _, h := range hs {
		a.left[h] = true
	}
	if len(hs) == 0 {
		close(a.all)
	}
	return a
}

// done says h is armed, or failed to (once per host; later calls do nothing).
func (a *armWait) done(h *hostRun) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.left[h] {
		return
	}
	delete(a.left, h)
	if len(a.left) == 0 {
		close(a.all)
	}
}

// others is closed once every host has armed (or failed to); nil for none
// tracked.
func (a *armWait) others() <-chan struct{} {
	if a == nil {
		return nil
	}
	return a.all
}
