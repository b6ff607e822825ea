package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// armSlack is how long armed captures wait for their begin before their
// hard deadline ends them anyway (if casecap died in between).
const armSlack = 2 * time.Minute

// linuxAgent: the agent captures from AF_PACKET rings on a Linux host.
type linuxAgent struct{ agentCmds }

func (linuxAgent) resolve(context.Context, *Orchestrator, *hostRun) error { return nil }

// checkFacts: root, each captured interface, and tcpdump where a raw
// filter expression needs compiling.
func (linuxAgent) checkFacts(h *hostRun) error {
	errs := []error{checkRoot(h.facts.checked)}
	names := map[string]bool{"any": true}
	var all []string
	for _, i := range h.facts.checked.Interfaces {
		names[i.Name] = true
		all = append(all, i.Name)
	}
	for _, c := range h.facts.captures {
		if c.Target.Kind == plans.TargetInterface && !names[c.Target.Name] {
			errs = append(errs, fmt.Errorf("%s: no interface %q on this host; it has %s", c.File, c.Target.Name, strings.Join(all, ", ")))
		}
		if c.Filter.Expr != "" && h.facts.checked.Tcpdump == "" {
			errs = append(errs, fmt.Errorf("%s: the filter's expr needs tcpdump on the host to compile it, and there is none; install tcpdump or use structured filter keys", c.File))
		}
	}
	return errors.Join(errs...)
}

func (d linuxAgent) arm(ctx context.Context, o *Orchestrator, h *hostRun, record []byte) error {
	return d.armJob(ctx, o, h, o.job(h, record, nil))
}

// esxiAgent: the agent runs and follows pktcap-uw sessions on an ESXi host.
type esxiAgent struct {
	agentCmds
	esxiPorts
}

// checkFacts: pktcap-uw needs root; what it captures was resolved from
// net-stats.
func (*esxiAgent) checkFacts(h *hostRun) error { return checkRoot(h.facts.checked) }

func (d *esxiAgent) arm(ctx context.Context, o *Orchestrator, h *hostRun, record []byte) error {
	return d.armJob(ctx, o, h, o.job(h, record, d.sessions))
}

func checkRoot(f agentproto.Facts) error {
	if f.UID != 0 {
		return fmt.Errorf("capturing needs root; casecap runs as uid %d there (set ssh.user: root)", f.UID)
	}
	return nil
}

// direction maps Linux points to the agent's direction.
func direction(points []string) bpfgen.Direction {
	rx, tx := slices.Contains(points, "Rx"), slices.Contains(points, "Tx")
	switch {
	case rx && !tx:
		return bpfgen.In
	case tx && !rx:
		return bpfgen.Out
	}
	return bpfgen.Both
}

// job is what the agent on h runs: every capture armed, waiting for begin;
// on ESXi, each a pktcap-uw session (by file).
func (o *Orchestrator) job(h *hostRun, record []byte, sessions map[string]esxi.Capture) *agentproto.Job {
	p := o.opt.Plan
	j := &agentproto.Job{Version: agentproto.JobVersion, Case: p.Case, Host: h.name(), StateDir: h.stateDir(p), CaseDir: h.caseDir(p),
		ESXi: h.facts.esxi, Record: record, Until: jobRules(p, h.name()), Post: p.Post}
	hostNow := time.Now().Add(h.facts.clock.correction())
	for _, c := range h.facts.captures {
		jc := agentproto.JobCapture{
			Name: strings.TrimSuffix(c.File, ".pcapng"), File: c.File,
			Interface: c.Target.Name, Direction: direction(c.Points),
			Filter: c.Filter, ExcludeOwnSSH: c.ExcludeOwnSSH, Snaplen: c.Snaplen,
			Duration: c.Duration, Stop: hostNow.Add(c.Duration + armSlack),
			MaxPackets: c.MaxPackets, MaxBytes: c.MaxBytes, MinFree: c.MinFree, Buffer: c.Buffer,
		}
		if r := c.Ring; r != nil {
			jc.Ring = &agentproto.Ring{Keep: r.Keep, KeepBytes: r.KeepBytes, Segment: r.Segment, SegmentBytes: r.SegmentBytes}
		}
		if pc, ok := sessions[c.File]; ok {
			jc.Pktcap = &pc
		}
		j.Captures = append(j.Captures, jc)
	}
	return j
}

// agentCmds is what both agent drivers do the same way: the agent's
// commands (agentproto.Argv) over the host's connection.
type agentCmds struct{}

func (agentCmds) mode() Mode   { return ModeAgent }
func (agentCmds) note() string { return "" }

// armJob arms the host on the agent's serve session, which check opened
// and held (see armOnServe): the job, with casecap's record of the run, as
// one line; the agent stores both on the datastore, refuses to clobber an
// earlier run's files, and answers once every capture is armed.
func (agentCmds) armJob(ctx context.Context, o *Orchestrator, h *hostRun, j *agentproto.Job) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return err
	}
	hs := h.run.held
	if hs == nil {
		return errors.New("no agent session held from check to arm on")
	}
	return armOnServe(ctx, o, h, hs, raw)
}

// begin tells the agent the instant on its own clock: on the serve
// session, which stays open for a stop and from then on brings the
// captures' status as it changes; with none (it is gone), by a begin
// command.
func (agentCmds) begin(ctx context.Context, o *Orchestrator, h *hostRun, t0 time.Time) error {
	at := t0.Add(h.facts.clock.correction())
	if hs := h.run.held; hs != nil {
		if _, err := hs.send(agentproto.BeginLine(at)); err != nil {
			h.run.held = nil
			return err
		}
		hs.listen(o.pushed)
		return nil
	}
	_, err := h.conn.Run(ctx, h.facts.agent.Begin(at, h.stateDir(o.opt.Plan)), nil)
	return err
}

// stop tells the agent the instant on its own clock. No agent there to
// stop: it ended; if its captures had not, it died.
func (agentCmds) stop(ctx context.Context, o *Orchestrator, h *hostRun, t1 time.Time) error {
	at := t1.Add(h.facts.clock.correction())
	var out []byte
	var err error
	if hs := h.run.held; hs != nil {
		// On the run's serve session; if it is gone, a new session.
		if out, err = hs.send(agentproto.StopLine(at)); err != nil {
			h.run.held = nil
		}
	}
	if out == nil {
		if out, err = h.conn.Run(ctx, h.facts.agent.Stop(at, h.stateDir(o.opt.Plan)), nil); err != nil {
			return err
		}
	}
	var ans agentproto.StopAnswer
	if json.Unmarshal(out, &ans) == nil && !ans.Running {
		h.run.agentGone = !finished(h.run.status)
	}
	return nil
}

// disarm stops the agent now and waits for it to end: captures that never
// began leave no file, so that nothing of this start is in the way of the
// next.
func (agentCmds) disarm(ctx context.Context, o *Orchestrator, h *hostRun) error {
	_, err := h.conn.Run(ctx, h.facts.agent.StopWait(10*time.Second, h.stateDir(o.opt.Plan)), nil)
	return err
}

// ended asks the agent for its status: whether it still runs is known
// only on the host.
func (agentCmds) ended(ctx context.Context, o *Orchestrator, h *hostRun) (bool, error) {
	out, err := h.conn.Run(ctx, h.facts.agent.Status(h.stateDir(o.opt.Plan)), nil)
	if err != nil {
		return false, err
	}
	var st agentproto.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return false, fmt.Errorf("the agent's status: %w", err)
	}
	h.run.status = &st
	return !st.Alive && !finished(&st), nil
}

func (agentCmds) measureClock(ctx context.Context, h *hostRun) error {
	var err error
	h.facts.clock, err = measureClock(ctx, h)
	return err
}

// collected: the agent's status counted every file's packets.
func (agentCmds) collected(string, *agentproto.CaptureStatus) error { return nil }

// armOnServe arms the host on the serve session check opened: the job as
// one line, answered once every capture is armed, then a ping that times
// the session under the load of every host arming. Until then a failure
// elsewhere (the phase's end) ends the session, which disarms the host.
func armOnServe(ctx context.Context, o *Orchestrator, h *hostRun, hs *held, job []byte) error {
	release := context.AfterFunc(ctx, hs.cancel)
	began := time.Now()
	h.run.armed = true // from here on something may run there
	ans, err := hs.send(agentproto.JobLine(job))
	if err != nil {
		h.run.held = nil
		return err
	}
	var armed agentproto.Armed
	if err := json.Unmarshal(ans, &armed); err != nil {
		h.run.held = nil
		hs.close()
		return fmt.Errorf("the agent's answer to the job: %q: %w", bytes.TrimSpace(ans), err)
	}
	h.run.execLat = max(time.Since(began)-armed.Arming, 0)
	h.run.held = nil
	// The ping first: its round trip is timed under the load of the other
	// hosts arming, which is what the begin's margin must cover.
	if err := h.hold(hs); err != nil {
		return err
	}
	// The clock again, while the other hosts arm (see clockExchange):
	// the best reading of check's and this counts.
	o.arming.done(h)
	if h.facts.clock, err = clockExchange(ctx, hs.proc.Stdin(), hs.out, &h.facts.clock, armRound, o.arming.others()); err != nil {
		h.run.held = nil
		hs.close()
		return fmt.Errorf("measure the clock: %w", err)
	}
	if !release() {
		h.run.held = nil
		hs.close()
		return errInterrupted
	}
	return nil
}
