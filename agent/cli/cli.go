// Package cli is casecap-agent's command line, shared by the agent binary
// and by casecap itself (`casecap agent ...`), which is the agent on the
// local host.
//
//	start JOB|-            run JOB (or a job read from stdin) detached; return once every capture is armed
//	run JOB                run JOB in the foreground
//	begin DIR [--at TIME]  start the pending captures of the agent in DIR
//	stop DIR [--at TIME]   stop the agent of state directory DIR (idempotent)
//	status DIR             print its status.json, with whether it still runs
//	check [--clock]        this host's facts, as JSON (for preflight); with --clock, then the clock
//	clock                  answer each line on stdin with this host's time
//	version
package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/casecap/casecap/agent"
)

// Main runs one agent command; self is the argv that runs this agent (the
// binary, or casecap and "agent"). It returns the exit code.
func Main(self []string, args []string, version string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprintln(stderr, "usage: casecap-agent start|run JOB | begin|stop|status STATEDIR | check | clock | version")
		return 2
	}
	var err error
	out := func(v any) error {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "start":
		err = start(self, rest, out)
	case "run":
		err = run(rest, version)
	case "begin":
		err = begin(rest, out)
	case "stop":
		err = stop(rest, out)
	case "status":
		err = status(rest, out)
	case "check":
		err = check(rest, version, stdout)
	case "clock":
		err = agent.Clock(os.Stdin, stdout)
	case "version":
		fmt.Fprintln(stdout, version)
	default:
		fmt.Fprintf(stderr, "casecap-agent: unknown command %q\n", cmd)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "casecap-agent:", err)
		return 1
	}
	return 0
}

func oneArg(fs *flag.FlagSet, args []string) (string, error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s takes one argument", fs.Name())
	}
	return fs.Arg(0), nil
}

func start(self []string, args []string, out func(any) error) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for every capture to be armed")
	path, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	var j *agent.Job
	if path == "-" {
		// One round trip for the whole arm: the job comes on stdin and is
		// stored in its state directory here.
		raw, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		j = new(agent.Job)
		if err := json.Unmarshal(raw, j); err != nil {
			return fmt.Errorf("job on stdin: %w", err)
		}
		if err := j.Check(); err != nil {
			return err
		}
		if path, err = agent.WriteJob(j); err != nil {
			return err
		}
	} else if j, err = agent.ReadJob(path); err != nil {
		return err
	}
	began := time.Now()
	pid, err := agent.StartDetached(self, path, j, *timeout)
	if err != nil {
		return err
	}
	return out(map[string]any{"pid": pid, "state": agent.StateArmed, "arming_ns": time.Since(began)})
}

// check prints the host's facts; with --clock it then answers clock probes
// on the same session (preflight's facts and clock in one round trip).
func check(args []string, version string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	clock := fs.Bool("clock", false, "answer clock probes after the facts")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := json.Marshal(agent.Check(version))
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil || !*clock {
		return err
	}
	return agent.Clock(os.Stdin, stdout)
}

func run(args []string, version string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	readyFD := fs.Int("ready-fd", 0, "file descriptor to report \"armed\" on")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here (for performance work)")
	path, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	j, err := agent.ReadJob(path)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	opt := agent.Options{Version: version, SSHConn: os.Getenv("SSH_CONNECTION")}
	if *readyFD > 0 {
		opt.Ready = os.NewFile(uintptr(*readyFD), "ready")
	}
	// A closed stdout must not kill the agent half-way through a file.
	signal.Ignore(syscall.SIGPIPE)
	return agent.Run(context.Background(), j, opt)
}

// dirAt reads the arguments of begin and stop: DIR [--at TIME].
func dirAt(name string, args []string) (string, time.Time, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	at := fs.String("at", "", "the instant (RFC 3339, this host's clock); default now")
	dir, err := oneArg(fs, args)
	if err != nil || *at == "" {
		return dir, time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, *at)
	if err != nil {
		return dir, t, fmt.Errorf("--at: %w", err)
	}
	return dir, t, nil
}

func begin(args []string, out func(any) error) error {
	dir, t, err := dirAt("begin", args)
	if err != nil {
		return err
	}
	if err := agent.RequestBegin(dir, t); err != nil {
		return err
	}
	return out(map[string]any{"begun": true, "now": time.Now()})
}

func stop(args []string, out func(any) error) error {
	dir, t, err := dirAt("stop", args)
	if err != nil {
		return err
	}
	running, err := agent.RequestStop(dir, t)
	if err != nil {
		return err
	}
	return out(map[string]any{"running": running, "now": time.Now()})
}

func status(args []string, out func(any) error) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	st, err := agent.ReadStatus(dir)
	if err != nil {
		return err
	}
	return out(st)
}
