//go:build linux

package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/casecap/casecap/internal/agent/hostclock"
	"github.com/casecap/casecap/internal/agentproto"
)

// StartDetached starts `self... run JOBFILE` (self is the agent's argv
// prefix: the agent binary, or casecap and "agent") in a new session,
// detached from the SSH session that called it (so it outlives that
// session), and returns once every capture is armed, or with the reason it
// could not be. A shell that exits at once starts it, so that it is nobody's
// child but init's: the serve session that armed it stays open for the
// whole run, and where an SSH session's whole process tree is killed (its
// sshd died), the agent is not in it.
func StartDetached(self []string, jobFile string, j *agentproto.Job, timeout time.Duration) (pid int, err error) {
	if err := os.MkdirAll(j.StateDir, 0o700); err != nil {
		return 0, err
	}
	if pid := runningAgent(statePath(j, agentproto.PIDFile)); pid != 0 {
		return 0, fmt.Errorf("an agent (pid %d) already runs case %s on this host: it was started before; stop it first", pid, j.Case)
	}
	logf, err := os.OpenFile(statePath(j, agentproto.LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	argv := append([]string{"/bin/sh", "-c", `"$@" </dev/null &`, "sh"}, self...)
	cmd := exec.Command(argv[0], append(argv[1:], "run", "--ready-fd", "3", jobFile)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), "CASECAP_AGENT_DETACHED=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run() // the shell only: it exits once the agent is started
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start the agent: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		switch {
		case s == "armed":
			return runningAgent(statePath(j, agentproto.PIDFile)), nil
		case strings.HasPrefix(s, "error "):
			return 0, errors.New(strings.TrimPrefix(s, "error "))
		}
		return 0, fmt.Errorf("the agent exited before arming; see %s", statePath(j, agentproto.LogFile))
	case <-time.After(timeout):
		if pid := runningAgent(statePath(j, agentproto.PIDFile)); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		return 0, fmt.Errorf("the agent did not arm within %v; see %s", timeout, statePath(j, agentproto.LogFile))
	}
}

// WriteJob stores a job (read from the orchestrator) in its state
// directory, with the orchestrator's record beside it, and returns the job
// file's path. It refuses a job whose capture files already exist: an
// earlier run's files are never clobbered.
func WriteJob(j *agentproto.Job) (string, error) {
	for _, c := range j.Captures {
		f := j.CaseDir + "/" + c.File
		if _, err := os.Stat(f); err == nil {
			return "", fmt.Errorf("%s already exists (an earlier run of case %s): collect it, then remove it, or use another case id", f, j.Case)
		}
	}
	if err := os.MkdirAll(j.StateDir, 0o700); err != nil {
		return "", err
	}
	if len(j.Record) > 0 {
		if err := writeAtomic(statePath(j, agentproto.RecordFile), append(j.Record, '\n'), 0o600); err != nil {
			return "", err
		}
	}
	raw, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return "", err
	}
	return statePath(j, agentproto.JobFile), writeAtomic(statePath(j, agentproto.JobFile), raw, 0o600)
}

// RequestStop asks the agent running in stateDir to stop every capture at
// at (now if zero). It is idempotent: with no agent running it does nothing
// and says so.
func RequestStop(stateDir string, at time.Time) (running bool, err error) {
	pidPath := stateDir + "/" + agentproto.PIDFile
	pid := runningAgent(pidPath)
	if pid == 0 {
		return false, nil
	}
	b, _ := json.Marshal(agentproto.Instant{At: at})
	if err := writeAtomic(stateDir+"/"+agentproto.StopFile, b, 0o600); err != nil {
		return true, err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return true, fmt.Errorf("signal the agent (pid %d): %w", pid, err)
	}
	return true, nil
}

// RequestBegin starts the pending captures of the agent in stateDir at at
// (now if zero), for their durations.
func RequestBegin(stateDir string, at time.Time) error {
	pid := runningAgent(stateDir + "/" + agentproto.PIDFile)
	if pid == 0 {
		return fmt.Errorf("no agent runs in %s", stateDir)
	}
	if at.IsZero() {
		at = hostclock.Now()
	}
	b, _ := json.Marshal(agentproto.Instant{At: at})
	if err := writeAtomic(stateDir+"/"+agentproto.BeginFile, b, 0o600); err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		return fmt.Errorf("signal the agent (pid %d): %w", pid, err)
	}
	return nil
}

// Clock answers every line read from r with this host's time (Unix
// nanoseconds) on w: the far end of an NTP-style exchange that measures the
// clock offset and round trip over one SSH session.
func Clock(r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if _, err := fmt.Fprintln(w, hostclock.Now().UnixNano()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ReadStatus reads status.json and says whether its agent still runs.
func ReadStatus(stateDir string) (agentproto.Status, error) {
	var s agentproto.Status
	raw, err := os.ReadFile(stateDir + "/" + agentproto.StatusFile)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("%s/%s: %w", stateDir, agentproto.StatusFile, err)
	}
	s.Alive = runningAgent(stateDir+"/"+agentproto.PIDFile) != 0
	return s, nil
}

// WaitDone waits until the agent in stateDir has exited (or timeout).
func WaitDone(stateDir string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for runningAgent(stateDir+"/"+agentproto.PIDFile) != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
