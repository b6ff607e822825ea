package lab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/lab/esxisim"
)

// initEnv names the environment variable that turns this binary into a lab
// host's init; its value is the path of the host's hostConfig file.
const initEnv = "CASECAP_LAB_INIT"

// sshdPath is where Debian's openssh-server installs the daemon.
const sshdPath = "/usr/sbin/sshd"

// hostConfig is what the lab owner tells a host's init, as JSON in a file.
type hostConfig struct {
	Name       string      `json:"name"`
	Addr       string      `json:"addr"`            // CIDR, e.g. 198.18.3.11/24
	Addr6      string      `json:"addr6,omitempty"` // CIDR, in a lab with IPv6
	Dir        string      `json:"dir"`
	SSHDConfig string      `json:"sshd_config"`
	Hide       []string    `json:"hide"` // files replaced by /dev/null
	Binds      []bindMount `json:"binds"`
	ESXi       *esxiHost   `json:"esxi,omitempty"` // an ESXi-flavoured host
}

// bindMount makes Source visible at Target inside one host only.
type bindMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
	NoExec   bool   `json:"no_exec,omitempty"`
}

func init() {
	switch {
	case os.Getenv(initEnv) != "":
		os.Exit(runInit(os.Getenv(initEnv)))
	case os.Getenv(vmEnv) != "":
		os.Exit(runVM(os.Getenv(vmEnv)))
	case esxisim.IsTool(os.Args[0]):
		// A lab ESXi host's pktcap-uw, net-stats... (symlinks to this binary).
		os.Exit(esxisim.Main(os.Args, os.Stdout, os.Stderr))
	}
}

// runInit is PID 1 of a lab host. It reports problems before "ready" on
// stdout (read by the lab owner) and afterwards in the host's init.log.
func runInit(configPath string) int {
	os.Unsetenv(initEnv)
	fail := func(err error) int {
		fmt.Fprintf(os.Stdout, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fail(err)
	}
	var cfg hostConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fail(fmt.Errorf("decode %s: %w", configPath, err))
	}
	if err := setupMounts(cfg); err != nil {
		return fail(err)
	}
	if err := unix.Sethostname([]byte(cfg.Name)); err != nil {
		return fail(fmt.Errorf("sethostname: %w", err))
	}
	// Keep IPv6 router solicitations and DAD out of every capture.
	for _, f := range []string{"all", "default"} {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0)
	}
	// Wait for the owner to move our eth0 into this namespace.
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "net" {
		return fail(fmt.Errorf("waiting for the network: got %q, %v", line, err))
	}
	if cfg.ESXi != nil {
		err = setupESXiNetwork(cfg.Addr, cfg.ESXi)
	} else {
		err = setupNetwork(cfg.Addr, cfg.Addr6)
	}
	if err != nil {
		return fail(err)
	}

	h := &initHost{cfg: cfg, exited: map[int]chan struct{}{}}
	// The reaper owns wait4(-1) from here on: nothing below may use os/exec.
	sigchld := make(chan os.Signal, 16)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go h.reap(sigchld)
	if err := h.startSSHD(); err != nil {
		return fail(err)
	}
	ln, err := listenControl(cfg.Dir)
	if err != nil {
		return fail(err)
	}
	go h.serveControl(ln)
	fmt.Fprintln(os.Stdout, "ready")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	// PID 1 of a PID namespace: kill(-1) reaches every other process in it.
	_ = unix.Kill(-1, syscall.SIGKILL)
	return 0
}

func setupMounts(cfg hostConfig) error {
	steps := []struct {
		what string
		do   func() error
	}{
		{"make mounts private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"mount /proc", func() error {
			return unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
		// Its own sysfs: /sys/class/net then lists this host's interfaces.
		{"mount /sys", func() error {
			return unix.Mount("sysfs", "/sys", "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}},
		{"mount /run", func() error {
			return unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755,size=64m")
		}},
		{"create /run/sshd", func() error { return os.MkdirAll("/run/sshd", 0o755) }},
		{"mount /tmp", func() error {
			return unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=256m")
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	for _, f := range cfg.Hide {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		if err := unix.Mount("/dev/null", f, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("hide %s: %w", f, err)
		}
	}
	for _, b := range cfg.Binds {
		if err := unix.Mount(b.Source, b.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.Source, b.Target, err)
		}
		if !b.ReadOnly && !b.NoExec {
			continue
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT)
		if b.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		if b.NoExec {
			flags |= unix.MS_NOEXEC
		}
		if err := unix.Mount("", b.Target, "", flags, ""); err != nil {
			return fmt.Errorf("remount %s: %w", b.Target, err)
		}
	}
	return nil
}

func setupNetwork(addr, addr6 string) error {
	script := "link set lo up\naddr add " + addr + " brd + dev eth0\n"
	if addr6 != "" {
		// IPv6 on eth0 (and lo) only, without router solicitations or
		// duplicate address detection: the address works at once.
		for _, f := range []string{"lo", "eth0"} {
			for k, v := range map[string]string{"disable_ipv6": "0", "accept_ra": "0", "router_solicitations": "0", "accept_dad": "0"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/"+k, []byte(v), 0); err != nil && k == "disable_ipv6" {
					return fmt.Errorf("enable IPv6 on %s: %w", f, err)
				}
			}
		}
		script += "addr add " + addr6 + " dev eth0 nodad\n"
	}
	cmd := exec.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(script + "link set eth0 up\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("configure eth0 with %s %s: %v: %s", addr, addr6, err, out)
	}
	return nil
}

// initHost is the running state of a host's init.
type initHost struct {
	cfg hostConfig

	mu     sync.Mutex
	sshd   int                   // PID of the sshd listener, 0 when stopped
	exited map[int]chan struct{} // closed by the reaper when that PID is reaped
}

// reap collects every child and orphan; PID 1 must, or zombies pile up.
func (h *initHost) reap(sig <-chan os.Signal) {
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			h.mu.Lock()
			if ch, ok := h.exited[pid]; ok {
				close(ch)
				delete(h.exited, pid)
			}
			if pid == h.sshd {
				h.sshd = 0
			}
			h.mu.Unlock()
		}
		<-sig
	}
}

func (h *initHost) startSSHD() error {
	h.mu.Lock()
	if h.sshd != 0 {
		h.mu.Unlock()
		return nil
	}
	logf, err := os.OpenFile(h.cfg.Dir+"/sshd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	defer devnull.Close()
	pid, err := syscall.ForkExec(sshdPath, []string{sshdPath, "-D", "-e", "-f", h.cfg.SSHDConfig}, &syscall.ProcAttr{
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()},
	})
	if err != nil {
		h.mu.Unlock()
		return fmt.Errorf("start sshd: %w", err)
	}
	done := make(chan struct{})
	h.sshd, h.exited[pid] = pid, done
	h.mu.Unlock()

	// Ready means accepting connections; poll the port, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("sshd exited at start; see %s/sshd.log", h.cfg.Dir)
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:22", time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return errors.New("sshd did not accept connections within 10s")
}

// killSSHD kills the sshd listener and every process descending from it (the
// SSH sessions), as when a host's SSH service dies. Processes that detached
// from their session (reparented to init) are left alone.
func (h *initHost) killSSHD() error {
	h.mu.Lock()
	pid := h.sshd
	done := h.exited[pid]
	h.mu.Unlock()
	if pid == 0 {
		return nil
	}
	for _, p := range append(descendants(pid), pid) {
		_ = unix.Kill(p, syscall.SIGKILL)
	}
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("sshd (pid %d) did not exit after SIGKILL", pid)
	}
}

// descendants lists the PIDs below root in the process tree.
func descendants(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentPID(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// parentPID reads the PPid field of /proc/PID/stat (after the command name,
// which may hold spaces and parentheses).
func parentPID(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

func listenControl(dir string) (net.Listener, error) {
	path := dir + "/ctl.sock"
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, os.Chmod(path, 0o600)
}

// serveControl answers one-line commands: ping, sshd-kill, sshd-start.
func (h *initHost) serveControl(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			var err error
			switch strings.TrimSpace(line) {
			case "ping":
			case "sshd-kill":
				err = h.killSSHD()
			case "sshd-start":
				err = h.startSSHD()
			default:
				err = fmt.Errorf("unknown command %q", strings.TrimSpace(line))
			}
			if err != nil {
				fmt.Fprintf(c, "error %v\n", err)
				return
			}
			fmt.Fprintln(c, "ok")
		}()
	}
}
