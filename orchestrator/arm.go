package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casecap/casecap/internal/agentproto"

	"github.com/casecap/casecap/hosts"
)

// armHost makes every capture of the host ready, the driver's way, with
// casecap's record of the run stored beside the captures' state.
func (o *Orchestrator) armHost(ctx context.Context, h *hostRun) error {
	defer o.arming.done(h) // a host that fails to arm is not waited for
	p := o.opt.Plan
	h.run.record = &Record{Casecap: o.opt.Version, Case: p.Case, Host: h.name(), Address: h.plan.Address, Kind: h.facts.kind,
		OS: h.facts.os, Arch: h.facts.arch, Agent: h.facts.agent, ClockOffset: h.facts.clock.offset, RTT: h.facts.clock.rtt, ArmedAt: time.Now(),
		Mode: h.drv.mode(), Captures: h.facts.captures}
	record, err := json.Marshal(h.run.record)
	if err != nil {
		return err
	}
	if err := h.drv.arm(ctx, o, h, record); err != nil {
		return err
	}
	o.disp.HostPhase(h.name(), "armed") // ssh mode was said at check
	return nil
}

// hold keeps an armed host's session for its begin, once it has measured
// the session's own latency, now, under the load of every host arming:
// what a begin line will cost. From here on the session outlives the arm
// phase: the begin or a cleanup closes it.
func (h *hostRun) hold(hs *held) error {
	pinged := time.Now()
	if ans, err := hs.send([]byte("ping\n")); err != nil || string(ans) != "pong\n" {
		hs.close()
		return fmt.Errorf("the held session does not answer (%q): %v", ans, err)
	}
	h.run.lineLat = time.Since(pinged)
	if !hs.detach() {
		hs.close() // the phase ended (another host failed first): no begin will come
		return errInterrupted
	}
	h.run.held = hs
	return nil
}

// held is the session that armed a host's captures, kept open for their
// begin: one line each way on an open session, instead of a new session
// and a new process per host at the moment that matters. Its end before a
// begin disarms the host's captures.
type held struct {
	proc   hosts.Process
	out    *bufio.Reader
	once   sync.Once
	result error // the process's exit, once ended
	// cancel ends the session; unhook stops the phase's context from
	// ending it (it returns false if that already happened); nil once
	// detached.
	cancel context.CancelFunc
	unhook func() bool
	// Once listening (after the begin), a reader owns out: it keeps the
	// pushed statuses and hands the answers to send; over is closed when
	// the session's output ends.
	answers chan []byte
	over    chan struct{}
	pushed  atomic.Pointer[agentproto.Status]
}

// listen hands out to a reader from now on (the agent pushes its status
// after the begin): status lines are kept (the latest; wake is told, if
// it is not told already), other lines are answers for send.
func (hs *held) listen(wake chan<- struct{}) {
	hs.answers, hs.over = make(chan []byte, 4), make(chan struct{})
	go func() {
		defer close(hs.over)
		defer close(hs.answers)
		for {
			b, err := hs.out.ReadBytes('\n')
			if err != nil {
				return
			}
			st, ok, err := agentproto.ParseStatusLine(b)
			switch {
			case ok && err == nil:
				hs.pushed.Store(st)
				select {
				case wake <- struct{}{}:
				default:
				}
			case !ok:
				hs.answers <- b
			}
		}
	}()
}

// listening says whether the session has a reader (listen).
func (hs *held) listening() bool { return hs.over != nil }

// status is the latest pushed status (nil: none yet), and whether it is
// current: the session is still open (a change would come on it), or its
// last word was the captures' end. When it is not, casecap reads the
// status file.
func (hs *held) status() (*agentproto.Status, bool) {
	st := hs.pushed.Load()
	select {
	case <-hs.over:
		return st, finished(st)
	default:
		return st, true
	}
}

// detach lets the session outlive the phase that started it; false if the
// phase ended first (the session is then being ended).
func (hs *held) detach() bool {
	if hs.unhook == nil {
		return true
	}
	ok := hs.unhook()
	hs.unhook = nil
	return ok
}

// startHeld starts the session that will be held: a context of its own,
// which the phase's context ends only until the host is armed (a failure
// elsewhere then cuts the arming short), so that it lives past the phase.
func startHeld(phase context.Context, c hosts.Conn, argv []string) (*held, error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(phase))
	unhook := context.AfterFunc(phase, cancel)
	proc, err := c.Start(ctx, argv)
	if err != nil {
		unhook()
		cancel()
		return nil, err
	}
	return &held{proc: proc, out: bufio.NewReader(proc.Stdout()), cancel: cancel, unhook: unhook}, nil
}

// send writes a line and reads the answer line; when the far end has gone,
// the error is its exit status and stderr.
func (hs *held) send(line []byte) ([]byte, error) {
	_, werr := hs.proc.Stdin().Write(line)
	var ans []byte
	var rerr error
	if hs.listening() {
		var ok bool
		if ans, ok = <-hs.answers; !ok {
			rerr = io.EOF
		}
	} else {
		ans, rerr = hs.out.ReadBytes('\n')
	}
	if werr == nil && rerr == nil {
		return ans, nil
	}
	if err := hs.close(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("the agent's start ended without answering: %v", errors.Join(werr, rerr))
}

// close ends the session (once; later calls return the same result); the
// captures stay armed until a begin from another session, a stop, or their
// hard deadline.
func (hs *held) close() error {
	hs.once.Do(func() {
		hs.proc.Stdin().Close()
		hs.result = hs.proc.Wait()
		if hs.cancel != nil {
			hs.cancel()
		}
	})
	return hs.result
}
