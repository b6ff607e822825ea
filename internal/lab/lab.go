package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// MaxHosts is how many hosts fit in one lab's /24.
const MaxHosts = 240

// maxESXi is how many ESXi hosts' VMs fit in the lab's VM /24.
const maxESXi = 60

// DefaultBase is where labs keep their files unless CASECAP_LAB_DIR says
// otherwise. Not under /tmp: casecap refuses datastores there, as ESXi's /tmp
// is a ramdisk.
const DefaultBase = "/var/lib/casecap-lab"

// Options say what lab to build.
type Options struct {
	Hosts int    // number of hosts, 1..MaxHosts
	Base  string // parent directory of labs; default $CASECAP_LAB_DIR or DefaultBase
	// Detach lets the hosts outlive this process (the `lab up` command);
	// otherwise they are killed when it dies, so a crashed test leaves nothing.
	Detach bool
	// RootPassword, when set, lets root log in with this password too (each
	// host sees its own /etc/shadow): for tests of password authentication.
	RootPassword string
	// ESXi makes the first ESXi hosts ESXi-flavoured (named esxiNN): the
	// esxisim tools on their PATH, vSwitch0, VMs, the datastore at
	// ESXiDatastore. ESXiNoExec mounts that datastore noexec on them, so
	// that an uploaded agent cannot run, as under execInstalledOnly.
	ESXi       int
	ESXiNoExec bool
	// IPv6 gives the bridge and every Linux host an IPv6 address too, in
	// 2001:2::/48 (RFC 5180's benchmarking prefix, the IPv6 twin of
	// 198.18.0.0/15), and sshd listens on it: for tests of casecap over
	// IPv6. Without it the lab keeps IPv6 off, so no IPv6 chatter reaches
	// a capture.
	IPv6 bool
	// ClockSkew, by host (h01 first), skews the clock of a test build of
	// the agent on that host, and its packet timestamps (sshd sets
	// CASECAP_TEST_CLOCK_SKEW in every session; see agent/hostclock): a
	// host whose clock is off, on a machine where every host shares one.
	ClockSkew []time.Duration
}

// Lab is a running set of hosts. It is saved as state.json in its directory
// so that another process (`lab down`) can find and remove it.
type Lab struct {
	ID         int          `json:"id"`
	Dir        string       `json:"dir"`
	Datastore  string       `json:"datastore"` // shared by every host at the same path
	Bridge     string       `json:"bridge"`
	Gateway    netip.Addr   `json:"gateway"` // the bridge's address, the orchestrator's side
	Prefix     netip.Prefix `json:"prefix"`
	ClientKey  string       `json:"client_key"`  // private key accepted by every host for root
	KnownHosts string       `json:"known_hosts"` // every host's key, by address
	Hosts      []*Host      `json:"hosts"`
	// VMNet is where lab ESXi hosts' VMs have their addresses (the gateway
	// has one there too).
	VMNet netip.Prefix `json:"vm_net"`
	// Gateway6 and Prefix6, in a lab with IPv6: the bridge's IPv6 address
	// and the hosts' network.
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	Prefix6  netip.Prefix `json:"prefix6,omitzero"`
}

// Broadcast is the lab's broadcast address: every host receives what is sent
// there from the gateway.
func (l *Lab) Broadcast() netip.Addr {
	a := l.Prefix.Addr().As4()
	a[3] = 255
	return netip.AddrFrom4(a)
}

// Host is one lab host.
type Host struct {
	Name      string        `json:"name"`
	Addr      netip.Addr    `json:"addr"`
	MAC       string        `json:"mac"`
	Addr6     netip.Addr    `json:"addr6,omitzero"`       // in a lab with IPv6 (not on ESXi hosts)
	ClockSkew time.Duration `json:"clock_skew,omitempty"` // of a test build of the agent there
	HostKey   string        `json:"host_key"`             // authorized_keys format
	Veth      string        `json:"veth"`                 // the bridge-side end of its link
	Dir       string        `json:"dir"`
	InitPID   int           `json:"init_pid"`
	InitStart uint64        `json:"init_start"` // start time, to tell our init from a reused PID
	NetNS     uint64        `json:"netns"`      // inode of its network namespace
	PIDNS     uint64        `json:"pidns"`
	ESXi      bool          `json:"esxi,omitempty"`
	VMs       []VM          `json:"vms,omitempty"` // on an ESXi host
	// Datastore is the lab's shared datastore as this host sees it.
	Datastore string `json:"datastore"`

	lab *Lab
	cmd *exec.Cmd // set when this process started the init
}

func labBase(base string) string {
	if base != "" {
		return base
	}
	if b := os.Getenv("CASECAP_LAB_DIR"); b != "" {
		return b
	}
	return DefaultBase
}

// Available says why labs cannot run here, or nil when they can.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, veth, bridge)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the lab needs ip from iproute2 (apt-get install iproute2)")
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return fmt.Errorf("the lab needs %s (apt-get install openssh-server)", sshdPath)
	}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("namespaces are unavailable here: %v", err)
	}
	return nil
}

const cloneFlags = syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC

// Start builds a lab of opt.Hosts hosts and returns once every sshd accepts
// connections. On error, whatever was built is removed.
func Start(ctx context.Context, opt Options) (l *Lab, err error) {
	if opt.Hosts < 1 || opt.Hosts > MaxHosts {
		return nil, fmt.Errorf("a lab has 1 to %d hosts, not %d", MaxHosts, opt.Hosts)
	}
	if opt.ESXi < 0 || opt.ESXi > min(opt.Hosts, maxESXi) {
		return nil, fmt.Errorf("a lab has 0 to %d ESXi hosts among its hosts, not %d", min(opt.Hosts, maxESXi), opt.ESXi)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	base := labBase(opt.Base)
	id, dir, err := allocate(base)
	if err != nil {
		return nil, err
	}
	l = &Lab{
		ID:         id,
		Dir:        dir,
		Datastore:  filepath.Join(dir, "datastore"),
		Bridge:     fmt.Sprintf("ccbr%d", id),
		Gateway:    netip.AddrFrom4([4]byte{198, 18, byte(id), 1}),
		Prefix:     netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(id), 0}), 24),
		ClientKey:  filepath.Join(dir, "client_key"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
		VMNet:      netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(id), 0}), 24),
	}
	if opt.IPv6 {
		l.Prefix6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, byte(id)}), 64)
		l.Gateway6 = l.Prefix6.Addr().Next()
	}
	defer func() {
		if err != nil {
			_ = l.Close()
			l = nil
		}
	}()
	if err := l.prepare(opt); err != nil {
		return l, err
	}
	if err := l.saveState(); err != nil {
		return l, err
	}
	if err := l.startHosts(ctx, opt.Detach); err != nil {
		return l, err
	}
	return l, l.saveState()
}

// allocate takes the lowest free lab number, clearing stale labs (whose hosts
// are all gone) on the way. A flock serialises concurrent starts.
func allocate(base string) (int, string, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return 0, "", err
	}
	lock, err := os.OpenFile(filepath.Join(base, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return 0, "", err
	}
	for id := 0; id < 256; id++ {
		dir := filepath.Join(base, strconv.Itoa(id))
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			return id, dir, os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644)
		}
		if !errors.Is(err, os.ErrExist) || !stale(dir) {
			continue
		}
		if old, err := Load(dir); err == nil {
			_ = old.Close()
		} else {
			_ = removeLinks(id)
			_ = os.RemoveAll(dir)
		}
		if err := os.Mkdir(dir, 0o755); err == nil {
			return id, dir, os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644)
		}
	}
	return 0, "", fmt.Errorf("no free lab number under %s (run `lab down --all`)", base)
}

// stale reports whether a lab directory belongs to nobody: no host init alive
// and no owner process alive.
func stale(dir string) bool {
	if l, err := Load(dir); err == nil {
		for _, h := range l.Hosts {
			if h.alive() {
				return false
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "owner"))
	if err != nil {
		return true
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	return err != nil || unix.Kill(pid, 0) != nil
}

// Load reads a lab saved by Start, for `lab down` and friends.
func Load(dir string) (*Lab, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var l Lab
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("decode %s/state.json: %w", dir, err)
	}
	for _, h := range l.Hosts {
		h.lab = &l
	}
	return &l, nil
}

// List returns the labs saved under base.
func List(base string) ([]*Lab, error) {
	entries, err := os.ReadDir(labBase(base))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var labs []*Lab
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || !e.IsDir() {
			continue
		}
		if l, err := Load(filepath.Join(labBase(base), e.Name())); err == nil {
			labs = append(labs, l)
		}
	}
	return labs, nil
}

func (l *Lab) saveState() error {
	raw, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "state.json.tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "state.json"))
}

// prepare writes keys and configurations and creates the bridge.
func (l *Lab) prepare(opt Options) error {
	n, password := opt.Hosts, opt.RootPassword
	if err := os.MkdirAll(l.Datastore, 0o755); err != nil {
		return err
	}
	var exe string
	if opt.ESXi > 0 {
		// The mount point ESXi hosts see the datastore on. It stays (empty)
		// after the lab: removing it could unmount it under another lab.
		if err := os.MkdirAll(ESXiDatastore, 0o755); err != nil {
			return err
		}
		// The simulated tools are this binary under other names; a copy in
		// the lab's directory, as test binaries live under /tmp, which
		// every host mounts privately.
		exe = filepath.Join(l.Dir, "esxi-tools")
		if err := copyExecutable(exe); err != nil {
			return err
		}
	}
	var binds []bindMount
	if password != "" {
		shadow, err := shadowWithRoot(password)
		if err != nil {
			return err
		}
		path := filepath.Join(l.Dir, "shadow")
		if err := os.WriteFile(path, shadow, 0o600); err != nil {
			return err
		}
		binds = append(binds, bindMount{Source: path, Target: "/etc/shadow", ReadOnly: true})
	}
	clientPub, err := newKey(l.ClientKey, "casecap-lab")
	if err != nil {
		return err
	}
	authorized := filepath.Join(l.Dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		return err
	}
	var known strings.Builder
	for i := 1; i <= n; i++ {
		esx := i <= opt.ESXi
		h := &Host{
			Name: fmt.Sprintf("h%02d", i),
			ESXi: esx, Datastore: l.Datastore,
			Addr: netip.AddrFrom4([4]byte{198, 18, byte(l.ID), byte(10 + i)}),
			MAC:  fmt.Sprintf("02:cc:%02x:00:00:%02x", l.ID, i),
			Veth: fmt.Sprintf("cc%dh%d", l.ID, i),
			lab:  l,
		}
		if esx {
			h.Name, h.Datastore = fmt.Sprintf("esxi%02d", i), ESXiDatastore
		} else if opt.IPv6 {
			a := l.Prefix6.Addr().As16()
			a[15] = byte(10 + i)
			h.Addr6 = netip.AddrFrom16(a)
		}
		h.Dir = filepath.Join(l.Dir, "hosts", h.Name)
		if err := os.MkdirAll(h.Dir, 0o755); err != nil {
			return err
		}
		pub, err := newKey(filepath.Join(h.Dir, "ssh_host_ecdsa_key"), h.Name)
		if err != nil {
			return err
		}
		h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		known.WriteString(knownhosts.Line([]string{h.Addr.String()}, pub) + "\n")
		if h.Addr6.IsValid() {
			known.WriteString(knownhosts.Line([]string{h.Addr6.String()}, pub) + "\n")
		}
		config := sshdConfig(h.Dir, authorized, password != "", h.Addr6.IsValid())
		if i <= len(opt.ClockSkew) && opt.ClockSkew[i-1] != 0 {
			h.ClockSkew = opt.ClockSkew[i-1]
			config += "SetEnv CASECAP_TEST_CLOCK_SKEW=" + h.ClockSkew.String() + "\n"
		}
		if err := os.WriteFile(filepath.Join(h.Dir, "sshd_config"), []byte(config), 0o600); err != nil {
			return err
		}
		cfg := hostConfig{
			Name:       h.Name,
			Addr:       netip.PrefixFrom(h.Addr, 24).String(),
			Dir:        h.Dir,
			SSHDConfig: filepath.Join(h.Dir, "sshd_config"),
			Addr6:      prefixOf(h.Addr6, 64),
			Hide:       []string{"/root/.bashrc", "/root/.profile", "/root/.bash_profile", "/root/.bash_login"},
			Binds:      slices.Clone(binds),
		}
		if esx {
			if err := l.esxiSetup(h, i, exe, &cfg, opt.ESXiNoExec); err != nil {
				return err
			}
		}
		raw, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.Dir, "host.json"), raw, 0o600); err != nil {
			return err
		}
		l.Hosts = append(l.Hosts, h)
	}
	if err := os.WriteFile(l.KnownHosts, []byte(known.String()), 0o644); err != nil {
		return err
	}
	cmds := []string{
		"link add " + l.Bridge + " type bridge",
		// Keep the root side quiet too: no IPv6 chatter in captures.
		sysctlCmd(l.Bridge),
		"addr add " + netip.PrefixFrom(l.Gateway, 24).String() + " brd + dev " + l.Bridge,
		"addr add " + netip.PrefixFrom(l.VMNet.Addr().Next(), 24).String() + " brd + dev " + l.Bridge,
	}
	if l.Gateway6.IsValid() {
		cmds = append(cmds, ipv6OnCmd(l.Bridge), "addr add "+netip.PrefixFrom(l.Gateway6, 64).String()+" dev "+l.Bridge+" nodad")
	}
	return ipBatch(append(cmds, "link set "+l.Bridge+" up")...)
}

// prefixOf is addr/bits in CIDR form, or "" for no address.
func prefixOf(addr netip.Addr, bits int) string {
	if !addr.IsValid() {
		return ""
	}
	return netip.PrefixFrom(addr, bits).String()
}

// copyExecutable copies this process's binary to path.
func copyExecutable(path string) error {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// sysctlCmd is a marker understood by ipBatch: disable IPv6 on a link
// between two ip commands.
func sysctlCmd(link string) string { return "#noipv6 " + link }

// ipv6OnCmd is the marker that enables IPv6 on a link.
func ipv6OnCmd(link string) string { return "#ipv6 " + link }

// shadowWithRoot is this machine's /etc/shadow with root's password set
// (SHA-512 crypt, by openssl, the password on its stdin).
func shadowWithRoot(password string) ([]byte, error) {
	cmd := exec.Command("openssl", "passwd", "-6", "-stdin")
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("hash the lab's root password with openssl (apt-get install openssl): %w", err)
	}
	raw, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		if f := strings.Split(line, ":"); len(f) > 2 && f[0] == "root" {
			f[1] = strings.TrimSpace(string(out))
			lines[i] = strings.Join(f, ":")
		}
	}
	return []byte(strings.Join(lines, "\n")), nil
}

func sshdConfig(hostDir, authorized string, passwords, ipv6 bool) string {
	permit, pw := "prohibit-password", "no"
	if passwords {
		permit, pw = "yes", "yes"
	}
	listen := "ListenAddress 0.0.0.0:22"
	if ipv6 {
		listen += "\nListenAddress [::]:22"
	}
	return strings.Join([]string{
		listen,
		"HostKey " + filepath.Join(hostDir, "ssh_host_ecdsa_key"),
		"PidFile none",
		"AuthorizedKeysFile " + authorized,
		"PermitRootLogin " + permit,
		"PubkeyAuthentication yes",
		"PasswordAuthentication " + pw,
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"UseDNS no",
		"PrintMotd no",
		"PrintLastLog no",
		"X11Forwarding no",
		"MaxStartups 200:30:400",
		"MaxSessions 64",
		"LogLevel ERROR",
		"Subsystem sftp internal-sftp",
		"",
	}, "\n")
}

// startHosts starts every host's init, wires its veth into the bridge and
// waits until its sshd is ready.
func (l *Lab) startHosts(ctx context.Context, detach bool) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	type pipes struct {
		in  io.WriteCloser
		out *bufio.Reader
		raw io.Closer
	}
	ps := make([]pipes, len(l.Hosts))
	for i, h := range l.Hosts {
		cmd := exec.Command(exe)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", initEnv + "=" + filepath.Join(h.Dir, "host.json")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags, Setsid: true}
		if !detach {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}
		logf, err := os.OpenFile(filepath.Join(h.Dir, "init.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		cmd.Stderr = logf
		in, err := cmd.StdinPipe()
		if err != nil {
			logf.Close()
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			logf.Close()
			return err
		}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return fmt.Errorf("start init of %s: %w", h.Name, err)
		}
		h.cmd, h.InitPID = cmd, cmd.Process.Pid
		h.InitStart, _ = procStart(h.InitPID)
		h.NetNS, _ = nsInode(h.InitPID, "net")
		h.PIDNS, _ = nsInode(h.InitPID, "pid")
		ps[i] = pipes{in: in, out: bufio.NewReader(out), raw: out}
	}
	// Veths are created down, IPv6 is switched off on the bridge side, then
	// they are enslaved and brought up: no link-local chatter ever starts.
	var add, up []string
	for _, h := range l.Hosts {
		add = append(add, fmt.Sprintf("link add %s type veth peer name eth0 address %s netns %d", h.Veth, h.MAC, h.InitPID), sysctlCmd(h.Veth))
		up = append(up, "link set "+h.Veth+" master "+l.Bridge, "link set "+h.Veth+" up")
	}
	if err := ipBatch(append(add, up...)...); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i, h := range l.Hosts {
		p := ps[i]
		g.Go(func() error {
			defer p.in.Close()
			if _, err := io.WriteString(p.in, "net\n"); err != nil {
				return fmt.Errorf("%s: init is gone: %v (see %s/init.log)", h.Name, err, h.Dir)
			}
			type result struct {
				line string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				line, err := p.out.ReadString('\n')
				res <- result{strings.TrimSpace(line), err}
			}()
			select {
			case r := <-res:
				if r.line != "ready" {
					return fmt.Errorf("%s did not become ready: %q %v (see %s)", h.Name, r.line, r.err, h.Dir)
				}
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(30 * time.Second):
				return fmt.Errorf("%s: no ready signal within 30s (see %s)", h.Name, h.Dir)
			}
			return p.raw.Close()
		})
	}
	return g.Wait()
}

// ipBatch runs ip commands in one process; "-force" goes on past errors only
// when the caller asks for it through ipBatchForce.
func ipBatch(cmds ...string) error { return runIP(false, cmds) }

func ipBatchForce(cmds ...string) error { return runIP(true, cmds) }

func runIP(force bool, cmds []string) error {
	// Split at sysctl markers: they must run between ip commands.
	var chunk []string
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		args := []string{"-batch", "-"}
		if force {
			args = append([]string{"-force"}, args...)
		}
		cmd := exec.Command("ip", args...)
		cmd.Stdin = strings.NewReader(strings.Join(chunk, "\n") + "\n")
		out, err := cmd.CombinedOutput()
		chunk = chunk[:0]
		if err != nil && !force {
			return fmt.Errorf("ip: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	for _, c := range cmds {
		if link, ok := strings.CutPrefix(c, "#noipv6 "); ok {
			if err := flush(); err != nil {
				return err
			}
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte("1"), 0)
			continue
		}
		if link, ok := strings.CutPrefix(c, "#ipv6 "); ok {
			if err := flush(); err != nil {
				return err
			}
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte("0"), 0); err != nil {
				return fmt.Errorf("enable IPv6 on %s: %w", link, err)
			}
			continue
		}
		chunk = append(chunk, c)
	}
	return flush()
}

// removeLinks deletes lab id's bridge and bridge-side veths (which takes the
// hosts' eth0 with them).
func removeLinks(id int) error {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return err
	}
	var cmds []string
	prefix := fmt.Sprintf("cc%dh", id)
	for _, name := range linkNames(string(out)) {
		if strings.HasPrefix(name, prefix) {
			cmds = append(cmds, "link del "+name)
		}
	}
	bridge := fmt.Sprintf("ccbr%d", id)
	for _, name := range linkNames(string(out)) {
		if name == bridge {
			cmds = append(cmds, "link del "+bridge)
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	return ipBatchForce(cmds...)
}

// linkNames pulls interface names out of `ip -o link show`
// ("3: cc0h1@if2: <...>").
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		names = append(names, name)
	}
	return names
}

// Close removes the lab: links first (while the namespaces still exist, so the
// veth pairs go at once), then the hosts' inits (and with them every process
// in their namespaces), then the files.
func (l *Lab) Close() error {
	var errs []error
	if err := removeLinks(l.ID); err != nil {
		errs = append(errs, fmt.Errorf("remove links: %w", err))
	}
	for _, h := range l.Hosts {
		if h.InitPID != 0 && (h.cmd != nil || h.alive()) {
			_ = unix.Kill(h.InitPID, syscall.SIGTERM)
		}
	}
	for _, h := range l.Hosts {
		if err := h.waitGone(5 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// waitGone waits for the host's init to exit, killing it if it lingers.
func (h *Host) waitGone(grace time.Duration) error {
	if h.cmd != nil {
		done := make(chan struct{})
		go func() { _ = h.cmd.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-time.After(grace):
			_ = h.cmd.Process.Kill()
			<-done
			return nil
		}
	}
	// Not our child (a lab started by another process): poll, bounded.
	deadline, killed := time.Now().Add(grace), false
	for h.alive() {
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("%s: init (pid %d) survived SIGKILL", h.Name, h.InitPID)
			}
			_ = unix.Kill(h.InitPID, syscall.SIGKILL)
			deadline, killed = time.Now().Add(grace), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// alive reports whether the host's init is still running (and is ours, not
// a reused PID).
func (h *Host) alive() bool {
	if h.InitPID == 0 {
		return false
	}
	start, ok := procStart(h.InitPID)
	if !ok || start != h.InitStart {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.InitPID))
	if err != nil {
		return false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// procStart reads a process's start time (field 22 of /proc/PID/stat).
func procStart(pid int) (uint64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

func nsInode(pid int, kind string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Leftovers lists what of this lab still exists after Close: links, its
// directory, and any process in one of its hosts' namespaces.
func (l *Lab) Leftovers() []string {
	var left []string
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, name := range linkNames(string(out)) {
			if name == l.Bridge || strings.HasPrefix(name, fmt.Sprintf("cc%dh", l.ID)) {
				left = append(left, "link "+name)
			}
		}
	}
	if _, err := os.Stat(l.Dir); err == nil {
		left = append(left, "directory "+l.Dir)
	}
	ns := map[uint64]string{}
	for _, h := range l.Hosts {
		if h.NetNS != 0 {
			ns[h.NetNS], ns[h.PIDNS] = h.Name, h.Name
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for _, kind := range []string{"net", "pid"} {
			if ino, err := nsInode(pid, kind); err == nil && ns[ino] != "" {
				left = append(left, fmt.Sprintf("process %d in %s's %s namespace", pid, ns[ino], kind))
				break
			}
		}
	}
	return left
}
