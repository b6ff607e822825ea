package hosts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/casecap/casecap/internal/atomicfile"
	"github.com/kevinburke/ssh_config"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// SSHOptions say how to reach one host. Zero fields fall back to
// ~/.ssh/config, then to OpenSSH's defaults.
type SSHOptions struct {
	Name          string // the host's name in the plan
	Address       string
	Port          int
	User          string
	IdentityFiles []string
	NoAgent       bool // do not use ssh-agent even if SSH_AUTH_SOCK is set
	// Password, when set, is asked for password and keyboard-interactive
	// authentication (from an environment variable or a prompt).
	Password       func(user, host string) (string, error)
	KnownHosts     *KnownHosts
	Jump           string             // ProxyJump: [user@]host[:port]
	Config         *ssh_config.Config // nil: ~/.ssh/config if present
	ConnectTimeout time.Duration
	Keepalive      time.Duration
}

// SSHConn is a host reached over SSH, with SFTP on the same connection.
type SSHConn struct {
	name   string
	client *ssh.Client
	jump   *ssh.Client

	mu   sync.Mutex
	sftp *sftp.Client

	stop      chan struct{} // closed by Close: ends keepalive
	closeOnce sync.Once
	closeErr  error
}

var userConfig = sync.OnceValue(func() *ssh_config.Config {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	f, err := os.Open(filepath.Join(home, ".ssh", "config"))
	if err != nil {
		return nil
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil
	}
	return cfg
})

// ExpandHome expands a leading ~/ to the user's home directory (ssh_config
// does not, and neither does a plan's identity_file or known_hosts).
func ExpandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// resolved is what a dial uses after ~/.ssh/config and defaults.
type resolved struct {
	host, user, jump string
	port             int
	identities       []string
}

func (o SSHOptions) resolve() resolved {
	cfg := o.Config
	if cfg == nil {
		cfg = userConfig()
	}
	get := func(key string) string {
		if cfg == nil {
			return ""
		}
		v, _ := cfg.Get(o.Address, key)
		return v
	}
	r := resolved{host: o.Address, user: o.User, port: o.Port, jump: o.Jump}
	if h := get("HostName"); h != "" {
		r.host = strings.ReplaceAll(h, "%h", o.Address)
	}
	if r.user == "" {
		r.user = get("User")
	}
	if r.user == "" {
		r.user = "root"
	}
	if r.port == 0 {
		r.port, _ = strconv.Atoi(get("Port"))
	}
	if r.port == 0 {
		r.port = 22
	}
	if r.jump == "" {
		if j := get("ProxyJump"); j != "none" {
			r.jump = j
		}
	}
	for _, f := range o.IdentityFiles {
		r.identities = append(r.identities, ExpandHome(f))
	}
	if cfg != nil {
		if all, err := cfg.GetAll(o.Address, "IdentityFile"); err == nil {
			for _, f := range all {
				if f != "~/.ssh/identity" { // ssh_config's obsolete built-in default
					r.identities = append(r.identities, ExpandHome(strings.ReplaceAll(f, "%h", o.Address)))
				}
			}
		}
	}
	// OpenSSH's defaults, ECDSA and RSA first: FIPS-mode ESXi refuses ed25519.
	for _, f := range []string{"~/.ssh/id_ecdsa", "~/.ssh/id_rsa", "~/.ssh/id_ed25519"} {
		r.identities = append(r.identities, ExpandHome(f))
	}
	return r
}

// signers loads the identity files that exist; encrypted ones are left to
// ssh-agent.
func signers(files []string) []ssh.Signer {
	var out []ssh.Signer
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s, err := ssh.ParsePrivateKey(raw)
		if err != nil {
			continue
		}
		out = append(out, s)
	}
	return out
}

// auth is how casecap authenticates to one host; done closes what the
// handshake needed (the ssh-agent connection) once it is over.
func (o SSHOptions) auth(r resolved) (methods []ssh.AuthMethod, done func()) {
	keys := signers(r.identities)
	var ag agent.ExtendedAgent
	done = func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !o.NoAgent {
		if c, err := net.Dial("unix", sock); err == nil {
			ag = agent.NewClient(c)
			done = func() { c.Close() }
		}
	}
	methods = append(methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		all := keys
		if ag != nil {
			if s, err := ag.Signers(); err == nil {
				all = append(s, keys...)
			}
		}
		return all, nil
	}))
	if o.Password != nil {
		pw := func() (string, error) { return o.Password(r.user, o.Name) }
		methods = append(methods, ssh.PasswordCallback(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					if echos[i] {
						continue // not a password prompt
					}
					p, err := pw()
					if err != nil {
						return nil, err
					}
					answers[i] = p
				}
				return answers, nil
			}))
	}
	return methods, done
}

// DialSSH connects to a host, checking its key strictly.
func DialSSH(ctx context.Context, o SSHOptions) (*SSHConn, error) {
	if o.KnownHosts == nil {
		return nil, errors.New("no known hosts: host keys are always checked")
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	r := o.resolve()
	c := &SSHConn{name: o.Name, stop: make(chan struct{})}
	var err error
	if r.jump != "" {
		if c.jump, err = dialJump(ctx, o, r.jump, r.identities); err != nil {
			return nil, fmt.Errorf("through jump host %s: %w", r.jump, err)
		}
	}
	if c.client, err = dialOne(ctx, o, r, c.jump); err != nil {
		if c.jump != nil {
			c.jump.Close()
		}
		return nil, err
	}
	if o.Keepalive > 0 {
		go c.keepalive(o.Keepalive)
	}
	return c, nil
}

// dialJump connects to a ProxyJump host (its key checked like any other).
// It tries its own keys (from ~/.ssh/config) and then the target's.
func dialJump(ctx context.Context, o SSHOptions, spec string, identities []string) (*ssh.Client, error) {
	j := o
	j.Jump, j.User, j.Port = "", "", 0
	j.IdentityFiles = identities
	j.Name = spec
	hostport := spec
	if u, rest, ok := strings.Cut(spec, "@"); ok {
		j.User, hostport = u, rest
	}
	j.Address = hostport
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		j.Address = h
		j.Port, _ = strconv.Atoi(p)
	}
	return dialOne(ctx, j, j.resolve(), nil)
}

func dialOne(ctx context.Context, o SSHOptions, r resolved, via *ssh.Client) (*ssh.Client, error) {
	addr := net.JoinHostPort(r.host, strconv.Itoa(r.port))
	auth, authDone := o.auth(r)
	defer authDone()
	cfg := &ssh.ClientConfig{
		User:              r.user,
		Auth:              auth,
		HostKeyCallback:   o.KnownHosts.Callback(),
		HostKeyAlgorithms: o.KnownHosts.Algorithms(addr),
		Timeout:           o.ConnectTimeout,
	}
	ctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if via != nil {
		conn, err = via.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// The handshake knows no context: a cancelled dial closes its
	// connection (the run gave up on this host, or on the whole start).
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	stop()
	if err == nil && ctx.Err() != nil {
		sc.Close()
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		var unknown *UnknownHostError
		var changed *ChangedHostKeyError
		switch {
		case errors.As(err, &unknown):
			return nil, unknown
		case errors.As(err, &changed):
			return nil, changed
		}
		return nil, fmt.Errorf("ssh handshake with %s@%s: %w", r.user, addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

// keepalive pings the server; a connection that stops answering is closed,
// so that everything waiting on it fails instead of hanging.
func (c *SSHConn) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				c.client.Close()
				return
			}
			missed = 0
		case <-time.After(every):
			if missed++; missed >= 3 {
				c.client.Close()
				return
			}
		}
	}
}

// Name is the host's name in the plan.
func (c *SSHConn) Name() string { return c.name }

// Client is the underlying SSH client (for tests and long sessions).
func (c *SSHConn) Client() *ssh.Client { return c.client }

// Run runs argv in a new session.
func (c *SSHConn) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	s, err := c.client.NewSession()
	if err != nil {
		return nil, &RunError{Host: c.name, Argv: argv, Status: -1, Err: fmt.Errorf("open a session: %w", err)}
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = stdin, &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(Quote(argv)) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		return nil, &RunError{Host: c.name, Argv: argv, Status: -1, Err: ctx.Err()}
	}
	if err != nil {
		return stdout.Bytes(), &RunError{Host: c.name, Argv: argv, Status: exitStatus(err), Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

type sshProcess struct {
	host   string
	argv   []string
	s      *ssh.Session
	in     io.WriteCloser
	out    io.Reader
	stderr cappedBuffer
}

func (p *sshProcess) Stdin() io.WriteCloser { return p.in }
func (p *sshProcess) Stdout() io.Reader     { return p.out }
func (p *sshProcess) Wait() error {
	defer p.s.Close()
	if err := p.s.Wait(); err != nil {
		return &RunError{Host: p.host, Argv: p.argv, Status: exitStatus(err), Stderr: p.stderr.String(), Err: err}
	}
	return nil
}

// exitStatus is a failed session's exit status, or -1 when it was killed
// by a signal or cut off.
func exitStatus(err error) int {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus()
	}
	return -1
}

// Start starts argv in a new session with pipes.
func (c *SSHConn) Start(ctx context.Context, argv []string) (Process, error) {
	s, err := c.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open a session: %w", err)
	}
	p := &sshProcess{host: c.name, argv: argv, s: s}
	s.Stderr = &p.stderr
	in, err1 := s.StdinPipe()
	out, err2 := s.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		s.Close()
		return nil, err
	}
	p.in, p.out = in, out
	if err := s.Start(Quote(argv)); err != nil {
		s.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	context.AfterFunc(ctx, func() { s.Close() })
	return p, nil
}

// SFTP returns the connection's SFTP client, opened on first use.
func (c *SSHConn) SFTP() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	sc, err := sftp.NewClient(c.client,
		sftp.UseConcurrentReads(true),
		sftp.UseConcurrentWrites(true),
		sftp.MaxConcurrentRequestsPerFile(64),
		// OpenSSH serves reads of at most 261,120 bytes (SFTP_MAX_READ_LENGTH);
		// asking for more makes pkg/sftp return a short file without an error
		// (pkg/sftp issue 658). Sizes are checked against the agent anyway.
		sftp.MaxPacketUnchecked(maxSFTPPacket),
	)
	if err != nil {
		return nil, fmt.Errorf("start sftp: %w", err)
	}
	c.sftp = sc
	return sc, nil
}

// ReadFile reads a file over SFTP.
func (c *SSHConn) ReadFile(p string) ([]byte, error) {
	sc, err := c.SFTP()
	if err != nil {
		return nil, err
	}
	f, err := sc.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// WriteFile writes a file over SFTP, atomically: into a temporary file of
// its own, renamed into place.
func (c *SSHConn) WriteFile(p string, r io.Reader, mode uint32) error {
	sc, err := c.SFTP()
	if err != nil {
		return err
	}
	tmp := path.Join(path.Dir(p), atomicfile.TempName(path.Base(p)))
	f, err := sc.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if _, err := f.ReadFrom(r); err != nil {
		f.Close()
		sc.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(fs.FileMode(mode)); err != nil {
		f.Close()
		sc.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		sc.Remove(tmp)
		return err
	}
	if err := sc.PosixRename(tmp, p); err != nil {
		if err := sc.Rename(tmp, p); err != nil {
			sc.Remove(tmp)
			return fmt.Errorf("rename %s: %w", tmp, err)
		}
	}
	return nil
}

// CreateExclusive creates a new remote file with data (SFTP's O_EXCL). The
// SFTP protocol reports "exists" as a plain failure, so a failure is
// checked against the file's existence.
func (c *SSHConn) CreateExclusive(p string, data []byte, mode uint32) error {
	sc, err := c.SFTP()
	if err != nil {
		return err
	}
	f, err := sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		if _, serr := sc.Lstat(p); serr == nil {
			return &fs.PathError{Op: "create", Path: p, Err: fs.ErrExist}
		}
		return fmt.Errorf("create %s: %w", p, err)
	}
	_, werr := f.Write(data)
	err = errors.Join(werr, f.Chmod(fs.FileMode(mode)), f.Close())
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// ReadDir lists a remote directory.
func (c *SSHConn) ReadDir(p string) ([]Entry, error) {
	sc, err := c.SFTP()
	if err != nil {
		return nil, err
	}
	fis, err := sc.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(fis))
	for i, fi := range fis {
		out[i] = Entry{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime()}
	}
	return out, nil
}

// Remove removes a remote file; a missing one is not an error.
func (c *SSHConn) Remove(p string) error {
	sc, err := c.SFTP()
	if err != nil {
		return err
	}
	if err := sc.Remove(p); err != nil {
		if _, serr := sc.Lstat(p); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// Stat returns a remote file's size.
func (c *SSHConn) Stat(p string) (int64, error) {
	sc, err := c.SFTP()
	if err != nil {
		return 0, err
	}
	fi, err := sc.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// MkdirAll creates a remote directory and its parents.
func (c *SSHConn) MkdirAll(p string, mode uint32) error {
	sc, err := c.SFTP()
	if err != nil {
		return err
	}
	if err := sc.MkdirAll(p); err != nil {
		return err
	}
	return sc.Chmod(p, fs.FileMode(mode))
}

// Download copies a remote file into w from offset with concurrent reads.
func (c *SSHConn) Download(ctx context.Context, p string, w io.WriterAt, offset int64, progress func(int64)) (int64, error) {
	sc, err := c.SFTP()
	if err != nil {
		return 0, err
	}
	f, err := sc.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	n, err := f.WriteTo(&progressWriter{w: io.NewOffsetWriter(w, offset), progress: progress})
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	return n, err
}

// progressWriter reports bytes as they are written.
type progressWriter struct {
	w        io.Writer
	progress func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if p.progress != nil && n > 0 {
		p.progress(int64(n))
	}
	return n, err
}

// Close ends SFTP, the connection and its jump host.
func (c *SSHConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.mu.Lock()
		if c.sftp != nil {
			c.sftp.Close()
		}
		c.mu.Unlock()
		c.closeErr = c.client.Close()
		if c.jump != nil {
			c.jump.Close()
		}
	})
	return c.closeErr
}

// maxSFTPPacket is the largest SFTP read OpenSSH's server answers in full.
const maxSFTPPacket = 256*1024 - 1024
