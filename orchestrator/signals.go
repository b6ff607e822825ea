package orchestrator

import (
	"context"
	"errors"
	"sync"
)

// Signals carry what the person (or the system) running casecap asks of a
// command while it runs. A nil channel never fires.
type Signals struct {
	// Stop is Ctrl-C or SIGTERM. Before the captures begin it calls the
	// start off: every armed host is disarmed and the case's claim
	// released. Once they run, every capture stops together and is
	// collected; a second Stop stops waiting (they end on their own).
	Stop <-chan struct{}
	// Detach is SIGHUP (the terminal went away). Before the begin, as Stop;
	// once the captures run, casecap stops waiting at once and they run on
	// to their end, to be collected later.
	Detach <-chan struct{}
}

// ErrCalledOff says a signal came before any capture began: the start was
// called off, every armed host disarmed.
var ErrCalledOff = errors.New("the start was called off before any capture began: every armed host was disarmed and nothing was captured")

// errInterrupted is a host's phase cut short by a signal.
var errInterrupted = errors.New("interrupted")

// signal is one that came.
type signal int

const (
	sigStop signal = iota + 1
	sigDetach
)

// startGuard listens for signals while a start is prepared and armed. One
// that comes before the commit (the begin) cancels the start's context;
// those that come after are kept, in order, for watch, which acts on them
// first (two Ctrl-Cs during the begin: stop together, then stop waiting).
type startGuard struct {
	mu        sync.Mutex
	committed bool
	calledOff bool
	pending   []signal
	cancel    context.CancelFunc
	done      chan struct{} // closed by end
	stopped   chan struct{} // closed by the listener as it returns
}

// guardStart returns a context for the start that a signal cancels.
func (o *Orchestrator) guardStart(ctx context.Context) (context.Context, *startGuard) {
	ctx, cancel := context.WithCancel(ctx)
	g := &startGuard{cancel: cancel, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(g.stopped)
		for {
			var s signal
			select {
			case <-o.opt.Signals.Stop:
				s = sigStop
			case <-o.opt.Signals.Detach:
				s = sigDetach
			case <-g.done:
				return
			}
			g.mu.Lock()
			if g.committed {
				g.pending = append(g.pending, s)
			} else if !g.calledOff {
				g.calledOff = true
				o.log.Warn("signal before the begin: calling the start off, disarming every host")
				cancel()
			}
			g.mu.Unlock()
		}
	}()
	return ctx, g
}

// calledOffYet reports whether a signal has called the start off.
func (g *startGuard) calledOffYet() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calledOff
}

// commit is the point of no return, just before the begin: it reports
// whether the start was called off before it.
func (g *startGuard) commit() (calledOff bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.committed = true
	return g.calledOff
}

// end stops listening and returns the signals that came after the commit.
func (g *startGuard) end() []signal {
	close(g.done)
	<-g.stopped
	g.cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending
}
