package orchestrator

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
)

// superviseScript drives pktcap-uw on hosts that refuse to run the agent:
// see the script's own header.
//
//go:embed supervise.sh
var superviseScript string

// sshGrace is how long the script lets pktcap-uw exit after SIGINT before
// SIGTERM, and after SIGTERM before SIGKILL. Shorter than the agent's (5 s):
// a program a non-interactive shell starts in the background has SIGINT
// ignored, so on hosts whose pktcap-uw keeps that, SIGTERM (the KB's own way
// to stop it) is what ends it.
const sshGrace = 2 * time.Second

// esxiSSH: an ESXi host that refuses to run the uploaded agent
// (execInstalledOnly). casecap's script (supervise.sh) runs the same
// pktcap-uw sessions the agent would, keeps the same status.json, and
// waits for the begin on its held session as the agent does. The host's
// clock is not measured (no agent to answer), so instants are sent when
// they come, half a round trip early.
type esxiSSH struct{ esxiPorts }

func (*esxiSSH) mode() Mode { return ModeSSH }

func (*esxiSSH) note() string {
	return "the host refused to run the agent (execInstalledOnly): casecap drove pktcap-uw with shell commands; the host's clock was not measured (clock_offset_ns 0)"
}

// checkFacts: the host was never checked by an agent; pktcap-uw itself
// refuses what it cannot do, and the script reports it.
func (*esxiSSH) checkFacts(*hostRun) error { return nil }

func (*esxiSSH) measureClock(context.Context, *hostRun) error { return nil }

// begin sends the begin on the held session half a round trip before t0:
// the script starts pktcap-uw when the line arrives.
func (*esxiSSH) begin(ctx context.Context, o *Orchestrator, h *hostRun, t0 time.Time) error {
	hs := h.run.held
	if hs == nil {
		return errors.New("no held session to begin the captures on (ssh mode begins only there)")
	}
	h.run.held = nil
	sleep(ctx, time.Until(t0)-h.run.lineLat/2)
	if _, err := hs.send(agentproto.BeginLine(t0)); err != nil {
		return err
	}
	return hs.close()
}

// stop writes the stop file at t1: the script looks for it several times a
// second.
func (d *esxiSSH) stop(ctx context.Context, o *Orchestrator, h *hostRun, t1 time.Time) error {
	if !sleep(ctx, time.Until(t1)) {
		return ctx.Err()
	}
	return d.stopNow(o, h)
}

func (d *esxiSSH) disarm(ctx context.Context, o *Orchestrator, h *hostRun) error {
	return d.stopNow(o, h)
}

// collected counts the packets of a collected file: the script knows the
// file's size and hash, not its packets.
func (*esxiSSH) collected(localFile string, cs *agentproto.CaptureStatus) error {
	return countLocal(localFile, cs)
}

// shellJob is job.sh: the host's captures as shell variables and one
// function per capture that runs its pktcap-uw, every value quoted for the
// shell by hosts.Quote.
func (d *esxiSSH) shellJob(o *Orchestrator, h *hostRun) (string, error) {
	p := o.opt.Plan
	q := func(s string) string { return hosts.Quote([]string{s}) }
	jsonInside := func(v any) string {
		b, _ := json.Marshal(v)
		return strings.TrimSuffix(strings.TrimPrefix(string(b), "{"), "}")
	}
	caseJ, _ := json.Marshal(p.Case)
	hostJ, _ := json.Marshal(h.name())
	var b strings.Builder
	fmt.Fprintf(&b, "# casecap job for %s, case %s\n", h.name(), p.Case)
	fmt.Fprintf(&b, "CASE_J=%s\nHOST_J=%s\nN=%d\nCASEDIR=%s\nGRACE=%d\n",
		q(strings.Trim(string(caseJ), `"`)), q(strings.Trim(string(hostJ), `"`)), len(h.facts.captures), q(h.caseDir(p)), int(sshGrace.Seconds()))
	for i, c := range h.facts.captures {
		n := i + 1
		pc, ok := d.sessions[c.File]
		if !ok {
			return "", fmt.Errorf("%s: no pktcap-uw session", c.File)
		}
		file := path.Join(h.caseDir(p), c.File)
		argv, note, err := esxi.Session(pc, file, *h.facts.esxi, c.MaxPackets, c.ExcludeOwnSSH, h.facts.sshConn)
		if err != nil {
			return "", fmt.Errorf("%s: %w", c.File, err)
		}
		head := jsonInside(struct {
			Name    string `json:"name"`
			File    string `json:"file"`
			Command string `json:"command"`
			Note    string `json:"note,omitempty"`
		}{strings.TrimSuffix(c.File, ".pcapng"), file, strings.Join(argv, " "), note})
		fmt.Fprintf(&b, "CAP%d_FILE=%s\nCAP%d_JSON=%s\nCAP%d_DUR=%.3f\nCAP%d_DURS=%d\nCAP%d_COUNT=%d\nCAP%d_MAXBYTES=%d\nCAP%d_MINFREE=%d\n",
			n, q(file), n, q(head), n, c.Duration.Seconds(), n, int64(math.Ceil(c.Duration.Seconds())),
			n, c.MaxPackets, n, c.MaxBytes, n, (c.MinFree+1023)/1024)
		// exec: the background job the script starts is pktcap-uw itself,
		// so the PID it gets ($!) is pktcap-uw's.
		fmt.Fprintf(&b, "cap%d() {\n\texec %s\n}\n", n, hosts.Quote(argv))
	}
	return b.String(), nil
}

// arm arms a host in ssh mode: the script, the job and casecap's record
// go on the datastore by SFTP, and the script's hold session checks
// everything, then waits for the begin as the agent's does.
func (d *esxiSSH) arm(ctx context.Context, o *Orchestrator, h *hostRun, record []byte) error {
	state := h.stateDir(o.opt.Plan)
	job, err := d.shellJob(o, h)
	if err != nil {
		return err
	}
	if err := h.conn.MkdirAll(state, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", state, err)
	}
	// The job and the record go in as .new: the script puts them in place
	// once its checks pass (a refused start leaves a running one's alone).
	for name, data := range map[string]string{agentproto.SuperviseFile: superviseScript, agentproto.ShellJobFile + ".new": job, agentproto.RecordFile + ".new": string(record)} {
		if err := h.conn.WriteFile(path.Join(state, name), strings.NewReader(data), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	began := time.Now()
	hs, err := startHeld(ctx, h.conn, []string{"sh", path.Join(state, agentproto.SuperviseFile), "hold", state})
	if err != nil {
		return err
	}
	h.run.armed = true // an aborted start stops what may run there from here on
	ans, err := hs.out.ReadBytes('\n')
	if err != nil {
		if werr := hs.close(); werr != nil {
			return werr
		}
		return fmt.Errorf("the capture script ended without answering: %w", err)
	}
	if strings.TrimSpace(string(ans)) != `{"arming_ns":0}` {
		hs.close()
		return fmt.Errorf("the capture script's answer: %q", ans)
	}
	h.run.execLat = time.Since(began)
	return h.hold(hs)
}

// stopNow stops every capture of an ssh-mode host now: the script
// looks for the stop file several times a second.
func (*esxiSSH) stopNow(o *Orchestrator, h *hostRun) error {
	return h.conn.WriteFile(path.Join(h.stateDir(o.opt.Plan), agentproto.StopNowFile), strings.NewReader("casecap\n"), 0o600)
}

// ended says whether an ssh-mode host's script has ended: kill -0 fails
// with status 1 for a process that is gone; anything else (no answer) is
// not known.
func (*esxiSSH) ended(ctx context.Context, o *Orchestrator, h *hostRun) (bool, error) {
	st := h.run.status
	if st == nil || st.PID <= 0 {
		return true, nil
	}
	_, err := h.conn.Run(ctx, []string{"kill", "-0", fmt.Sprint(st.PID)}, nil)
	var re *hosts.RunError
	if errors.As(err, &re) && re.Status == 1 {
		return true, nil
	}
	return false, err
}
