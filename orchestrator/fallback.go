package orchestrator

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans/filter/bpfgen"
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

// State files of ssh mode, beside the agent's.
const (
	superviseFile = "supervise.sh"
	shellJobFile  = "job.sh"
	stopNowFile   = "stop" // its presence stops every capture
)

// shellJob is job.sh: the host's captures as shell variables and one
// function per capture that runs its pktcap-uw, every value quoted for the
// shell by hosts.Quote.
func (o *Orchestrator) shellJob(h *hostRun) (string, error) {
	p := o.opt.Plan
	own, haveOwn := bpfgen.ParseSSHConnection(h.sshConn)
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
		q(strings.Trim(string(caseJ), `"`)), q(strings.Trim(string(hostJ), `"`)), len(h.captures), q(h.caseDir(p)), int(sshGrace.Seconds()))
	for i, c := range h.captures {
		n := i + 1
		pc, ok := h.pktcaps[c.File]
		if !ok {
			return "", fmt.Errorf("%s: no pktcap-uw session", c.File)
		}
		pc.Count = c.MaxPackets
		if c.ExcludeOwnSSH && haveOwn {
			pc.Exclude = append(slices.Clone(pc.Exclude), own)
		}
		file := path.Join(h.caseDir(p), c.File)
		argv, note, err := esxi.Argv(pc, file, *h.esxi)
		if err != nil {
			return "", fmt.Errorf("%s: %w", c.File, err)
		}
		if c.ExcludeOwnSSH && !haveOwn && strings.TrimSpace(h.sshConn) != "" {
			note = strings.TrimPrefix(note+"; casecap's own SSH session could not be left out (SSH_CONNECTION "+strconv.Quote(h.sshConn)+" unreadable): its packets may appear", "; ")
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

// armSSH arms a host in ssh mode: the script, the job and casecap's record
// go on the datastore by SFTP, and the script's hold session checks
// everything, then waits for the begin as the agent's does.
func (o *Orchestrator) armSSH(ctx context.Context, h *hostRun, record []byte) error {
	state := h.stateDir(o.opt.Plan)
	job, err := o.shellJob(h)
	if err != nil {
		return err
	}
	if err := h.conn.MkdirAll(state, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", state, err)
	}
	// The job and the record go in as .new: the script puts them in place
	// once its checks pass (a refused start leaves a running one's alone).
	for name, data := range map[string]string{superviseFile: superviseScript, shellJobFile + ".new": job, RecordFile + ".new": string(record)} {
		if err := h.conn.WriteFile(path.Join(state, name), strings.NewReader(data), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	began := time.Now()
	hs, err := startHeld(ctx, h.conn, []string{"sh", path.Join(state, superviseFile), "hold", state})
	if err != nil {
		return err
	}
	h.armed = true // an aborted start stops what may run there from here on
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
	h.execLat = time.Since(began)
	return h.hold(hs)
}

// requestStopSSH stops every capture of an ssh-mode host now: the script
// looks for the stop file several times a second.
func (o *Orchestrator) requestStopSSH(h *hostRun) error {
	return h.conn.WriteFile(path.Join(h.stateDir(o.opt.Plan), stopNowFile), strings.NewReader("casecap\n"), 0o600)
}

// sshAlive says whether an ssh-mode host's script still runs: kill -0
// fails with status 1 for a process that is gone; anything else (no
// answer) is not known.
func (o *Orchestrator) sshAlive(ctx context.Context, h *hostRun, st *agentproto.Status) (bool, error) {
	if st.PID <= 0 {
		return false, nil
	}
	_, err := h.conn.Run(ctx, []string{"kill", "-0", fmt.Sprint(st.PID)}, nil)
	var re *hosts.RunError
	if errors.As(err, &re) && re.Status == 1 {
		return false, nil
	}
	return err == nil, err
}
