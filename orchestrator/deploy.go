package orchestrator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/casecap/casecap/internal/agent/dist"
)

// agentBlob is one agent binary and its content address.
type agentBlob struct {
	data []byte
	sum  string
}

// agentFor returns the agent for an architecture, loaded (and hashed) once.
func (o *Orchestrator) agentFor(arch string) (agentBlob, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b, ok := o.agents[arch]; ok {
		return b, nil
	}
	get := o.opt.AgentBinary
	if get == nil {
		get = dist.Agent
	}
	b, err := get(arch)
	if err != nil {
		return agentBlob{}, err
	}
	s := sha256.Sum256(b)
	blob := agentBlob{data: b, sum: hex.EncodeToString(s[:])}
	if o.agents == nil {
		o.agents = map[string]agentBlob{}
	}
	o.agents[arch] = blob
	return blob, nil
}

// agentPath is where the agent lives on a datastore: named by its content.
func agentPath(ds, arch string, b agentBlob) string {
	return path.Join(agentDir(ds), fmt.Sprintf("casecap-agent-%s-linux-%s", b.sum[:16], arch))
}

// upload puts the agent on a host's datastore, atomically, private.
func (o *Orchestrator) upload(h *hostRun, dir, file string, blob agentBlob) error {
	if err := h.conn.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := h.conn.WriteFile(file, bytes.NewReader(blob.data), 0o700); err != nil {
		return fmt.Errorf("upload the agent to %s: %w", file, err)
	}
	o.uploads.Add(1)
	return nil
}

// deploy puts the agent on every datastore and verifies it by its sha256
// before anything runs it. Hosts that share a datastore path go together,
// and a run proves which of them really share storage: the first host of the
// group writes a random nonce file beside the agent and verifies the agent
// (uploading it if it is missing or wrong); every other host that sees the
// nonce runs that same verified file. A host that does not see it (a path
// local to each host) gets its own copy, verified by hash when check runs
// it. A datastore shared by 50 hosts thus costs one upload and one hash.
func (o *Orchestrator) deploy(ctx context.Context) {
	began := time.Now()
	defer func() {
		o.log.Info("phase done", "phase", "deploy", "took", time.Since(began), "uploads", o.uploads.Load())
	}()
	groups := map[string][]*hostRun{}
	var order []string
	for _, h := range o.live() {
		if h.facts.verified {
			continue // casecap itself, on the local host (see preflight)
		}
		key := h.plan.Datastore + "\x00" + h.facts.arch
		if groups[key] == nil {
			order = append(order, key)
		}
		groups[key] = append(groups[key], h)
	}
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
	blob, err := o.agentFor(group[0].facts.arch)
	if err != nil {
		for _, h := range group {
			o.fail(h, phaseDeploy, err)
		}
		return
	}
	dir := agentDir(group[0].plan.Datastore)
	file := agentPath(group[0].plan.Datastore, group[0].facts.arch, blob)
	for _, h := range group {
		h.facts.agent, h.facts.agentBlob = []string{file}, blob
	}
	// The first host: the nonce, then the agent, verified already if
	// preflight found it there with the right hash, else uploaded (SFTP)
	// and verified by the first host's check, which the others wait for.
	first := group[0]
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	nonce := path.Join(dir, ".shared-"+hex.EncodeToString(rnd[:]))
	err = func() error {
		if err := first.conn.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		if err := first.conn.WriteFile(nonce, strings.NewReader("casecap\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", nonce, err)
		}
		if first.facts.agentFound == blob.sum {
			first.facts.verified = true
			o.disp.HostPhase(first.name(), "agent verified")
			return nil
		}
		if err := o.upload(first, dir, file, blob); err != nil {
			return err
		}
		o.disp.HostPhase(first.name(), "agent uploaded")
		return nil
	}()
	if err != nil {
		o.fail(first, phaseDeploy, err)
	}
	defer func() {
		if err := first.conn.Remove(nonce); err != nil {
			o.log.Warn("could not remove the shared-datastore nonce", "host", first.name(), "file", nonce, "err", err)
		}
	}()
	var wg sync.WaitGroup
	for _, h := range group[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := h.conn.Stat(nonce); err == nil && first.err == nil {
				// The same storage: the same file, verified by the first
				// host (already, or at its check).
				h.facts.verified, h.facts.sharedWith = first.facts.verified, first
				o.disp.HostPhase(h.name(), "agent on the shared datastore")
				return
			}
			// Storage of its own: a copy of its own, verified by check.
			if size, err := h.conn.Stat(file); err != nil || size != int64(len(blob.data)) {
				if err := o.upload(h, dir, file, blob); err != nil {
					o.fail(h, phaseDeploy, err)
					return
				}
			}
			o.disp.HostPhase(h.name(), "agent ready")
		}()
	}
	wg.Wait()
}

// agentPathFor is where the agent for linux/arch goes on a datastore, or
// "" when this casecap carries none for arch.
func (o *Orchestrator) agentPathFor(ds, arch string) string {
	blob, err := o.agentFor(arch)
	if err != nil {
		return ""
	}
	return agentPath(ds, arch, blob)
}
