package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/plans"
)

// knownHostsFor returns the (shared) host key checker for a host's
// known_hosts setting: one per distinct file, so that parallel dials
// append new keys one at a time.
func (o *Orchestrator) knownHostsFor(files string) (*hosts.KnownHosts, error) {
	o.knownMu.Lock()
	defer o.knownMu.Unlock()
	if k, ok := o.known[files]; ok {
		return k, nil
	}
	var list []string
	if files != "" {
		list = []string{hosts.ExpandHome(files)}
	} else {
		home, _ := os.UserHomeDir()
		list = []string{filepath.Join(home, ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"}
	}
	k, err := hosts.NewKnownHosts(list, o.opt.AcceptNewHostKeys)
	if err != nil {
		return nil, err
	}
	if o.known == nil {
		o.known = map[string]*hosts.KnownHosts{}
	}
	o.known[files] = k
	return k, nil
}

// ErrLocalLinuxOnly: a local host's captures are made by casecap itself
// (its own agent), which captures on Linux only.
var ErrLocalLinuxOnly = fmt.Errorf("the local host captures on Linux only (this casecap runs on %s): capture on a remote host instead", runtime.GOOS)

// dial connects to one host: this machine for a local host, SSH otherwise.
func (o *Orchestrator) dial(ctx context.Context, h *plans.Host) (hosts.Conn, error) {
	if o.opt.Dial != nil {
		return o.opt.Dial(ctx, h)
	}
	if h.Kind == plans.KindLocal {
		if runtime.GOOS != "linux" {
			return nil, ErrLocalLinuxOnly
		}
		return hosts.Local(h.Name), nil
	}
	kh, err := o.knownHostsFor(h.SSH.KnownHosts)
	if err != nil {
		return nil, err
	}
	opt := hosts.SSHOptions{
		Name: h.Name, Address: h.Address, Port: h.SSH.Port, User: h.SSH.User,
		KnownHosts: kh, Jump: h.SSH.Jump, ConnectTimeout: h.SSH.ConnectTimeout, Keepalive: h.SSH.Keepalive,
		Password: o.opt.Password,
	}
	if env := h.SSH.PasswordEnv; env != "" {
		// The plan names where the password is; it never holds it.
		opt.Password = func(string, string) (string, error) {
			if v := os.Getenv(env); v != "" {
				return v, nil
			}
			return "", fmt.Errorf("the plan takes %s's password from $%s, which is not set", h.Name, env)
		}
	}
	if h.SSH.IdentityFile != "" {
		opt.IdentityFiles = []string{h.SSH.IdentityFile}
	}
	return hosts.DialSSH(ctx, opt)
}

// connectHost connects to the host (see dial).
func (o *Orchestrator) connectHost(ctx context.Context, h *hostRun) error {
	c, err := o.dial(ctx, h.plan)
	if err != nil {
		return unreachable(err)
	}
	h.conn = c
	o.disp.HostPhase(h.name(), "connected")
	return nil
}

// UnreachableError is a failure to reach a host at all (no answer,
// refused, no route), as against one that answered and said no (a host
// key, a password). Captures already running there go on by themselves.
type UnreachableError struct{ Err error }

func (e *UnreachableError) Error() string { return "unreachable: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// unreachable marks a network failure as an UnreachableError.
func unreachable(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return &UnreachableError{Err: err}
	}
	return err
}
