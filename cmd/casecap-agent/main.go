// Command casecap-agent is casecap's capture agent, deployed by the
// orchestrator to each host's datastore and run there over SSH. It is built
// static (CGO_ENABLED=0) for linux/amd64 and linux/arm64 and stays small: it
// links the capture engine and nothing of the orchestrator.
//
//	casecap-agent start JOB      run JOB detached; return once every capture is armed
//	casecap-agent run JOB        run JOB in the foreground
//	casecap-agent stop DIR [--at TIME]   stop the agent of state directory DIR (idempotent)
//	casecap-agent status DIR     print its status.json, with whether it still runs
//	casecap-agent check          this host's facts, as JSON (for preflight)
//	casecap-agent version
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/casecap/casecap/agent"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "start":
		err = start(args)
	case "run":
		err = run(args)
	case "stop":
		err = stop(args)
	case "status":
		err = status(args)
	case "check":
		err = printJSON(agent.Check(version))
	case "version":
		fmt.Println(version)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "casecap-agent:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: casecap-agent start|run JOB | stop|status STATEDIR | check | version")
	os.Exit(2)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneArg(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s takes one argument", fs.Name())
	}
	return fs.Arg(0), nil
}

func start(args []string) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for every capture to be armed")
	path, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	j, err := agent.ReadJob(path)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pid, err := agent.StartDetached(self, path, j, *timeout)
	if err != nil {
		return err
	}
	return printJSON(map[string]any{"pid": pid, "state": agent.StateArmed})
}

func run(args []string) error {
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
	// Signals are the agent's own business (stop requests): do not let the
	// default handlers kill it half-way through a file.
	signal.Ignore(syscall.SIGPIPE)
	return agent.Run(context.Background(), j, opt)
}

func stop(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	at := fs.String("at", "", "stop at this instant (RFC 3339, this host's clock); default now")
	dir, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	var when time.Time
	if *at != "" {
		if when, err = time.Parse(time.RFC3339Nano, *at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	running, err := agent.RequestStop(dir, when)
	if err != nil {
		return err
	}
	return printJSON(map[string]any{"running": running})
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	st, err := agent.ReadStatus(dir)
	if err != nil {
		return err
	}
	return printJSON(st)
}
