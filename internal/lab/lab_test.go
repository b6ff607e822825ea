package lab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
)

// run runs one command over a new session of c.
func run(c *ssh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	return strings.TrimSpace(string(out)), err
}

// TestFiftyHosts is issue 2's acceptance test: 50 hosts up, reached over SSH
// with strict host-key checking, each with its own hostname and process
// table, torn down with nothing left, in under 30 s.
func TestFiftyHosts(t *testing.T) {
	labtest.Require(t)
	begin := time.Now()
	l, err := lab.Start(context.Background(), lab.Options{Hosts: 50})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	started := time.Since(begin)
	defer func() {
		if l != nil {
			_ = l.Close()
		}
	}()
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		hostname string
		pids     []int
		init     string
	}
	results := make([]seen, len(l.Hosts))
	var g errgroup.Group
	g.SetLimit(50)
	for i, h := range l.Hosts {
		g.Go(func() error {
			c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			defer c.Close()
			out, err := run(c, `hostname; tr '\0' '\n' </proc/1/environ | grep CASECAP_LAB_INIT; ls /proc | grep '^[0-9]' | tr '\n' ' '`)
			if err != nil {
				return fmt.Errorf("%s: %v: %s", h.Name, err, out)
			}
			lines := strings.Split(out, "\n")
			if len(lines) != 3 {
				return fmt.Errorf("%s: unexpected output %q", h.Name, out)
			}
			s := seen{hostname: lines[0], init: lines[1]}
			for _, f := range strings.Fields(lines[2]) {
				pid, _ := strconv.Atoi(f)
				s.pids = append(s.pids, pid)
			}
			results[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	connected := time.Since(begin)
	names := map[string]bool{}
	for i, h := range l.Hosts {
		s := results[i]
		if s.hostname != h.Name {
			t.Errorf("host %s says its hostname is %q", h.Name, s.hostname)
		}
		names[s.hostname] = true
		// PID 1 of the host is this host's own init, and the host sees only
		// a handful of processes (init, sshd, the session, the shell, ls).
		if want := "CASECAP_LAB_INIT=" + filepath.Join(h.Dir, "host.json"); s.init != want {
			t.Errorf("%s: PID 1 environment says %q, want %q", h.Name, s.init, want)
		}
		if len(s.pids) == 0 || s.pids[0] != 1 || len(s.pids) > 12 {
			t.Errorf("%s: process table %v is not a fresh one starting at PID 1", h.Name, s.pids)
		}
	}
	if len(names) != 50 {
		t.Errorf("got %d distinct hostnames, want 50", len(names))
	}
	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	total := time.Since(begin)
	if left := l.Leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	l = nil
	t.Logf("50 hosts: up in %v, all checked over SSH at %v, torn down at %v", started.Round(time.Millisecond), connected.Round(time.Millisecond), total.Round(time.Millisecond))
	if total > 30*time.Second {
		t.Errorf("50-host lab cycle took %v, want under 30s", total)
	}
}

// TestNothingLeftBehind checks teardown while sessions and background
// processes are still running inside the hosts.
func TestNothingLeftBehind(t *testing.T) {
	labtest.Require(t)
	l, err := lab.Start(context.Background(), lab.Options{Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts {
		c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A detached sleeper (reparented to the host's init) and a session
		// still open when the lab goes away.
		if out, err := run(c, "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo started"); err != nil {
			t.Fatalf("%s: %v %s", h.Name, err, out)
		}
		s, _ := c.NewSession()
		_ = s.Start("sleep 600")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if left := l.Leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestStrictHostKey(t *testing.T) {
	l := labtest.Start(t, 2)
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	// known_hosts that lists h01's address with h02's key: a changed key.
	pub, err := l.Hosts[1].PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(wrong, []byte(knownhosts.Line([]string{l.Hosts[0].Addr.String()}, pub)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check, err := knownhosts.New(wrong)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HostKeyCallback = check
	_, err = ssh.Dial("tcp", l.Hosts[0].SSHAddr(), cfg)
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		t.Fatalf("dial with a wrong known key: got %v, want a knownhosts key mismatch", err)
	}
}

func TestSFTPAndSharedDatastore(t *testing.T) {
	l := labtest.Start(t, 2)
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", l.Hosts[0].SSHAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	defer sc.Close()
	f, err := sc.Create(l.Datastore + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("from h01")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// h02 sees what h01 wrote: one shared datastore.
	c2, err := ssh.Dial("tcp", l.Hosts[1].SSHAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if out, err := run(c2, "cat "+l.Datastore+"/hello"); err != nil || out != "from h01" {
		t.Fatalf("h02 reads %q, %v; want %q", out, err, "from h01")
	}
	// Each host has its own /tmp.
	if _, err := run(c, "echo mine > /tmp/only-h01"); err != nil {
		t.Fatal(err)
	}
	if out, err := run(c2, "test -e /tmp/only-h01 && echo shared || echo private"); out != "private" {
		t.Fatalf("h02 /tmp: %q %v, want private", out, err)
	}
}

func TestFaultKnobs(t *testing.T) {
	l := labtest.Start(t, 2)
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 2 * time.Second
	h := l.Hosts[0]
	dial := func() error {
		c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
		if err == nil {
			_, err = run(c, "true")
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("before faults: %v", err)
	}

	// A long-lived session is cut when sshd is killed.
	c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.KillSSHD(); err != nil {
		t.Fatalf("kill sshd: %v", err)
	}
	if err := c.Wait(); err == nil {
		t.Log("session ended cleanly")
	}
	var opErr *net.OpError
	if err := dial(); !errors.As(err, &opErr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial with sshd killed: got %v, want connection refused", err)
	}
	if err := h.StartSSHD(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	if err := dial(); err != nil {
		t.Fatalf("after sshd restart: %v", err)
	}

	if err := h.LinkDown(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil {
		t.Fatal("dial succeeded with the link down")
	}
	if err := l.Hosts[1].LinkUp(); err != nil { // the other host is untouched
		t.Fatal(err)
	}
	if err := h.LinkUp(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("after link up: %v", err)
	}
}

// TestParallelLabs starts labs concurrently: each gets its own number,
// bridge and subnet.
func TestParallelLabs(t *testing.T) {
	labtest.Require(t)
	var mu sync.Mutex
	ids := map[int]bool{}
	var g errgroup.Group
	for range 3 {
		g.Go(func() error {
			l, err := lab.Start(context.Background(), lab.Options{Hosts: 1})
			if err != nil {
				return err
			}
			mu.Lock()
			ids[l.ID] = true
			mu.Unlock()
			return l.Close()
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 {
		t.Fatalf("3 concurrent labs got ids %v, want 3 distinct", ids)
	}
}
