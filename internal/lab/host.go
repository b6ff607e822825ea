package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// PublicKey is the host's SSH host key.
func (h *Host) PublicKey() (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	return pub, err
}

// SSHAddr is host:port for ssh.Dial.
func (h *Host) SSHAddr() string { return net.JoinHostPort(h.Addr.String(), "22") }

// ClientConfig is an SSH client configuration for root on every lab host,
// with strict host-key checking against the lab's known_hosts.
func (l *Lab) ClientConfig() (*ssh.ClientConfig, error) {
	signer, err := loadSigner(l.ClientKey)
	if err != nil {
		return nil, err
	}
	check, err := knownhosts.New(l.KnownHosts)
	if err != nil {
		return nil, err
	}
	return &ssh.ClientConfig{
		User:              "root",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   check,
		HostKeyAlgorithms: []string{ssh.KeyAlgoECDSA256},
		Timeout:           10 * time.Second,
	}, nil
}

// Host returns the host with that name, or nil.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Command runs argv as root inside the host's namespaces without SSH: the
// test's back door for tcpdump, ps and the like.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"--target", strconv.Itoa(h.InitPID), "--net", "--mount", "--uts", "--pid", "--ipc", "--"}, argv...)
	return exec.CommandContext(ctx, "nsenter", args...)
}

// LinkDown cuts the host off the lab network (its cable is pulled).
func (h *Host) LinkDown() error { return ipBatch("link set " + h.Veth + " down") }

// LinkUp plugs the host back in.
func (h *Host) LinkUp() error { return ipBatch("link set " + h.Veth + " up") }

// KillSSHD kills the host's sshd and every SSH session under it; processes
// that detached from their session keep running.
func (h *Host) KillSSHD() error { return h.control("sshd-kill") }

// StartSSHD starts the host's sshd again and returns once it accepts.
func (h *Host) StartSSHD() error { return h.control("sshd-start") }

func (h *Host) control(command string) error {
	c, err := net.DialTimeout("unix", filepath.Join(h.Dir, "ctl.sock"), 5*time.Second)
	if err != nil {
		return fmt.Errorf("%s: control socket: %w", h.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintln(c, command); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: %s: %w", h.Name, command, err)
	}
	if line = strings.TrimSpace(line); line != "ok" {
		return fmt.Errorf("%s: %s: %s", h.Name, command, strings.TrimPrefix(line, "error "))
	}
	return nil
}

// Processes lists the command lines of every process in the host's PID
// namespace, read from this machine's /proc (no tool on the host is
// relied on): argv of each, argv[0] first.
func (h *Host) Processes() ([][]string, error) {
	if h.PIDNS == 0 {
		return nil, fmt.Errorf("%s: its PID namespace is not known", h.Name)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ino, err := nsInode(pid, "pid"); err != nil || ino != h.PIDNS {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(raw) == 0 {
			continue // gone, or a kernel thread
		}
		out = append(out, strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"))
	}
	return out, nil
}
