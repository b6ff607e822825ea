//go:build linux

package hosts_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
)

func labOptions(t *testing.T, l *lab.Lab, h *lab.Host, acceptNew bool, knownHosts string) hosts.SSHOptions {
	t.Helper()
	kh, err := hosts.NewKnownHosts([]string{knownHosts}, acceptNew)
	if err != nil {
		t.Fatal(err)
	}
	return hosts.SSHOptions{
		Name: h.Name, Address: h.Addr.String(), IdentityFiles: []string{l.ClientKey}, NoAgent: true,
		KnownHosts: kh, Config: &ssh_config.Config{}, ConnectTimeout: 5 * time.Second,
	}
}

func dial(t *testing.T, o hosts.SSHOptions) *hosts.SSHConn {
	t.Helper()
	c, err := hosts.DialSSH(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSSHRunAndFiles(t *testing.T) {
	l := labtest.Start(t, 1)
	h := l.Hosts[0]
	c := dial(t, labOptions(t, l, h, false, l.KnownHosts))
	ctx := context.Background()

	out, err := c.Run(ctx, []string{"hostname"}, nil)
	if err != nil || strings.TrimSpace(string(out)) != h.Name {
		t.Fatalf("hostname: %q %v", out, err)
	}
	_, err = c.Run(ctx, []string{"sh", "-c", "echo oops >&2; exit 3"}, nil)
	var re *hosts.RunError
	if !errors.As(err, &re) || re.Status != 3 || strings.TrimSpace(re.Stderr) != "oops" {
		t.Fatalf("failing command: %v, want exit 3 with stderr oops", err)
	}
	// A started command that fails says why, as Run does.
	p, err := c.Start(ctx, []string{"sh", "-c", "read x; echo \"no $x\" >&2; exit 4"})
	if err != nil {
		t.Fatal(err)
	}
	p.Stdin().Write([]byte("luck\n"))
	io.Copy(io.Discard, p.Stdout())
	if err := p.Wait(); !errors.As(err, &re) || re.Status != 4 || strings.TrimSpace(re.Stderr) != "no luck" {
		t.Fatalf("failing started command: %v, want exit 4 with stderr \"no luck\"", err)
	}
	// A canary: shell syntax in arguments reaches the host as data.
	canary := filepath.Join(l.Datastore, "pwned")
	evil := []string{"$(touch " + canary + ")", "`touch " + canary + "`", "; touch " + canary, "a'b\"c\nd"}
	out, err = c.Run(ctx, append([]string{"printf", `%s\0`}, evil...), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); strings.Join(got, "|") != strings.Join(evil, "|") {
		t.Errorf("arguments arrived as %q", got)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("an argument was run by the remote shell")
	}

	dir := filepath.Join(l.Datastore, "sub", "dir")
	if err := c.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "f.bin")
	data := bytes.Repeat([]byte("casecap!"), 100_000)
	if err := c.WriteFile(file, bytes.NewReader(data), 0o640); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("written file: %v %v, want mode 0640", fi, err)
	}
	if n, err := c.Stat(file); err != nil || n != int64(len(data)) {
		t.Errorf("stat: %d %v", n, err)
	}
	if _, err := c.Stat(file + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing file: %v, want fs.ErrNotExist", err)
	}
	if got, err := c.ReadFile(file); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, %v", len(got), err)
	}
	// Download half, then resume from there.
	local := filepath.Join(t.TempDir(), "f.bin")
	lf, err := os.Create(local)
	if err != nil {
		t.Fatal(err)
	}
	half := int64(len(data) / 2)
	if _, err := lf.WriteAt(data[:half], 0); err != nil {
		t.Fatal(err)
	}
	var progress int64
	n, err := c.Download(ctx, file, lf, half, func(d int64) { progress += d })
	lf.Close()
	got, _ := os.ReadFile(local)
	if err != nil || n != int64(len(data))-half || progress != n || !bytes.Equal(got, data) {
		t.Errorf("resumed download: %d bytes (progress %d), %v; file equal: %v", n, progress, err, bytes.Equal(got, data))
	}
}

func TestHostKeys(t *testing.T) {
	l := labtest.Start(t, 2)
	h := l.Hosts[0]
	fresh := filepath.Join(t.TempDir(), "known_hosts")

	// Unknown: refused with the fingerprint and the flag that accepts it.
	_, err := hosts.DialSSH(context.Background(), labOptions(t, l, h, false, fresh))
	var unknown *hosts.UnknownHostError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "SHA256:") || !strings.Contains(err.Error(), hosts.AcceptNewFlag) {
		t.Fatalf("unknown host: %v", err)
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Error("a refused unknown key was recorded")
	}
	// Accepted once with the flag, recorded, then known.
	dial(t, labOptions(t, l, h, true, fresh)).Close()
	c := dial(t, labOptions(t, l, h, false, fresh))
	if _, err := c.Run(context.Background(), []string{"true"}, nil); err != nil {
		t.Fatal(err)
	}
	// Changed: h02's key recorded under h01's address; refused even with
	// the accept flag.
	pub, _ := l.Hosts[1].PublicKey()
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(wrong, []byte(h.Addr.String()+" "+strings.TrimSpace(string(pubLine(pub)))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = hosts.DialSSH(context.Background(), labOptions(t, l, h, true, wrong))
	var changed *hosts.ChangedHostKeyError
	if !errors.As(err, &changed) || !strings.Contains(err.Error(), "HAS CHANGED") {
		t.Fatalf("changed key: %v", err)
	}
}

func TestProxyJumpAndConfig(t *testing.T) {
	l := labtest.Start(t, 2)
	jump, target := l.Hosts[0], l.Hosts[1]
	// ~/.ssh/config style: an alias with HostName, User, IdentityFile and
	// ProxyJump through the other host.
	cfgText := "Host target\n  HostName " + target.Addr.String() + "\n  User root\n  IdentityFile " + l.ClientKey + "\n  ProxyJump root@" + jump.Addr.String() + ":22\n"
	cfg, err := ssh_config.Decode(strings.NewReader(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	o := labOptions(t, l, target, false, l.KnownHosts)
	o.Address, o.IdentityFiles, o.Config = "target", nil, cfg
	c := dial(t, o)
	out, err := c.Run(context.Background(), []string{"sh", "-c", "hostname; echo $SSH_CONNECTION"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// The target sees the connection coming from the jump host.
	if lines[0] != target.Name || !strings.HasPrefix(lines[1], jump.Addr.String()+" ") {
		t.Errorf("through the jump host: %q, want %s reached from %s", lines, target.Name, jump.Addr)
	}
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	l := labtest.Start(t, 1)
	h := l.Hosts[0]
	o := labOptions(t, l, h, false, l.KnownHosts)
	o.Keepalive = 200 * time.Millisecond
	c := dial(t, o)
	if err := h.LinkDown(); err != nil {
		t.Fatal(err)
	}
	defer h.LinkUp()
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), []string{"sleep", "30"}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a command over a dead link succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a command over a dead link still hangs after 5 s: keepalive did not close it")
	}
}

func pubLine(pub interface {
	Type() string
	Marshal() []byte
}) []byte {
	return []byte(pub.Type() + " " + base64.StdEncoding.EncodeToString(pub.Marshal()))
}

// TestAcceptNewIntoHashedKnownHosts: a known_hosts file whose entries are
// hashed (HashKnownHosts) gets the new key hashed too, as OpenSSH writes
// it, and the host is known from then on; a plain file gets a plain entry.
func TestAcceptNewIntoHashedKnownHosts(t *testing.T) {
	l := labtest.Start(t, 2)
	h, other := l.Hosts[0], l.Hosts[1]
	otherKey, _ := other.PublicKey()
	for _, hashed := range []bool{true, false} {
		file := filepath.Join(t.TempDir(), "known_hosts")
		name := other.Addr.String()
		if hashed {
			name = knownhosts.HashHostname(name)
		}
		if err := os.WriteFile(file, []byte(name+" "+string(pubLine(otherKey))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		dial(t, labOptions(t, l, h, true, file)).Close()
		raw, _ := os.ReadFile(file)
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) < 2 {
			t.Fatalf("hashed %v: nothing recorded: %q", hashed, raw)
		}
		for _, line := range lines[1:] {
			if strings.HasPrefix(line, "|1|") != hashed || strings.Contains(line, h.Addr.String()) == hashed {
				t.Errorf("hashed file %v: recorded %q", hashed, line)
			}
		}
		c := dial(t, labOptions(t, l, h, false, file))
		if _, err := c.Run(context.Background(), []string{"true"}, nil); err != nil {
			t.Errorf("hashed %v: the recorded key does not let the host in: %v", hashed, err)
		}
		c.Close()
	}
}

// TestSSHCloseTwiceAtOnce: two Closes at once (a cleanup racing a
// keepalive that gave up) close once, and neither panics; run with -race by
// test.sh.
func TestSSHCloseTwiceAtOnce(t *testing.T) {
	l := labtest.Start(t, 1)
	for range 20 {
		c, err := hosts.DialSSH(context.Background(), labOptions(t, l, l.Hosts[0], false, l.KnownHosts))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() { errs[i] = c.Close() })
		}
		wg.Wait()
		if errs[0] != errs[1] || errs[1] != errs[2] {
			t.Errorf("three Closes at once returned %v", errs)
		}
		if _, err := c.Run(context.Background(), []string{"true"}, nil); err == nil {
			t.Fatal("a closed connection still runs commands")
		}
	}
}

// TestSSHAgentConnectionClosed: the connection to ssh-agent serves the
// handshake and is closed after it, not kept open for the life of the
// host's connection (one per host: 100 hosts held 100 agent sockets).
func TestSSHAgentConnectionClosed(t *testing.T) {
	l := labtest.Start(t, 1)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ended := make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = agent.ServeAgent(agent.NewKeyring(), c) // returns once casecap closes its end
		ended <- struct{}{}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	o := labOptions(t, l, l.Hosts[0], false, l.KnownHosts)
	o.NoAgent = false
	c := dial(t, o)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the ssh-agent connection is still open 5 s after the handshake")
	}
	if out, err := c.Run(context.Background(), []string{"hostname"}, nil); err != nil || len(out) == 0 {
		t.Errorf("the connection after the handshake: %q %v", out, err)
	}
}
