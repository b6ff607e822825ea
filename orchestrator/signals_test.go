package orchestrator

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// TestStartGuard: a signal before the commit calls the start off (its
// context ends); those after it are kept for watch, in order.
func TestStartGuard(t *testing.T) {
	stop, detach := make(chan struct{}, 4), make(chan struct{}, 4)
	o := &Orchestrator{opt: Options{Signals: Signals{Stop: stop, Detach: detach}}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	ctx, g := o.guardStart(context.Background())
	stop <- struct{}{}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a signal before the commit did not end the start's context")
	}
	if !g.commit() || !g.calledOffYet() {
		t.Error("the start was not called off")
	}
	if got := g.end(); len(got) != 0 {
		t.Errorf("signals kept for watch after a called-off start: %v", got)
	}

	ctx, g = o.guardStart(context.Background())
	if g.commit() {
		t.Fatal("called off with no signal")
	}
	// One at a time, as signals come: each taken before the next is sent
	// (the listener files what it took before it takes another).
	send := func(ch chan struct{}) {
		ch <- struct{}{}
		for deadline := time.Now().Add(5 * time.Second); len(ch) > 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	send(stop)
	send(detach)
	send(stop)
	if ctx.Err() != nil {
		t.Error("a signal after the commit ended the start's context")
	}
	if got, want := g.end(), []signal{sigStop, sigDetach, sigStop}; !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}
