// Package labtest starts a lab for a Go test and removes it when the test
// ends, even when it fails. Lab tests skip with the reason when the lab cannot
// run here (not root, no namespaces), and fail instead under CI=true, so that
// CI cannot go green by skipping them.
package labtest

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/ciskip"
	"github.com/casecap/casecap/internal/lab/seqcast"
)

// KeepEnv, when set to 1, keeps a failing test's lab up for debugging; the
// test log says how to remove it afterwards.
const KeepEnv = "CASECAP_LAB_KEEP"

// Require skips (or, under CI=true, fails) the test when labs cannot run.
func Require(t testing.TB) {
	t.Helper()
	if err := lab.Available(); err != nil {
		ciskip.Skipf(t, "skipping lab test: %v", err)
	}
}

// Start brings up a lab of n hosts for the test.
func Start(t testing.TB, n int) *lab.Lab {
	t.Helper()
	return StartWith(t, lab.Options{Hosts: n})
}

// StartWith brings up a lab with explicit options.
func StartWith(t testing.TB, opt lab.Options) *lab.Lab {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, opt)
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv(KeepEnv) == "1" {
			t.Logf("lab %d kept for debugging in %s; remove it with: go run ./internal/lab/cmd/lab down %d", l.ID, l.Dir, l.ID)
			return
		}
		if err := l.Close(); err != nil {
			t.Errorf("close lab %d: %v", l.ID, err)
		}
		if left := l.Leftovers(); len(left) > 0 {
			t.Errorf("lab %d left behind: %v", l.ID, left)
		}
	})
	return l
}

// Stream sends a numbered broadcast stream (seqcast, UDP port 9999) from
// the lab's gateway to every host, one packet per interval, until the test
// ends: the traffic most lab tests capture and then count.
func Stream(t testing.TB, l *lab.Lab, stream uint32, interval time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		seqcast.Send(ctx, seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: stream, Interval: interval})
	}()
	t.Cleanup(func() { cancel(); <-done })
}
