package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/casecap/casecap/examples"
	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/progress"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// orchestrateFlags are the flags of the commands that reach hosts.
func orchestrateFlags(out bool) []cli.Flag {
	fs := []cli.Flag{
		jsonFlag(),
		&cli.BoolFlag{Name: strings.TrimPrefix(hosts.AcceptNewFlag, "--"), Usage: "record the keys of hosts not yet in known_hosts (check their fingerprints first); a changed key is always refused"},
		&cli.IntFlag{Name: "parallel", Value: 64, Usage: "hosts worked on at once"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log every step on stderr"},
	}
	if out {
		fs = append(fs, &cli.StringFlag{Name: "out", Value: ".", Usage: "write the case folder Case_<case>/ under this directory"})
	}
	return fs
}

// loadPlan loads PLAN, or the embedded demo with --demo (under a case id
// of its own, so that every demo run gets a fresh case folder).
func loadPlan(c *cli.Context) (*plans.Plan, error) {
	if c.IsSet("demo") && c.Bool("demo") {
		if c.NArg() > 0 {
			return nil, usageError{"run takes either PLAN or --demo, not both"}
		}
		data, err := examples.FS.ReadFile(examples.LocalDemoFile)
		if err != nil {
			return nil, err
		}
		p, err := plans.Parse("examples/"+examples.LocalDemoFile, data)
		if err != nil {
			return nil, err
		}
		p.Case = "demo-" + time.Now().UTC().Format("20060102-150405")
		return p, nil
	}
	file, err := planArg(c)
	if err != nil {
		return nil, err
	}
	return plans.Load(file)
}

// prompter asks for a password on the terminal, once per user, for hosts
// whose plan names no password_env.
func prompter() func(user, host string) (string, error) {
	var mu sync.Mutex
	asked := map[string]string{}
	return func(user, host string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if pw, ok := asked[user]; ok {
			return pw, nil
		}
		in, out, err := openTerminal()
		if err != nil {
			return "", errors.New("a password is needed and there is no terminal to ask on: set ssh.password_env in the plan")
		}
		defer in.Close()
		defer out.Close()
		fmt.Fprintf(out, "password for %s (used for every host that asks for %s): ", user, user)
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(out)
		if err != nil {
			return "", err
		}
		asked[user] = string(b)
		return string(b), nil
	}
}

// session is one orchestrating command's setup.
type session struct {
	plan    *plans.Plan
	orch    *orchestrator.Orchestrator
	logFile *os.File
}

// newSession sets up an orchestrating command; collects: it writes the
// case folder (its log goes there too).
func newSession(c *cli.Context, p *plans.Plan, collects bool, sigs orchestrator.Signals) (*session, error) {
	level := slog.LevelWarn
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	handlers := []slog.Handler{slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level})}
	s := &session{plan: p}
	out := "."
	if collects {
		out = c.String("out")
		dir := filepath.Join(out, p.CaseDir())
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, "casecap.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		s.logFile = f
		handlers = append(handlers, slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	tty := false
	if f, ok := c.App.ErrWriter.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	var disp orchestrator.Display
	if !c.Bool("json") || tty {
		disp = progress.New(c.App.ErrWriter, tty)
	}
	s.orch = orchestrator.New(orchestrator.Options{
		Plan:              p,
		OutDir:            out,
		AcceptNewHostKeys: c.Bool(strings.TrimPrefix(hosts.AcceptNewFlag, "--")),
		AllowPartial:      c.Bool("allow-partial"),
		Parallel:          c.Int("parallel"),
		Password:          prompter(),
		Log:               slog.New(slog.NewMultiHandler(handlers...)),
		Display:           disp,
		Signals:           sigs,
		Collecting:        tuneGCForDownloads,
		Version:           version,
	})
	return s, nil
}

func (s *session) close() {
	if s.logFile != nil {
		s.logFile.Close()
	}
}

// watchSignals turns Ctrl-C and SIGTERM into the orchestrator's Stop and
// SIGHUP into its Detach, for run and start (see orchestrator.Signals).
func watchSignals() (orchestrator.Signals, func()) {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	stop, detach := make(chan struct{}, 4), make(chan struct{}, 4)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sig:
				to := stop
				if s == syscall.SIGHUP {
					to = detach
				}
				select {
				case to <- struct{}{}:
				default: // enough of them queued
				}
			case <-done:
				return
			}
		}
	}()
	return orchestrator.Signals{Stop: stop, Detach: detach}, func() { signal.Stop(sig); close(done) }
}

// cancelOnSignal is for commands that simply stop on Ctrl-C, SIGTERM or
// SIGHUP (status, stop, collect: each can be run again).
func cancelOnSignal(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
}

// report prints the result: JSON with --json, else a table and the errors.
func report(c *cli.Context, m *orchestrator.Manifest, err error) error {
	if c.Bool("json") {
		if werr := writeJSON(c.App.Writer, m); werr != nil {
			return werr
		}
	} else {
		printSummary(c.App.Writer, m)
	}
	if err != nil {
		return runtimeError{err}
	}
	return nil
}

// runtimeError is a failure already reported in the summary: exit 1.
type runtimeError struct{ error }

func printSummary(w io.Writer, m *orchestrator.Manifest) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tFILE\tSTATE\tPACKETS\tBYTES\tDROPS\tSIZE\tCOLLECTED")
	caps := append([]orchestrator.ManifestCapture(nil), m.Captures...)
	sort.SliceStable(caps, func(i, j int) bool { return caps[i].Host < caps[j].Host })
	for _, c := range caps {
		state := c.State
		if c.StopReason != "" {
			state += " (" + c.StopReason + ")"
		}
		collected := "-"
		switch {
		case c.Collected && c.Verified:
			collected = "yes, verified"
		case c.Collected:
			collected = "yes, NOT verified"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", c.Host, c.File, state, c.Packets, humanize.IBytes(c.Bytes), c.Drops, humanize.IBytes(uint64(c.Size)), collected)
	}
	tw.Flush()
	for _, h := range m.Hosts {
		if h.Note != "" {
			fmt.Fprintf(w, "note: %s (%s mode): %s\n", h.Name, h.Mode, h.Note)
		}
	}
	printClocks(w, m)
	for _, c := range caps {
		if r := c.Ring; r != nil && (c.State == "capturing" || c.State == "armed") {
			oldest := "none yet"
			if !r.Oldest.IsZero() {
				oldest = r.Oldest.Local().Format("15:04:05.000")
			}
			fmt.Fprintf(w, "ring: %s: %d segments, %s, oldest packet %s, %d rotated out\n", c.File, r.Segments, humanize.IBytes(uint64(r.Bytes)), oldest, r.Deleted)
		}
		if c.Note != "" {
			fmt.Fprintf(w, "note: %s: %s\n", c.File, c.Note)
		}
	}
	if t := m.Trigger; t != nil {
		fmt.Fprintf(w, "trigger: %s on %s at %s (casecap's clock); every capture kept up to %v after it\n", t.Source, t.Host, t.At.Local().Format("15:04:05.000"), t.PostNs)
		if t.Rule != "" {
			fmt.Fprintf(w, "  rule: %s\n", t.Rule)
		}
		if t.Note != "" {
			fmt.Fprintf(w, "  saw: %s\n", t.Note)
		}
		if t.PacketFile != "" {
			fmt.Fprintf(w, "  packet: seen by %s, saved as %s\n", t.PacketCapture, t.PacketFile)
		}
	}
	for _, e := range m.Errors {
		fmt.Fprintln(w, "error:", e)
	}
	for _, c := range caps {
		if c.Error != "" {
			fmt.Fprintf(w, "error: %s: %s: %s\n", c.Host, c.File, c.Error)
		}
	}
	if m.CaseDir != "" {
		fmt.Fprintf(w, "case folder: %s\n", m.CaseDir)
	}
}

// orchestratedCommand is a command that carries out one orchestrator
// method on the plan.
type orchestratedCommand struct {
	name, usage string
	do          func(*orchestrator.Orchestrator, context.Context) (*orchestrator.Manifest, error)
	// doFlags, when set, gives do from the command's flags.
	doFlags func(*cli.Context) func(*orchestrator.Orchestrator, context.Context) (*orchestrator.Manifest, error)
	// collects: it writes into the case folder (and takes --out).
	collects bool
	// signals: the orchestrator acts on Ctrl-C, SIGTERM and SIGHUP itself;
	// otherwise a signal simply ends the command, to be run again.
	signals bool
	flags   []cli.Flag
}

// orchestrated builds an orchestrated command.
func orchestrated(oc orchestratedCommand) *cli.Command {
	return planCommand(oc.name, oc.usage, "",
		func(c *cli.Context, _ string) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			if oc.name == "trigger" && !p.Triggered() {
				return usageError{"the plan has no until: rules and no ring: there is nothing to trigger (casecap stop stops the captures)"}
			}
			ctx := c.Context
			sigs, stop := watchSignals()
			if !oc.signals {
				stop()
				sigs = orchestrator.Signals{}
				var cancel context.CancelFunc
				ctx, cancel = cancelOnSignal(ctx)
				defer cancel()
			} else {
				defer stop()
			}
			s, err := newSession(c, p, oc.collects, sigs)
			if err != nil {
				return err
			}
			defer s.close()
			do := oc.do
			if oc.doFlags != nil {
				do = oc.doFlags(c)
			}
			m, err := do(s.orch, ctx)
			if errors.Is(err, orchestrator.ErrCalledOff) {
				fmt.Fprintln(c.App.ErrWriter, "casecap:", err)
			}
			return report(c, m, err)
		}, append(orchestrateFlags(oc.collects)[1:], oc.flags...)...)
}

// tuneGCForDownloads runs the garbage collector at 400% instead of 100%
// while collecting: downloads churn through SFTP buffers while the live
// heap stays small (tens of MiB). It returns the restore. Measured
// (BENCHMARKS.md, "Collect"): 4 to 9% more throughput on one 512 MiB
// download; set for the whole run instead, it raised the 100-host run's
// peak RSS from 84-92 to 93-120 MiB, so it is set for the collect phase
// only. GOGC in the environment wins.
func tuneGCForDownloads() (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	old := debug.SetGCPercent(400)
	return func() { debug.SetGCPercent(old) }
}

// printClocks says which hosts' clocks were corrected, by how much and
// with what uncertainty, and that the others were taken as right (their
// offsets were within their uncertainty).
func printClocks(w io.Writer, m *orchestrator.Manifest) {
	var fixed, right []string
	for _, h := range m.Hosts {
		switch {
		case h.RTTNs == 0: // not measured (ssh mode, or never reached)
		case h.ClockCorrected:
			sign := "+"
			if h.ClockOffsetNs < 0 {
				sign = "" // the duration carries its minus
			}
			fixed = append(fixed, fmt.Sprintf("%s %s%v ± %v", h.Name, sign, h.ClockOffsetNs.Round(time.Microsecond), h.ClockUncertaintyNs.Round(time.Microsecond)))
		default:
			right = append(right, h.Name)
		}
	}
	if len(fixed) > 0 {
		fmt.Fprintf(w, "clocks corrected: %s\n", strings.Join(fixed, ", "))
	}
	if len(right) > 0 {
		fmt.Fprintf(w, "clocks taken as right (offset within its uncertainty): %d of %d hosts\n", len(right), len(m.Hosts))
	}
}
