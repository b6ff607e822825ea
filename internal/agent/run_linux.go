//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/casecap/casecap/internal/agent/capture"
	"github.com/casecap/casecap/internal/agent/pktcap"
	"github.com/casecap/casecap/internal/agent/rules"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans/filter/bpfgen"

	"github.com/casecap/casecap/internal/agent/hostclock"
)

// Options are facts about this host and this agent.
type Options struct {
	Version string
	Tcpdump string // "" to look it up on PATH
	Pktcap  string // "" to look pktcap-uw up on PATH
	// SSHConn is the SSH session the job came through (SSH_CONNECTION), left
	// out of captures that ask for it.
	SSHConn string
	// Ready, when set, receives "armed" once every capture is armed, or
	// "error ..." if arming failed; then it is closed.
	Ready io.WriteCloser
}

// Run arms every capture of the job, runs them to their ends and keeps
// status.json current. SIGINT and SIGTERM stop every capture now; SIGUSR1
// reads stop.json, a stop request for a given instant.
func Run(ctx context.Context, j *agentproto.Job, opt Options) (err error) {
	ready := func(msg string) {
		if opt.Ready != nil {
			io.WriteString(opt.Ready, msg+"\n")
			opt.Ready.Close()
			opt.Ready = nil
		}
	}
	defer func() {
		if err != nil {
			ready("error " + strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}()
	if err := os.MkdirAll(j.StateDir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(j.CaseDir, 0o750); err != nil {
		return err
	}
	if pid := runningAgent(statePath(j, agentproto.PIDFile)); pid != 0 && pid != os.Getpid() {
		return fmt.Errorf("an agent (pid %d) already runs case %s on this host; stop it first", pid, j.Case)
	}
	if err := writePID(statePath(j, agentproto.PIDFile)); err != nil {
		return err
	}
	tcpdump := opt.Tcpdump
	if tcpdump == "" {
		tcpdump, _ = exec.LookPath("tcpdump")
	}
	own, haveOwn := bpfgen.ParseSSHConnection(opt.SSHConn)
	// A session casecap came through but cannot name is not left out: the
	// capture says so rather than seem to.
	var ownNote string
	if !haveOwn && strings.TrimSpace(opt.SSHConn) != "" {
		ownNote = fmt.Sprintf("casecap's own SSH session could not be left out (SSH_CONNECTION %q is not client-address port server-address port): its packets may appear", opt.SSHConn)
	}
	st := agentproto.Status{Case: j.Case, Host: j.Host, PID: os.Getpid(), Agent: opt.Version, State: agentproto.StateArming}
	trig := newTriggers(j)
	var watch []capture.PacketWatch
	var dropRules []agentproto.Rule
	for _, r := range j.Until {
		switch {
		case r.Packet != nil:
			watch = append(watch, capture.PacketWatch{ID: r.ID, Filter: r.Packet.Filter})
		case r.DropsMin > 0:
			dropRules = append(dropRules, r)
		}
	}
	onPacket := func(rule string, p agentproto.TriggerPacket) {
		trig.fire(agentproto.Trigger{At: p.Time, Host: j.Host, Source: agentproto.TriggerRule, Rule: rule, Packet: &p})
	}

	caps := make([]engine, 0, len(j.Captures))
	closeAll := func() {
		// Arming failed: the armed ones stop now and keep valid (empty) files.
		for _, c := range caps {
			c.RequestStop(time.Unix(0, 1), agentproto.StopError)
			c.Run(context.Background())
		}
	}
	// armFailed stops what was armed and records the failure.
	armFailed := func(name string, err error) error {
		closeAll()
		st.State, st.Error = agentproto.StateFailed, fmt.Sprintf("arm %s: %v", name, err)
		_ = writeAtomic(statePath(j, agentproto.StatusFile), marshalStatus(st), 0o640)
		return errors.New(st.Error)
	}
	for _, jc := range j.Captures {
		if jc.Pktcap != nil && (jc.Ring != nil || (trig.enabled() && len(watch) > 0)) {
			// A ring, or packets to watch: the agent reads pktcap-uw's
			// stream and keeps the packets itself.
			c, err := armPktcapStream(ctx, j, jc, opt, trig.enabled(), watch, onPacket)
			if err != nil {
				return armFailed(jc.Name, err)
			}
			caps = append(caps, c)
			continue
		}
		if jc.Pktcap != nil {
			c, err := armPktcap(j, jc, opt)
			if err != nil {
				return armFailed(jc.Name, err)
			}
			caps = append(caps, c)
			continue
		}
		spec := capture.Spec{
			Name: jc.Name, File: filepath.Join(j.CaseDir, jc.File), Host: j.Host, Case: j.Case,
			Interface: jc.Interface, Direction: jc.Direction, Filter: jc.Filter,
			Exclude: jc.Exclude, Snaplen: jc.Snaplen, Start: jc.Start, Stop: jc.Stop, Pending: jc.Duration > 0,
			MaxPackets: jc.MaxPackets, MaxBytes: jc.MaxBytes, MinFree: jc.MinFree,
			Tcpdump: tcpdump, Version: opt.Version,
			Ring: jc.Ring, RingDir: filepath.Join(j.StateDir, agentproto.RingDir, jc.Name),
		}
		if trig.enabled() {
			spec.Watch, spec.OnPacket = watch, onPacket
		}
		if jc.Buffer > 0 {
			spec.Buffer.BlockSize = 1 << 20
			spec.Buffer.Blocks = int(max(1, jc.Buffer>>20))
		}
		if jc.ExcludeOwnSSH && haveOwn {
			spec.Exclude = append(spec.Exclude, own)
		} else if jc.ExcludeOwnSSH {
			spec.Note = ownNote
		}
		c, err := capture.Arm(ctx, spec)
		if err != nil {
			return armFailed(jc.Name, err)
		}
		caps = append(caps, c)
	}
	snapshot := func(state agentproto.AgentState) agentproto.Status {
		s := st
		s.State, s.Updated = state, hostclock.Now()
		s.Trigger = trig.get()
		s.Captures = make([]agentproto.CaptureStatus, len(caps))
		for i, c := range caps {
			s.Captures[i] = c.Status()
		}
		return s
	}
	if err := writeAtomic(statePath(j, agentproto.StatusFile), marshalStatus(snapshot(agentproto.StateArmed)), 0o640); err != nil {
		closeAll()
		return err
	}

	trig.set(caps)
	// The rules that need no packet start with the window (at once when
	// no capture waits for a begin); one that cannot work fails the arming.
	var ruleSet *rules.Set
	if trig.enabled() {
		var err error
		if ruleSet, err = rules.Prepare(j.Until); err != nil {
			return armFailed("trigger rules", err)
		}
		defer ruleSet.Close()
	}
	rulesCtx, stopRules := context.WithCancel(ctx)
	defer stopRules()
	startRules := func() {
		if ruleSet == nil {
			return
		}
		ruleSet.Start(rulesCtx, func(r agentproto.Rule, at time.Time, note string) {
			trig.fire(agentproto.Trigger{At: at, Host: j.Host, Source: agentproto.TriggerRule, Rule: r.ID, Note: note})
		})
		ruleSet = nil
	}
	pending := false
	for _, jc := range j.Captures {
		pending = pending || jc.Duration > 0
	}
	if !pending {
		startRules()
	}
	checkDrops := func(s agentproto.Status) {
		for _, r := range dropRules {
			for i, c := range s.Captures {
				if n, what := dropsSeen(j.Captures[i], c); n >= r.DropsMin && c.State == agentproto.CaptureCapturing {
					trig.fire(agentproto.Trigger{At: hostclock.Now(), Host: j.Host, Source: agentproto.TriggerRule, Rule: r.ID,
						Note: fmt.Sprintf("%s %s %d packets", c.Name, what, n)})
				}
			}
		}
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	ready("armed")

	var wg sync.WaitGroup
	final := make([]agentproto.CaptureStatus, len(caps))
	for i, c := range caps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			final[i] = c.Run(context.Background())
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(agentproto.StatusEvery)
	defer tick.Stop()
	for {
		select {
		case <-done:
			s := snapshot(agentproto.StateDone)
			s.Captures = final
			for _, c := range final {
				if c.State == agentproto.CaptureFailed {
					s.State = agentproto.StateFailed
				}
			}
			return writeAtomic(statePath(j, agentproto.StatusFile), marshalStatus(s), 0o640)
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				at, err := readStop(statePath(j, agentproto.StopFile))
				if err != nil {
					fmt.Fprintf(os.Stderr, "stop request: %v\n", err)
					continue
				}
				for _, c := range caps {
					c.RequestStop(at, agentproto.StopRequest)
				}
			case syscall.SIGUSR2:
				at, err := readStop(statePath(j, agentproto.BeginFile))
				if err != nil {
					fmt.Fprintf(os.Stderr, "begin request: %v\n", err)
					continue
				}
				if late := hostclock.Since(at); late > 0 {
					st.BeginLate = late
				}
				for i, c := range caps {
					if d := j.Captures[i].Duration; d > 0 {
						c.Begin(at, d)
					}
				}
				startRules()
			case syscall.SIGWINCH:
				trs, err := readTriggers(j.StateDir)
				if err != nil {
					fmt.Fprintf(os.Stderr, "trigger request: %v\n", err)
				}
				for _, tr := range trs {
					trig.fire(tr)
				}
			case syscall.SIGHUP:
				// The SSH session that started us went away: keep capturing.
			default:
				for _, c := range caps {
					c.RequestStop(hostclock.Now(), agentproto.StopSignal)
				}
			}
		case <-ctx.Done():
			for _, c := range caps {
				c.RequestStop(hostclock.Now(), agentproto.StopSignal)
			}
		case <-trig.dirty:
			_ = writeAtomic(statePath(j, agentproto.StatusFile), marshalStatus(armedIfAll(snapshot(agentproto.StateRunning))), 0o640)
		case <-tick.C:
			s := snapshot(agentproto.StateRunning)
			checkDrops(s)
			_ = writeAtomic(statePath(j, agentproto.StatusFile), marshalStatus(armedIfAll(s)), 0o640)
		}
	}
}

// dropsSeen is what a drops rule counts of a capture: the kernel's drop
// counter; on ESXi, where pktcap-uw tells its own drops only when it
// ends, a capture at the Drop point counts the packets it kept (each is
// one the host dropped).
func dropsSeen(jc agentproto.JobCapture, c agentproto.CaptureStatus) (uint64, string) {
	if jc.Pktcap != nil && slices.Contains(jc.Pktcap.Points, "Drop") {
		return max(c.Drops, c.Packets), "saw the host drop"
	}
	return c.Drops, "dropped"
}

// engine is one capture as Run drives it: the agent's own AF_PACKET
// capture (package capture) on Linux, a pktcap-uw session on ESXi.
type engine interface {
	Begin(start time.Time, duration time.Duration) bool
	RequestStop(at time.Time, reason agentproto.StopReason)
	// Trigger stops the capture at stop, around a trigger at at.
	Trigger(at, stop time.Time)
	Status() agentproto.CaptureStatus
	Run(ctx context.Context) agentproto.CaptureStatus
}

// armPktcap arms a job's pktcap-uw capture: its command line as casecap
// runs it (esxi.Session), run and followed by package pktcap.
func armPktcap(j *agentproto.Job, jc agentproto.JobCapture, opt Options) (engine, error) {
	file := filepath.Join(j.CaseDir, jc.File)
	argv, note, err := esxi.Session(*jc.Pktcap, file, *j.ESXi, jc.MaxPackets, jc.ExcludeOwnSSH, opt.SSHConn)
	if err != nil {
		return nil, err
	}
	if opt.Pktcap != "" {
		argv[0] = opt.Pktcap
	}
	return pktcap.Arm(pktcap.Spec{
		Name: jc.Name, File: file, Argv: argv, Start: jc.Start, Stop: jc.Stop, Pending: jc.Duration > 0,
		MaxPackets: jc.MaxPackets, MaxBytes: jc.MaxBytes, MinFree: jc.MinFree, Note: note,
		Host: j.Host, Case: j.Case, Version: opt.Version,
	})
}

// armPktcapStream arms a job's pktcap-uw capture as a stream read by the
// agent's own engine: pktcap-uw starts now, writing to its output, and
// the engine keeps the packets inside the window, in a ring if asked,
// checking the packet rules on each.
func armPktcapStream(ctx context.Context, j *agentproto.Job, jc agentproto.JobCapture, opt Options, triggered bool,
	watch []capture.PacketWatch, onPacket func(string, agentproto.TriggerPacket)) (engine, error) {
	src, cmdline, note, err := openPktcapStream(j, jc, opt)
	if err != nil {
		return nil, err
	}
	spec := capture.Spec{
		Name: jc.Name, File: filepath.Join(j.CaseDir, jc.File), Host: j.Host, Case: j.Case,
		Interface: "pktcap-uw session " + jc.Name, Start: jc.Start, Stop: jc.Stop, Pending: jc.Duration > 0,
		MaxPackets: jc.MaxPackets, MaxBytes: jc.MaxBytes, MinFree: jc.MinFree, Version: opt.Version, Note: note,
		Ring: jc.Ring, RingDir: filepath.Join(j.StateDir, agentproto.RingDir, jc.Name),
		Source: src, SourceFilter: cmdline,
	}
	if triggered {
		spec.Watch, spec.OnPacket = watch, onPacket
	}
	c, err := capture.Arm(ctx, spec)
	if err != nil {
		src.End()
		return nil, err
	}
	return commandNoted{c, cmdline}, nil
}

// openPktcapStream starts a job's pktcap-uw session writing to its
// output, for the agent's engine to read: the stream, its command line
// (what the capture's interface block and status record), and what the
// command line could not honour.
func openPktcapStream(j *agentproto.Job, jc agentproto.JobCapture, opt Options) (*pktcap.Stream, string, string, error) {
	argv, note, err := esxi.Session(*jc.Pktcap, "-", *j.ESXi, 0, jc.ExcludeOwnSSH, opt.SSHConn)
	if err != nil {
		return nil, "", "", err
	}
	if opt.Pktcap != "" {
		argv[0] = opt.Pktcap
	}
	src, err := pktcap.OpenStream(pktcap.StreamSpec{Argv: argv, Dir: jc.Pktcap.Dir})
	if err != nil {
		return nil, "", "", err
	}
	return src, strings.Join(append([]string{filepath.Base(argv[0])}, argv[1:]...), " "), note, nil
}

// commandNoted is a streamed pktcap-uw capture, its status naming the
// command line that makes it.
type commandNoted struct {
	*capture.Capture
	command string
}

func (c commandNoted) Status() agentproto.CaptureStatus {
	st := c.Capture.Status()
	st.Command = c.command
	return st
}

func (c commandNoted) Run(ctx context.Context) agentproto.CaptureStatus {
	st := c.Capture.Run(ctx)
	st.Command = c.command
	return st
}

func readStop(path string) (time.Time, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	var r agentproto.Instant
	if err := json.Unmarshal(raw, &r); err != nil {
		return time.Time{}, err
	}
	return r.At, nil
}
