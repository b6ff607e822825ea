package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStart reads a process's start time (field 22 of /proc/PID/stat): with
// the PID it names one process for good, even after the PID is reused.
func procStart(pid int) (uint64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(s) < i+3 || s[i+2] == 'Z' {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// writePID records this process in the state directory.
func writePID(path string) error {
	start, ok := procStart(os.Getpid())
	if !ok {
		return fmt.Errorf("cannot read this process's start time")
	}
	return writeAtomic(path, fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o600)
}

// runningAgent returns the PID of the agent recorded in path if that very
// process still runs, or 0.
func runningAgent(path string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscan(string(raw), &pid, &start); err != nil || pid <= 0 {
		return 0
	}
	if now, ok := procStart(pid); !ok || now != start {
		return 0
	}
	if syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}
