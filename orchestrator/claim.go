package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"
	"time"
)

// A case is claimed on its datastores before anything is deployed or
// armed, so that of several starts of one case at once exactly one goes
// on: the others are refused at once and touch nothing. A claim is a file
// created exclusively (O_EXCL) in the case's state directory,
// <datastore>/.casecap/cases/<case>/.claim-<n>.json. It is made on the
// plan's first host first, then on the others at once (hosts that share
// storage find the claim their own run made). A run that ends before any
// capture began removes its claims; one whose captures began marks them
// begun, and they then refuse every later start of the case (whose files
// are there). A claim that never reached its begin and is older than
// claimTTL on the host's clock belonged to a casecap that died while
// starting (its agents ended by their hard deadline long before): the next
// start takes it over by creating claim n+1, exclusively again, so that of
// several such starts one wins.

// claimTTL is how old a claim that never began must be to be taken over:
// far longer than a start takes to reach its begin, and than armed agents
// wait for one (armSlack).
const claimTTL = 15 * time.Minute

// caseClaim is what a claim file holds: who claimed the case.
type caseClaim struct {
	Run     string    `json:"run"` // this command's random id
	Command string    `json:"command"`
	By      string    `json:"by"` // user@machine
	PID     int       `json:"pid"`
	Plan    string    `json:"plan,omitempty"`
	At      time.Time `json:"at"` // casecap's clock
	Begun   time.Time `json:"begun,omitzero"`
}

// newRunID is a random id for one command.
func newRunID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// claimedError is a case another run holds.
type claimedError struct {
	Case   string
	Dir    string
	Holder caseClaim
	Path   string
}

func (e *claimedError) Error() string {
	c := e.Holder
	if c.Run == "" {
		return fmt.Sprintf("case %s is claimed by another run (%s, being written): another casecap is starting this case; wait for it, or use another case id", e.Case, e.Path)
	}
	who := fmt.Sprintf("casecap %s by %s (pid %d) at %s", c.Command, c.By, c.PID, c.At.UTC().Format(time.RFC3339))
	if !c.Begun.IsZero() {
		return fmt.Sprintf("case %s is claimed by another run, which already began capturing at %s (%s): collect it (casecap collect PLAN); to run the case again, remove %s and the case folder on each datastore first, or use another case id",
			e.Case, c.Begun.UTC().Format(time.RFC3339), who, e.Dir)
	}
	return fmt.Sprintf("case %s is claimed by another run, which is starting it (%s): wait for it, or use another case id", e.Case, who)
}

// claimDir is where a host's claims of the case live.
func (o *Orchestrator) claimDir(h *hostRun) string {
	return path.Join(h.plan.Datastore, ".casecap", "cases", o.opt.Plan.Case)
}

// claimName is the file name of claim n.
func claimName(n int) string { return ".claim-" + strconv.Itoa(n) + ".json" }

// claimNumber reads n back from a claim's file name.
func claimNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, ".claim-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".json")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// claim claims the case on every live host: the first host first, then
// the rest at once. A claim another run holds ends the start (even with
// --allow-partial: the case is that run's), and this run's claims are
// released.
func (o *Orchestrator) claim(ctx context.Context) {
	live := o.live()
	if len(live) == 0 {
		return
	}
	o.mine = caseClaim{Run: o.runID, Command: o.command, By: whoAmI(), PID: os.Getpid(), Plan: o.opt.Plan.File, At: time.Now()}
	first := live[0]
	o.each(ctx, phaseClaim, func(ctx context.Context, h *hostRun) error {
		if h != first {
			return nil
		}
		return o.claimOn(ctx, h)
	})
	if first.err != nil {
		return
	}
	o.each(ctx, phaseClaim, func(ctx context.Context, h *hostRun) error {
		if h == first {
			return nil
		}
		return o.claimOn(ctx, h)
	})
}

// claimRefused reports whether a host failed because another run holds
// the case.
func (o *Orchestrator) claimRefused() bool {
	for _, h := range o.hosts {
		var ce *claimedError
		if h.err != nil && errors.As(h.err, &ce) {
			return true
		}
	}
	return false
}

// claimOn claims the case on one host's datastore.
func (o *Orchestrator) claimOn(ctx context.Context, h *hostRun) error {
	dir := o.claimDir(h)
	if err := h.conn.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	entries, err := h.conn.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	last, lastAt := 0, time.Time{}
	for _, e := range entries {
		if n, ok := claimNumber(e.Name); ok && n > last {
			last, lastAt = n, e.ModTime
		}
	}
	if last > 0 {
		p := path.Join(dir, claimName(last))
		c, err := readClaim(ctx, h, p)
		switch {
		case err == nil && c.Run == o.runID:
			h.run.claim = p // shared storage: claimed by another host of this run
			return nil
		case err == nil && c.Begun.IsZero() && o.claimAge(ctx, h, lastAt) > claimTTL:
			o.log.Warn("taking over a stale claim", "host", h.name(), "claim", p, "holder", c.By, "at", c.At)
		case errors.Is(err, fs.ErrNotExist):
			// Released since the listing: claim over it.
		default:
			return &claimedError{Case: o.opt.Plan.Case, Dir: dir, Holder: c, Path: p}
		}
	}
	p := path.Join(dir, claimName(last+1))
	data, _ := json.Marshal(o.mine)
	if err := h.conn.CreateExclusive(p, data, 0o600); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		c, _ := readClaim(ctx, h, p)
		if c.Run == o.runID {
			h.run.claim = p
			return nil
		}
		return &claimedError{Case: o.opt.Plan.Case, Dir: dir, Holder: c, Path: p}
	}
	h.run.claim, h.run.claimMine = p, true
	// Claims taken over stay until now, so that no racing start could miss
	// the newest; they are of no use any more.
	for n := 1; n <= last; n++ {
		_ = h.conn.Remove(path.Join(dir, claimName(n)))
	}
	return nil
}

// claimAge is how old a claim made at mtime is by the host's clock (to
// the second, asked of the host: only a claim that is there and never
// began needs it, so a start costs no process for it); by ours if the
// host does not say.
func (o *Orchestrator) claimAge(ctx context.Context, h *hostRun, mtime time.Time) time.Duration {
	now := time.Now()
	if out, err := h.conn.Run(ctx, []string{"date", "+%s"}, nil); err == nil {
		if secs, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			now = time.Unix(secs, 0)
		}
	}
	return now.Sub(mtime)
}

// claimWritten is how long a claim found empty (created, its content not
// written yet: another host of this run on the same storage, or another
// run) is read again before it counts as held by someone unknown.
const claimWritten = time.Second

func readClaim(ctx context.Context, h *hostRun, p string) (caseClaim, error) {
	deadline := time.Now().Add(claimWritten)
	for {
		var c caseClaim
		b, err := h.conn.ReadFile(p)
		if err != nil {
			return c, err
		}
		if json.Unmarshal(b, &c) == nil {
			return c, nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 20*time.Millisecond) {
			return caseClaim{}, nil // still being written: someone's, held
		}
	}
}

// markBegun records in this run's claims that captures began: from now on
// they refuse every later start of the case.
func (o *Orchestrator) markBegun(ctx context.Context, at time.Time) {
	o.mine.Begun = at
	data, _ := json.Marshal(o.mine)
	o.eachQuiet(ctx, o.hosts, func(h *hostRun) {
		if !h.run.claimMine {
			return
		}
		if err := h.conn.WriteFile(h.run.claim, strings.NewReader(string(data)), 0o600); err != nil {
			o.log.Error("could not mark the case's claim begun", "host", h.name(), "claim", h.run.claim, "err", err)
		}
	})
}

// releaseClaims removes this run's claims: the start ended before any
// capture began, and the case is free again.
func (o *Orchestrator) releaseClaims() {
	o.eachQuiet(context.Background(), o.hosts, func(h *hostRun) {
		if !h.run.claimMine || h.conn == nil {
			return
		}
		if err := h.conn.Remove(h.run.claim); err != nil {
			o.log.Error("could not release the case's claim", "host", h.name(), "claim", h.run.claim, "err", err)
			return
		}
		h.run.claim, h.run.claimMine = "", false
	})
}
