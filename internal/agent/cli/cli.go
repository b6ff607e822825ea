// Package cli is casecap-agent's command line, shared by the agent binary
// and by casecap itself (`casecap agent ...`), which is the agent on the
// local host.
//
//	serve                  facts, then clock, job, ping, begin and stop on one held session (a whole run)
//	start JOB|-            run JOB (or a job read from stdin) detached; return once every capture is armed
//	start --hold -         the same, then keep the session for "begin TIME" (one line each way)
//	run JOB                run JOB in the foreground
//	begin DIR [--at TIME]  start the pending captures of the agent in DIR
//	stop DIR [--at TIME] [--wait D]  stop the agent of state directory DIR (idempotent); --wait: until it ends
//	trigger DIR --json TRIGGER       pass a trigger to the agent of DIR (its instant on this host's clock)
//	status DIR             print its status.json, with whether it still runs
//	check [--clock]        this host's facts, as JSON (for preflight); with --clock, then the clock
//	clock                  answer each line on stdin with this host's time
//	version
package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/casecap/casecap/internal/agent"
	"github.com/casecap/casecap/internal/agentproto"

	"github.com/casecap/casecap/internal/agent/hostclock"
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
	case agentproto.CmdServe:
		err = serve(self, version, bufio.NewReader(os.Stdin), stdout)
	case agentproto.CmdStart:
		err = start(self, rest, out, stdout)
	case agentproto.CmdRun:
		err = run(rest, version)
	case agentproto.CmdBegin:
		err = begin(rest, out)
	case agentproto.CmdStop:
		err = stop(rest, out)
	case agentproto.CmdStatus:
		err = status(rest, out)
	case agentproto.CmdTrigger:
		err = trigger(rest, out)
	case agentproto.CmdCheck:
		err = check(rest, version, stdout)
	case agentproto.CmdClock:
		err = agent.Clock(os.Stdin, stdout)
	case agentproto.CmdVersion:
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

func start(self []string, args []string, out func(any) error, stdout io.Writer) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for every capture to be armed")
	hold := fs.Bool("hold", false, "with -: the job is one line; once armed, answer on one line and keep the session for its begin")
	path, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	if *hold && path != "-" {
		return errors.New("start --hold reads its job from stdin (-)")
	}
	in := bufio.NewReader(os.Stdin)
	var j *agentproto.Job
	if path == "-" {
		// One round trip for the whole arm: the job comes on stdin and is
		// stored in its state directory here.
		var raw []byte
		if *hold {
			raw, err = in.ReadBytes('\n')
		} else {
			raw, err = io.ReadAll(in)
		}
		if err != nil && (!errors.Is(err, io.EOF) || len(raw) == 0) {
			return fmt.Errorf("job on stdin: %w", err)
		}
		j = new(agentproto.Job)
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
	ans := agentproto.Armed{PID: pid, State: agentproto.StateArmed, Arming: time.Since(began)}
	if !*hold {
		return out(ans)
	}
	if err := line(stdout, ans); err != nil {
		return err
	}
	return serveBegin(j.StateDir, in, stdout)
}

// line writes v as one line of JSON: the held session's answers.
func line(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// serveBegin keeps the session that armed the captures for their begin, so
// that starting them together costs one line on an open session instead
// of a new session and process per host. It answers "ping" with "pong" (the
// orchestrator's measure of this session's latency, under the load of
// arming), and on "begin TIME" starts the pending captures at TIME and
// returns. The session's end before a begin disarms the captures: casecap
// called the start off, or died, or lost the host, and no begin will come
// (their files are removed, so that nothing blocks the next start).
func serveBegin(dir string, in *bufio.Reader, w io.Writer) error {
	for {
		s, err := in.ReadString('\n')
		if err != nil {
			_, serr := agent.RequestStop(dir, time.Time{})
			return serr
		}
		req, err := agentproto.ParseRequest(s)
		switch {
		case err != nil:
			return err
		case req.Ping:
			if _, err := io.WriteString(w, agentproto.LinePong+"\n"); err != nil {
				return err
			}
		case !req.Begin.IsZero():
			if err := agent.RequestBegin(dir, req.Begin); err != nil {
				return err
			}
			return line(w, agentproto.Begun{Begun: true, Now: hostclock.Now()})
		default:
			return fmt.Errorf("held start: unexpected %q", strings.TrimSpace(s))
		}
	}
}

// serve holds one session for a whole run (agentproto.Argv.Serve): the
// host's facts, then clock probes, the job, ping, begin and stop, one line
// each way, until casecap ends the session. Its end before a begin
// disarms the captures (as start --hold's does); after one, they run on
// and the session's end changes nothing. From the begin on it also pushes
// the captures' status as it changes (pushStatus), so that casecap needs
// no file reads to follow them, and learns at once that they ended.
func serve(self []string, version string, in *bufio.Reader, w io.Writer) error {
	var mu sync.Mutex // answers and pushed statuses share the session
	write := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := w.Write(b)
		return err
	}
	answer := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return write(append(b, '\n'))
	}
	if err := answer(agent.Check(version)); err != nil {
		return err
	}
	var dir string           // the job's state directory, once armed
	var window time.Duration // the job's longest capture
	begun := false
	stopAsked := make(chan struct{}, 1)
	quit := make(chan struct{})
	defer close(quit)
	for {
		s, err := in.ReadString('\n')
		if err != nil {
			if dir != "" && !begun {
				_, serr := agent.RequestStop(dir, time.Time{})
				return serr
			}
			return nil // casecap is done with the session
		}
		req, err := agentproto.ParseRequest(s)
		switch {
		case err != nil:
			return err
		case req.Clock:
			err = write(append(strconv.AppendInt(nil, hostclock.Now().UnixNano(), 10), '\n'))
		case req.Ping:
			err = write([]byte(agentproto.LinePong + "\n"))
		case req.Job != nil:
			if dir != "" {
				return errors.New("serve: a second job on one session")
			}
			var ans agentproto.Armed
			var j *agentproto.Job
			if ans, j, err = armJob(self, req.Job, 30*time.Second); err != nil {
				return err
			}
			dir = j.StateDir
			for _, c := range j.Captures {
				window = max(window, c.Duration)
			}
			err = answer(ans)
		case req.Live != nil:
			if dir != "" {
				return errors.New("serve: live after a job on one session")
			}
			return serveLive(req.Live, version, in, write)
		case dir == "":
			return fmt.Errorf("serve: %q before a job", strings.TrimSpace(s))
		case !req.Begin.IsZero():
			if begun {
				return errors.New("serve: a second begin on one session")
			}
			if err = agent.RequestBegin(dir, req.Begin); err == nil {
				begun = true
				if err = answer(agentproto.Begun{Begun: true, Now: hostclock.Now()}); err == nil {
					go pushStatus(filepath.Join(dir, agentproto.StatusFile), req.Begin.Add(window), write, stopAsked, quit)
				}
			}
		case req.Trigger != nil:
			var running bool
			if running, err = agent.RequestTrigger(dir, *req.Trigger); err == nil {
				err = answer(agentproto.TriggerAnswer{Running: running})
			}
		case req.Stop:
			select {
			case stopAsked <- struct{}{}:
			default:
			}
			var running bool
			if running, err = agent.RequestStop(dir, req.StopAt); err == nil {
				err = answer(agentproto.StopAnswer{Running: running, Now: hostclock.Now()})
			}
		}
		if err != nil {
			return err
		}
	}
}

// pushStatus sends the status file as a status line each time it changes,
// until it says the captures are over, the session is gone, or quit. It
// looks every StatusEvery/5 while the captures run (the agent rewrites the
// file every StatusEvery), and every agentproto.PushEvery from their
// window's end (host clock) or a stop request on: how soon casecap learns
// that they ended, and can collect. (A local read, where casecap's would
// be a round trip.)
func pushStatus(file string, end time.Time, write func([]byte) error, stopAsked <-chan struct{}, quit <-chan struct{}) {
	var last []byte
	ending := false
	for {
		if b, err := os.ReadFile(file); err == nil && !bytes.Equal(b, last) {
			var st agentproto.Status
			line, lerr := agentproto.StatusLine(b)
			if lerr == nil && json.Unmarshal(b, &st) == nil {
				if write(line) != nil {
					return
				}
				last = b
				if st.Over() {
					return
				}
			}
		}
		until := end.Sub(hostclock.Now())
		ending = ending || until <= 0
		wait := min(agentproto.StatusEvery/5, until)
		if ending {
			wait = agentproto.PushEvery
		}
		select {
		case <-quit:
			return
		case <-stopAsked:
			ending = true
		case <-time.After(wait):
		}
	}
}

// armJob checks a job sent as JSON, stores it in its state directory and
// starts its agent, detached, returning once every capture is armed.
func armJob(self []string, raw []byte, timeout time.Duration) (agentproto.Armed, *agentproto.Job, error) {
	j := new(agentproto.Job)
	if err := json.Unmarshal(raw, j); err != nil {
		return agentproto.Armed{}, nil, fmt.Errorf("job: %w", err)
	}
	if err := j.Check(); err != nil {
		return agentproto.Armed{}, nil, err
	}
	path, err := agent.WriteJob(j)
	if err != nil {
		return agentproto.Armed{}, nil, err
	}
	began := time.Now()
	pid, err := agent.StartDetached(self, path, j, timeout)
	if err != nil {
		return agentproto.Armed{}, nil, err
	}
	return agentproto.Armed{PID: pid, State: agentproto.StateArmed, Arming: time.Since(began)}, j, nil
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

// dirAt reads the arguments of begin and stop: DIR [--at TIME], and any
// further flags the caller defined on fs.
func dirAt(fs *flag.FlagSet, args []string) (string, time.Time, error) {
	at := fs.String("at", "", "the instant (RFC 3339, this host's clock); default now")
	dir, err := oneArg(fs, args)
	if err != nil || *at == "" {
		return dir, time.Time{}, err
	}
	t, err := agentproto.ParseTime(*at)
	if err != nil {
		return dir, t, fmt.Errorf("--at: %w", err)
	}
	return dir, t, nil
}

func begin(args []string, out func(any) error) error {
	dir, t, err := dirAt(flag.NewFlagSet("begin", flag.ContinueOnError), args)
	if err != nil {
		return err
	}
	if err := agent.RequestBegin(dir, t); err != nil {
		return err
	}
	return out(agentproto.Begun{Begun: true, Now: hostclock.Now()})
}

func stop(args []string, out func(any) error) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	wait := fs.Duration("wait", 0, "wait this long for the agent to end (its files closed, or removed if they never began)")
	dir, t, err := dirAt(fs, args)
	if err != nil {
		return err
	}
	running, err := agent.RequestStop(dir, t)
	if err != nil {
		return err
	}
	if running && *wait > 0 {
		running = !agent.WaitDone(dir, *wait)
	}
	return out(agentproto.StopAnswer{Running: running, Now: hostclock.Now()})
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

func trigger(args []string, out func(any) error) error {
	fs := flag.NewFlagSet("trigger", flag.ContinueOnError)
	raw := fs.String("json", "", "the trigger, as JSON")
	dir, err := oneArg(fs, args)
	if err != nil {
		return err
	}
	var tr agentproto.Trigger
	if err := json.Unmarshal([]byte(*raw), &tr); err != nil || tr.At.IsZero() {
		return fmt.Errorf("--json: not a trigger: %q", *raw)
	}
	running, err := agent.RequestTrigger(dir, tr)
	if err != nil {
		return err
	}
	return out(agentproto.TriggerAnswer{Running: running})
}

// serveLive runs a job live (casecap live): its packets stream on the
// session as frames until casecap ends the session (or says "stop"),
// which stops every capture; nothing is left running or written.
func serveLive(raw []byte, version string, in *bufio.Reader, write func([]byte) error) error {
	j := new(agentproto.Job)
	if err := json.Unmarshal(raw, j); err != nil {
		return fmt.Errorf("live job: %w", err)
	}
	if err := j.Check(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			s, err := in.ReadString('\n')
			if err != nil || strings.TrimSpace(s) == agentproto.LineStop {
				cancel()
				return
			}
		}
	}()
	// A closed session must not kill the agent half-way through its stop.
	signal.Ignore(syscall.SIGPIPE)
	out := writerFunc(write)
	return agent.Live(ctx, j, out, agent.Options{Version: version, SSHConn: os.Getenv("SSH_CONNECTION")})
}

// writerFunc is a write function as an io.Writer.
type writerFunc func([]byte) error

func (w writerFunc) Write(p []byte) (int, error) {
	if err := w(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
