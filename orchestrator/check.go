package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/plans"
)

// checkHost asks the agent what it can do on the host (its driver holds
// the answer against the captures: interfaces, tcpdump, root) and measures
// the host's clock offset and the round trip. A host that refuses to run
// the agent goes on with its driver's fallback, if it has one.
func (o *Orchestrator) checkHost(ctx context.Context, h *hostRun) (err error) {
	defer close(h.run.checked)
	// On a datastore another host shares, the agent that host uploaded is
	// verified by that host's check: wait for it, rather than hash the
	// same file again (if it could not, this host verifies it itself).
	if first := h.facts.sharedWith; first != nil && !h.facts.verified {
		select {
		case <-first.run.checked:
			h.facts.verified = first.run.agentOK
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// One session, held for the rest of the run: the agent verified by its
	// hash (unless it was), its facts, the clock exchange; then the job,
	// the begin and any stop (see arm, begin and stop).
	hs, line, err := o.startCheck(ctx, h)
	if errors.Is(err, errAgentMismatch) {
		// A copy that is not the agent (damaged, or another file under
		// its name): upload it again, and verify again.
		if err := o.upload(h, agentDir(h.plan.Datastore), h.facts.agent[0], h.facts.agentBlob); err != nil {
			return err
		}
		hs, line, err = o.startCheck(ctx, h)
	}
	if err != nil {
		if fb := fallbackDriver(h.drv); fb != nil && execRefused(err) && o.opt.Plan.Triggered() {
			return plans.ErrTriggerSSHMode
		}
		if fb := fallbackDriver(h.drv); fb != nil && execRefused(err) {
			// execInstalledOnly: the host runs only what VMware
			// installed. casecap never turns that off; it drives
			// pktcap-uw with shell commands instead.
			h.drv = fb
			o.disp.HostPhase(h.name(), "the host refuses to run the agent (execInstalledOnly): capturing over SSH with shell commands")
			o.log.Warn("agent refused, ssh mode", "host", h.name(), "err", err)
			return nil
		}
		return err
	}
	h.run.agentOK = true // it ran, verified
	defer func() {
		if err != nil {
			hs.close()
		}
	}()
	if err := json.Unmarshal(line, &h.facts.checked); err != nil {
		return fmt.Errorf("the agent's check: %w", err)
	}
	if err := h.drv.checkFacts(h); err != nil {
		return err
	}
	if h.facts.clock, err = clockExchange(ctx, hs.proc.Stdin(), hs.out, nil, checkRound, nil); err != nil {
		return fmt.Errorf("measure the clock: %w", err)
	}
	if !hs.detach() {
		return errInterrupted
	}
	h.run.held = hs
	o.disp.HostPhase(h.name(), h.facts.clock.String())
	return nil
}

// verifyAndCheck verifies the agent by its sha256 and, only if it matches,
// runs it (`agent serve`). Agent path and hash are positional
// parameters. A mismatch answers "mismatch" and exits 3.
const verifyAndCheck = `a=$1; want=$2; shift 2
s=$(sha256sum "$a" 2>/dev/null | cut -d ' ' -f 1)
if [ "$s" != "$want" ]; then echo "mismatch $s"; exit 3; fi
exec "$a" "$@"`

var errAgentMismatch = errors.New("the agent on the datastore is not the one casecap carries")

// startCheck starts the agent's serve session (held: see startHeld) and
// reads its facts line.
func (o *Orchestrator) startCheck(ctx context.Context, h *hostRun) (*held, []byte, error) {
	argv := h.facts.agent.Serve()
	if !h.facts.verified {
		argv = append([]string{"sh", "-c", verifyAndCheck, "verify", h.facts.agent[0], h.facts.agentBlob.sum}, argv[1:]...)
	}
	hs, err := startHeld(ctx, h.conn, argv)
	if err != nil {
		return nil, nil, err
	}
	line, err := hs.out.ReadBytes('\n')
	if err != nil || bytes.HasPrefix(line, []byte("mismatch")) {
		werr := hs.close()
		if bytes.HasPrefix(line, []byte("mismatch")) {
			return nil, nil, fmt.Errorf("%w (sha256 %q)", errAgentMismatch, bytes.TrimSpace(bytes.TrimPrefix(line, []byte("mismatch"))))
		}
		return nil, nil, fmt.Errorf("the agent's check: %v (%w)", err, werr)
	}
	return hs, line, nil
}

// execRefused says whether running the agent failed because the host does
// not let uploaded programs run: ESXi's execInstalledOnly ("Operation not
// permitted"), or a datastore mounted noexec ("Permission denied"), both
// exit status 126 from the shell.
func execRefused(err error) bool {
	var re *hosts.RunError
	if !errors.As(err, &re) {
		return false
	}
	msg := strings.ToLower(re.Stderr)
	return re.Status == 126 || strings.Contains(msg, "operation not permitted") || strings.Contains(msg, "permission denied")
}
