//go:build linux

package orchestrator_test

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// countingConn counts the exec sessions (Run and Start) casecap opens on a
// host, and says which.
type countingConn struct {
	hosts.Conn
	mu          sync.Mutex
	execs       []string
	statusReads int // of the agent's status file, over SFTP
}

func (c *countingConn) ReadFile(p string) ([]byte, error) {
	if path.Base(p) == agentproto.StatusFile {
		c.mu.Lock()
		c.statusReads++
		c.mu.Unlock()
	}
	return c.Conn.ReadFile(p)
}

func (c *countingConn) note(argv []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	what := path.Base(argv[0])
	if len(argv) > 3 && argv[0] == "sh" {
		what = "sh " + argv[3] // the script's $0: probe, verify...
	} else if len(argv) > 1 {
		what += " " + argv[1]
	}
	c.execs = append(c.execs, what)
}

func (c *countingConn) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	c.note(argv)
	return c.Conn.Run(ctx, argv, stdin)
}

func (c *countingConn) Start(ctx context.Context, argv []string) (hosts.Process, error) {
	c.note(argv)
	return c.Conn.Start(ctx, argv)
}

// TestExecSessionsPerHost counts the exec sessions a whole `run` opens on
// each host (Linux, agent mode, three hosts on one datastore), cold (the
// agent uploaded) and warm: at most two on every host, the first of a
// shared datastore included (issue 13): preflight's probe (which also
// hashes an agent already there), and the agent's serve session, which
// verifies an uploaded agent, then checks, measures the clock, arms,
// begins and would stop; everything else goes over the one SFTP session.
// The captures' status comes on that session too, pushed by the agent: a
// run reads no status file.
func TestExecSessionsPerHost(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 3)
	labtest.Stream(t, l, 39, time.Millisecond)
	for _, round := range []string{"cold", "warm"} {
		p := labPlan(t, l, "SESS-"+strings.ToUpper(round), time.Second, "      - interface: eth0\n        filter: { udpport: 9999 }\n")
		conns := map[string]*countingConn{}
		var mu sync.Mutex
		dial := func(ctx context.Context, h *plans.Host) (hosts.Conn, error) {
			c, err := hosts.DialSSH(ctx, sshOptions(t, l, h))
			if err != nil {
				return nil, err
			}
			cc := &countingConn{Conn: c}
			mu.Lock()
			conns[h.Name] = cc
			mu.Unlock()
			return cc, nil
		}
		o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: t.TempDir(), AgentBinary: agentBinary(t), Version: "test", Dial: dial})
		if _, err := o.Run(context.Background()); err != nil {
			t.Fatalf("%s run: %v", round, err)
		}
		for _, h := range l.Hosts {
			c := conns[h.Name]
			t.Logf("%s, %s: %d exec sessions: %v", round, h.Name, len(c.execs), c.execs)
			if len(c.execs) > 2 {
				t.Errorf("%s, %s: %d exec sessions (%v), want at most 2", round, h.Name, len(c.execs), c.execs)
			}
			if c.statusReads > 0 {
				t.Errorf("%s, %s: the status file was read %d times over SFTP; the agent pushes it on the serve session", round, h.Name, c.statusReads)
			}
		}
	}
}

// sshOptions dials a lab host as casecap would for the plan.
func sshOptions(t *testing.T, l *lab.Lab, h *plans.Host) hosts.SSHOptions {
	kh, err := hosts.NewKnownHosts([]string{l.KnownHosts}, false)
	if err != nil {
		t.Fatal(err)
	}
	return hosts.SSHOptions{Name: h.Name, Address: h.Address, IdentityFiles: []string{l.ClientKey}, NoAgent: true,
		KnownHosts: kh, ConnectTimeout: 5 * time.Second, Password: func(string, string) (string, error) { return "", fmt.Errorf("no password") }}
}
