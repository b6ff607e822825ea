package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
)

// Options say how to carry out a plan.
type Options struct {
	Plan              *plans.Plan
	OutDir            string // where Case_<case>/ is written; default "."
	AcceptNewHostKeys bool
	AllowPartial      bool // go on without hosts that fail before the start
	Parallel          int  // hosts worked on at once; default 64
	// Password answers password and keyboard-interactive prompts for hosts
	// whose plan names no password_env (a prompt); nil: keys only there.
	Password func(user, host string) (string, error)
	// AgentBinary returns the agent for linux/<arch> (default: embedded).
	AgentBinary func(arch string) ([]byte, error)
	// LocalAgent is the argv that runs the agent on the local host
	// (default: this executable with "agent").
	LocalAgent []string
	// Dial connects to a host (default: SSH, or this machine for local).
	Dial func(ctx context.Context, h *plans.Host) (hosts.Conn, error)
	// Collecting, if set, is called as the collect phase begins, and the
	// function it returns as it ends: casecap tunes the garbage collector
	// for the downloads there (process-wide settings are main's, not a
	// library's).
	Collecting func() (done func())
	// StopWait is how long a stop waits for the agents to report their
	// captures stopped before it says they still run (default 30 s).
	StopWait time.Duration
	Log      *slog.Logger
	// Display shows progress; nil shows nothing.
	Display Display
	// Signals are Ctrl-C, SIGTERM and SIGHUP, for run and start.
	Signals Signals
	Version string
}

// HostError is one host's failure in one phase.
type HostError struct {
	Host  string
	Phase Phase
	Err   error
}

func (e *HostError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Host, e.Phase, e.Err) }
func (e *HostError) Unwrap() error { return e.Err }

// hostRun is one host during a command: its part of the plan, the
// connection, the driver that makes its captures, what casecap learned of
// it, what this command did there, and its failure.
type hostRun struct {
	plan  *plans.Host
	conn  hosts.Conn
	drv   driver // chosen by chooseDriver; nil until the host's kind is known
	facts hostFacts
	run   hostProgress
	err   *HostError
}

// hostFacts are what casecap learned of a host before arming it.
type hostFacts struct {
	kind   plans.Kind
	os     string // "Linux 6.1.0-13-amd64" or "VMware ESXi 8.0.2"
	arch   string
	freeKB uint64
	// On ESXi: the release, and SSH_CONNECTION as the host sees casecap's
	// session (left out of pktcap-uw's captures where asked).
	esxi    *esxi.Version
	sshConn string
	// inventory is the probe's ESXi inventory: net-stats' exit status on
	// the first line, its output, and SSH_CONNECTION (see probeScript).
	inventory string
	// captures are the host's captures as resolved: the plan's, and on ESXi
	// the uplinks that `uplink: auto` found; later commands read them from
	// the run's record.
	captures  []*plans.Capture
	agent     agentproto.Argv // what runs the agent there
	agentBlob agentBlob       // the agent it must be (empty for the local host)
	verified  bool            // its copy was verified by hash in this run (or is casecap itself)
	// agentFound is the SHA-256 of the file at the agent's path when
	// preflight looked ("" if none); sharedWith is the host that put the
	// agent on the datastore this host shares, whose check verifies it.
	agentFound string
	sharedWith *hostRun
	checked    agentproto.Facts // the agent's check
	clock      clockReading     // host clock against ours, measured by the agent (see clock.go)
}

// hostProgress is what a command did on a host.
type hostProgress struct {
	// triggerSent is when a trigger was last passed on to the host.
	triggerSent time.Time
	claim       string // this run's claim of the case on the host's datastore, once made
	claimMine   bool   // made by this host (not found, made by another of this run's hosts on shared storage)
	armed       bool   // something runs there: clean up if the run aborts
	held        *held  // the arming session, kept for the begin
	// checked is closed once the check phase is over for this host, with
	// agentOK set if its agent was verified (hosts sharing its datastore
	// wait for it).
	checked   chan struct{}
	agentOK   bool
	execLat   time.Duration // how long a short agent command takes, end to end
	lineLat   time.Duration // a line's round trip on the held session, under load
	record    *Record
	status    *agentproto.Status
	readAt    time.Time         // when status was last read from the host's file
	agentGone bool              // its agent (or ssh-mode script) ended before its captures did
	collected map[string]string // files downloaded and verified (or found here and verified) by this command: their SHA-256
	asIs      map[string]bool   // of those, the files collected as they were, unverified (the agent died first)
}

func (h *hostRun) name() string { return h.plan.Name }

// Remote layout on a host's datastore.
func (h *hostRun) stateDir(p *plans.Plan) string {
	return path.Join(h.plan.Datastore, ".casecap", "cases", p.Case, h.plan.Name)
}
func (h *hostRun) caseDir(p *plans.Plan) string { return path.Join(h.plan.Datastore, p.CaseDir()) }
func agentDir(ds string) string                 { return path.Join(ds, ".casecap", "agent") }

// Orchestrator carries out one command of a plan.
type Orchestrator struct {
	opt   Options
	hosts []*hostRun
	log   *slog.Logger
	disp  Display
	runID string // random, this command's: names its claims
	// failFast: the first host that fails ends the phase for all (a start
	// without --allow-partial, until its begin).
	failFast bool
	command  string    // run, start...
	mine     caseClaim // what this run's claims of the case say

	mu      sync.Mutex
	uploads atomic.Int32
	agents  map[string]agentBlob // by architecture
	// known are the host key checkers of this command, one per known_hosts
	// setting, shared by its parallel dials.
	knownMu sync.Mutex
	known   map[string]*hosts.KnownHosts
	// pushed is told when an agent pushes a status (see held.listen).
	pushed chan struct{}
	// arming are the hosts still arming (the arm phase's clock round).
	arming *armWait
	// trigger is the trigger passed on to every host, once one fired.
	trigger *firedTrigger
}

// New prepares an orchestrator for the plan.
func New(opt Options) *Orchestrator {
	if opt.Parallel <= 0 {
		opt.Parallel = 64
	}
	if opt.StopWait <= 0 {
		opt.StopWait = watchGrace
	}
	if opt.OutDir == "" {
		opt.OutDir = "."
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o := &Orchestrator{opt: opt, log: opt.Log, disp: opt.Display, runID: newRunID(), pushed: make(chan struct{}, 1)}
	if o.disp == nil {
		o.disp = nopDisplay{}
	}
	for _, h := range opt.Plan.Hosts {
		o.hosts = append(o.hosts, &hostRun{plan: h, facts: hostFacts{kind: h.Kind, captures: h.Captures}, run: hostProgress{checked: make(chan struct{})}})
	}
	return o
}

// live are the hosts that have not failed.
func (o *Orchestrator) live() []*hostRun {
	var out []*hostRun
	for _, h := range o.hosts {
		if h.err == nil {
			out = append(out, h)
		}
	}
	return out
}

// failed are the hosts that have failed.
func (o *Orchestrator) failed() []*hostRun {
	var out []*hostRun
	for _, h := range o.hosts {
		if h.err != nil {
			out = append(out, h)
		}
	}
	return out
}

// each runs one phase on every live host, at most Parallel at once. A host
// whose phase fails is marked and skips the later phases. While failFast
// is on (a start without --allow-partial, before its begin), the first
// failure ends the phase for every host: those not started yet are never
// tried, those in flight are cut short (and are not counted as failed:
// the run failed because of the first).
func (o *Orchestrator) each(ctx context.Context, phase Phase, fn func(ctx context.Context, h *hostRun) error) {
	began := time.Now()
	defer func() { o.log.Info("phase done", "phase", phase, "took", time.Since(began)) }()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(o.opt.Parallel)
	for _, h := range o.live() {
		if pctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if pctx.Err() != nil {
				return nil
			}
			start := time.Now()
			err := fn(pctx, h)
			switch {
			case err != nil && pctx.Err() != nil && ctx.Err() == nil:
				o.log.Info(string(phase)+" cut short: another host failed first", "host", h.name(), "err", err)
			case err != nil && ctx.Err() != nil:
				o.log.Info(string(phase)+" interrupted", "host", h.name(), "err", err)
				o.fail(h, phase, errInterrupted)
			case err != nil:
				o.fail(h, phase, err)
				if o.failFast {
					cancel()
				}
			default:
				o.log.Debug(string(phase), "host", h.name(), "took", time.Since(start))
			}
			return nil
		})
	}
	_ = g.Wait()
}

// eachQuiet runs fn on the given hosts, at most Parallel at once, for work
// whose failures are logged, not the hosts' (cleaning up, marking claims).
func (o *Orchestrator) eachQuiet(ctx context.Context, hs []*hostRun, fn func(h *hostRun)) {
	var g errgroup.Group
	g.SetLimit(o.opt.Parallel)
	for _, h := range hs {
		if h.conn == nil {
			continue
		}
		g.Go(func() error {
			if ctx.Err() == nil {
				fn(h)
			}
			return nil
		})
	}
	_ = g.Wait()
}

func (o *Orchestrator) fail(h *hostRun, phase Phase, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if h.err == nil {
		h.err = &HostError{Host: h.name(), Phase: phase, Err: err}
		o.log.Error(string(phase)+" failed", "host", h.name(), "err", err)
		o.disp.HostFailed(h.name(), string(phase), err)
	}
}

// failures joins every host's failure.
func (o *Orchestrator) failures() error {
	var errs []error
	for _, h := range o.hosts {
		if h.err != nil {
			errs = append(errs, h.err)
		}
	}
	return errors.Join(errs...)
}

// ready says whether the run may go on after a preparing phase: all hosts
// are fine, or some are and partial runs are allowed.
func (o *Orchestrator) ready() bool {
	n := len(o.live())
	return n == len(o.hosts) || (o.opt.AllowPartial && n > 0)
}

// closeAll ends every held session (its end tells the agent casecap is
// done: captures that began run on) and closes every connection.
func (o *Orchestrator) closeAll() {
	for _, h := range o.hosts {
		if h.run.held != nil {
			h.run.held.proc.Stdin().Close()
		}
		if h.conn != nil {
			h.conn.Close()
		}
	}
}
