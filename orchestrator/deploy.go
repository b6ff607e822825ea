package orchestrator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/casecap/casecap/agent/dist"
	"github.com/casecap/casecap/plans"
)

// agentBlob is one agent binary and its content address.
type agentBlob struct {
	data []byte
	sum  string
}

func (o *Orchestrator) agentFor(arch string) (agentBlob, error) {
	get := o.opt.AgentBinary
	if get == nil {
		get = dist.Agent
	}
	b, err := get(arch)
	if err != nil {
		return agentBlob{}, err
	}
	s := sha256.Sum256(b)
	return agentBlob{data: b, sum: hex.EncodeToString(s[:])}, nil
}

// remoteSum asks the host for a file's sha256 ("" when it is missing).
func remoteSum(ctx context.Context, h *hostRun, file string) string {
	out, err := h.conn.Run(ctx, []string{"sha256sum", file}, nil)
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// deploy puts the agent on every datastore and verifies it by its sha256
// before anything runs it. Hosts that share a datastore path go together:
// the first uploads (unless a verified copy is already there), then the
// others only verify, so a datastore truly shared by 50 hosts gets one
// upload; a path that is local to each host gets one per host.
func (o *Orchestrator) deploy(ctx context.Context) {
	self := o.opt.LocalAgent
	if self == nil {
		if exe, err := os.Executable(); err == nil {
			self = []string{exe, "agent"}
		}
	}
	groups := map[string][]*hostRun{}
	var order []string
	for _, h := range o.live() {
		if h.plan.Kind == plans.KindLocal {
			h.agent = self // casecap is its own agent here
			continue
		}
		key := h.plan.Datastore + "\x00" + h.arch
		if groups[key] == nil {
			order = append(order, key)
		}
		groups[key] = append(groups[key], h)
	}
	began := time.Now()
	defer func() {
		o.log.Info("phase done", "phase", "deploy", "took", time.Since(began), "uploads", o.uploads.Load())
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.opt.Parallel)
	for _, key := range order {
		group := groups[key]
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.deployGroup(ctx, group, sem)
		}()
	}
	wg.Wait()
}

// Uploads counts agent uploads (for tests and the bench).
func (o *Orchestrator) Uploads() int { return int(o.uploads.Load()) }

func (o *Orchestrator) deployGroup(ctx context.Context, group []*hostRun, sem chan struct{}) {
	blob, err := o.agentFor(group[0].arch)
	if err != nil {
		for _, h := range group {
			o.fail(h, "deploy", err)
		}
		return
	}
	dir := agentDir(group[0].plan.Datastore)
	file := path.Join(dir, fmt.Sprintf("casecap-agent-%s-linux-%s", blob.sum[:16], group[0].arch))
	ensure := func(h *hostRun) error {
		sem <- struct{}{}
		defer func() { <-sem }()
		if remoteSum(ctx, h, file) != blob.sum {
			if err := h.conn.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			if err := h.conn.WriteFile(file, bytes.NewReader(blob.data), 0o700); err != nil {
				return fmt.Errorf("upload the agent to %s: %w", file, err)
			}
			o.uploads.Add(1)
			if got := remoteSum(ctx, h, file); got != blob.sum {
				return fmt.Errorf("the agent at %s has sha256 %q after upload, want %s", file, got, blob.sum)
			}
		}
		h.agent = []string{file}
		o.disp.HostPhase(h.name(), "agent ready")
		return nil
	}
	// The first host of the group first; the others only once it is done.
	if err := ensure(group[0]); err != nil {
		o.fail(group[0], "deploy", err)
	}
	var wg sync.WaitGroup
	for _, h := range group[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ensure(h); err != nil {
				o.fail(h, "deploy", err)
			}
		}()
	}
	wg.Wait()
}
