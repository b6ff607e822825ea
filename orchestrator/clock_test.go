package orchestrator

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"testing"
	"time"
)

// TestClockCorrection: an offset is applied only where it is larger than
// its uncertainty (half the round trip); inside it, the host's clock is
// taken as right.
func TestClockCorrection(t *testing.T) {
	for _, c := range []struct {
		offset, rtt, want time.Duration
	}{
		{3 * time.Millisecond, 7 * time.Millisecond, 0},                    // noise: -3.15 to +2.38 ms at 7 ms, the lab under load
		{-3 * time.Millisecond, 7 * time.Millisecond, 0},                   // the same, the other way
		{4 * time.Millisecond, 7 * time.Millisecond, 4 * time.Millisecond}, // beyond 3.5 ms
		{-2 * time.Hour, 2 * time.Millisecond, -2 * time.Hour},             // a host clock far off
		{300 * time.Microsecond, 200 * time.Microsecond, 300 * time.Microsecond},
		{0, 0, 0},
	} {
		r := clockReading{offset: c.offset, rtt: c.rtt}
		if got := r.correction(); got != c.want || r.corrected() != (c.want != 0) {
			t.Errorf("offset %v rtt %v: correction %v (corrected %v), want %v", c.offset, c.rtt, got, r.corrected(), c.want)
		}
	}
}

// TestClockExchangeProbesUntilSmall: against a host whose answers are late
// at first, more probes are sent, spaced, until the round trip is small,
// and the offset is the one of the fastest probe; a host that answers
// fast at once gets the minimum.
func TestClockExchangeProbesUntilSmall(t *testing.T) {
	for _, c := range []struct {
		name      string
		slowFirst int // probes answered late
		wantMin   int
		wantMax   int
	}{
		// (a little room above the minimum: a probe of this in-process
		// fake can still be preempted past 1 ms on a busy machine)
		{"fast", 0, aloneRound.min, aloneRound.min + 2},
		{"slow at first", 20, 21, 23},
		{"always slow", aloneRound.max + 5, aloneRound.max, aloneRound.max},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := &fakeClock{slowFirst: c.slowFirst, offset: 40 * time.Millisecond}
			r, err := clockExchange(context.Background(), host, bufio.NewReader(host), nil, aloneRound, nil)
			if err != nil {
				t.Fatal(err)
			}
			if host.probes < c.wantMin || host.probes > c.wantMax {
				t.Errorf("%d probes, want %d to %d", host.probes, c.wantMin, c.wantMax)
			}
			if c.slowFirst <= aloneRound.max && (r.rtt > 3*goodRTT || r.offset < 39*time.Millisecond || r.offset > 41*time.Millisecond) {
				t.Errorf("reading %v after a fast probe, want the offset near 40ms", r)
			}
		})
	}
}

// TestClockRoundsSpread: a run's probes come in two rounds, at check and
// once armed. A host slow throughout check gets a second round, for as long
// as other hosts still arm, and the best reading of both counts; one whose
// check found a small round trip gets none, and so does the last to arm.
func TestClockRoundsSpread(t *testing.T) {
	host := &fakeClock{slowFirst: checkRound.max, offset: 40 * time.Millisecond}
	r := bufio.NewReader(host)
	first, err := clockExchange(context.Background(), host, r, nil, checkRound, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host.probes != checkRound.max || first.rtt < 4*time.Millisecond {
		t.Fatalf("check: %d probes, reading %v; want %d slow ones", host.probes, first, checkRound.max)
	}
	others := make(chan struct{}) // still arming
	second, err := clockExchange(context.Background(), host, r, &first, armRound, others)
	if err != nil {
		t.Fatal(err)
	}
	if n := host.probes - checkRound.max; n < 1 || n > 3 || second.rtt > 3*goodRTT || second.offset < 39*time.Millisecond || second.offset > 41*time.Millisecond {
		t.Errorf("armed: %d more probes, reading %v; want a few, fast, the offset near 40ms", n, second)
	}
	// A good reading already: no second round.
	before := host.probes
	if again, err := clockExchange(context.Background(), host, r, &clockReading{offset: time.Millisecond, rtt: goodRTT / 2}, armRound, others); err != nil || host.probes != before || again.offset != time.Millisecond {
		t.Errorf("after a good check: %d probes, reading %v (%v); want none and the check's", host.probes-before, again, err)
	}
	// A worse second round keeps the first's reading; it goes on while
	// others arm, and stops when they are done.
	slow := &fakeClock{slowFirst: 1 << 30, offset: 40 * time.Millisecond}
	good := clockReading{offset: 7 * time.Millisecond, rtt: 2 * time.Millisecond}
	time.AfterFunc(30*time.Millisecond, func() { close(others) })
	if kept, err := clockExchange(context.Background(), slow, bufio.NewReader(slow), &good, armRound, others); err != nil || kept != good {
		t.Errorf("a slower round replaced a better reading: %v (%v)", kept, err)
	}
	if slow.probes < 2 || slow.probes >= armRound.max {
		t.Errorf("%d probes while others armed for 30 ms (7 ms each); want a few, fewer than the round's max", slow.probes)
	}
	// The last to arm: none.
	last := &fakeClock{slowFirst: 1 << 30}
	if _, err := clockExchange(context.Background(), last, bufio.NewReader(last), &good, armRound, others); err != nil || last.probes != 0 {
		t.Errorf("the last host to arm sent %d probes (%v), want none", last.probes, err)
	}
}

// fakeClock answers probes with its clock (ours plus offset); the first
// slowFirst answers take 5 ms.
type fakeClock struct {
	slowFirst, probes int
	offset            time.Duration
	pending           []byte
}

func (f *fakeClock) Write(p []byte) (int, error) {
	f.probes++
	if f.probes <= f.slowFirst {
		time.Sleep(5 * time.Millisecond)
	}
	f.pending = strconv.AppendInt(f.pending, time.Now().Add(f.offset).UnixNano(), 10)
	f.pending = append(f.pending, '\n')
	return len(p), nil
}

func (f *fakeClock) Read(p []byte) (int, error) {
	if len(f.pending) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}
