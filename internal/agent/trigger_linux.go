//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/casecap/casecap/internal/agent/hostclock"
	"github.com/casecap/casecap/internal/agentproto"
)

// triggers is a job's trigger: the earliest the host heard of, from its
// own rules, from casecap trigger, or from another host through casecap.
// Every capture stops at its instant plus the plan's post; ring captures
// keep their packets from its instant minus their keep.
type triggers struct {
	post  time.Duration
	host  string
	dirty chan struct{} // a new trigger: write the status now

	mu      sync.Mutex
	current *agentproto.Trigger
	caps    []engine
}

func newTriggers(j *agentproto.Job) *triggers {
	return &triggers{post: j.Post, host: j.Host, dirty: make(chan struct{}, 1)}
}

// enabled says whether the job stops on a trigger at all.
func (t *triggers) enabled() bool { return t.post > 0 }

// set records the engines a trigger stops (they may already have one).
func (t *triggers) set(caps []engine) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.caps = caps
	if t.current != nil {
		for _, c := range caps {
			c.Trigger(t.current.At, t.current.Stop)
		}
	}
}

// fire keeps tr if it is the earliest so far, and makes every capture
// stop around it. It returns the trigger the host keeps.
func (t *triggers) fire(tr agentproto.Trigger) *agentproto.Trigger {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.enabled() {
		return nil
	}
	if !tr.Earlier(t.current) {
		return t.current
	}
	tr.Stop, tr.Heard = tr.At.Add(t.post), hostclock.Now()
	t.current = &tr
	for _, c := range t.caps {
		c.Trigger(tr.At, tr.Stop)
	}
	select {
	case t.dirty <- struct{}{}:
	default:
	}
	fmt.Fprintf(os.Stderr, "trigger: %s\n", tr.String())
	return t.current
}

// get is the trigger the host keeps, nil before one.
func (t *triggers) get() *agentproto.Trigger {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current == nil {
		return nil
	}
	c := *t.current
	return &c
}

// RequestTrigger passes a trigger to the agent running in stateDir (the
// trigger command, and serve's trigger line): the agent reads TriggerFile
// on SIGWINCH (a signal of its own: stop.json, read on SIGUSR1, may be an
// earlier request's). It answers with whether an agent runs there; the trigger it
// keeps shows in its status.
func RequestTrigger(stateDir string, tr agentproto.Trigger) (running bool, err error) {
	pid := runningAgent(stateDir + "/" + agentproto.PIDFile)
	if pid == 0 {
		return false, nil
	}
	b, err := json.Marshal(tr)
	if err != nil {
		return true, err
	}
	name := fmt.Sprintf("trigger.%d.%d.json", time.Now().UnixNano(), os.Getpid())
	if err := writeAtomic(stateDir+"/"+name, b, 0o600); err != nil {
		return true, err
	}
	if err := syscall.Kill(pid, syscall.SIGWINCH); err != nil {
		return true, fmt.Errorf("signal the agent (pid %d): %w", pid, err)
	}
	return true, nil
}

// readTriggers reads and removes the trigger requests of a state
// directory.
func readTriggers(dir string) ([]agentproto.Trigger, error) {
	files, err := filepath.Glob(filepath.Join(dir, agentproto.TriggerFiles))
	if err != nil {
		return nil, err
	}
	var out []agentproto.Trigger
	var errs []error
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil {
			os.Remove(f)
			var tr agentproto.Trigger
			if err = json.Unmarshal(raw, &tr); err == nil {
				out = append(out, tr)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return out, errors.Join(errs...)
}
