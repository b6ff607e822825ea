package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
)

// probeScript learns what preflight needs in one round trip: the system,
// the datastore and its free space; the SHA-256 of the agent this casecap
// would deploy there, if a file of its name is there ($3 and $4: its path
// for amd64 and arm64), so that deploy costs no session when it is; on
// ESXi, also what inventory needs (the ports, from net-stats -l, and how
// the host sees casecap's session), so that it costs no session of its
// own. Its arguments come as positional parameters ($1 the datastore, $2
// "create" to make it if missing): nothing from the plan is ever part of
// the script's text. Each program it starts is a process on a host that
// may be a busy hypervisor, so it starts few: uname and df (and on ESXi
// vmware and net-stats; on the first host of a datastore sha256sum); the
// rest are shell builtins, and Go splits the output.
const probeScript = `ds=$1
u=$(uname -s -r -m); echo "$u"
if [ ! -d "$ds" ] && [ "$2" = create ]; then mkdir -p "$ds" && chmod 750 "$ds"; fi
if [ -d "$ds" ] && [ -w "$ds" ]; then echo yes; else echo no; fi
df -Pk "$ds" 2>/dev/null
echo ` + dfEndMark + `
case $u in *" x86_64"|*" amd64") a=$3 ;; *" aarch64"|*" arm64") a=$4 ;; *) a= ;; esac
if [ -n "$a" ] && [ -f "$a" ]; then printf '` + agentSumMark + `'; sha256sum "$a" 2>/dev/null || echo; fi
case $u in VMkernel*)
	vmware -v 2>/dev/null || echo
	inv=$(net-stats -l 2>&1); rc=$?
	echo "` + inventoryMark + `$rc"
	printf '%s\n' "$inv"
	echo "casecap-ssh-connection $SSH_CONNECTION" ;;
esac`

// dfEndMark ends df's output in the probe's answer.
const dfEndMark = "casecap-df-end"

// agentSumMark begins the line with the SHA-256 of the agent found.
const agentSumMark = "casecap-agent-sha256 "

// inventoryMark begins the inventory part of the probe's answer, with
// net-stats' exit status.
const inventoryMark = "casecap-inventory "

// reserve is free space kept on a datastore beyond the plan's min_free.
const reserve = 64 << 20

func goArch(machine string) (string, bool) {
	switch machine {
	case "x86_64", "amd64":
		return "amd64", true
	case "aarch64", "arm64":
		return "arm64", true
	}
	return "", false
}

// preflightHost learns what the host is, in one shell command: its system
// (and so its kind, and its driver), architecture, clock to the second,
// and whether the datastore exists, is writable and has room.
func (o *Orchestrator) preflightHost(ctx context.Context, h *hostRun) error {
	create := "check"
	if h.plan.Kind != plans.KindESXi {
		// On Linux a datastore is just a directory: make it. On ESXi it
		// must be a real datastore that exists.
		create = "create"
	}
	// Only the plan's first host on a datastore hashes an agent found
	// there (deploy's first host, whose verdict the hosts that share the
	// datastore take): fifty hosts hashing one file took 0.7 s on 2 cores.
	var amd64, arm64 string
	if o.firstOn(h.plan.Datastore) == h {
		amd64, arm64 = o.agentPathFor(h.plan.Datastore, "amd64"), o.agentPathFor(h.plan.Datastore, "arm64")
	}
	out, err := h.conn.Run(ctx, []string{"sh", "-c", probeScript, "probe", h.plan.Datastore, create, amd64, arm64}, nil)
	if err != nil {
		return err
	}
	pr, err := parseProbe(string(out))
	if err != nil {
		return err
	}
	h.facts.inventory, h.facts.agentFound = pr.inventory, pr.agentSum
	sys, release, machine := pr.sys, pr.release, pr.machine
	switch sys {
	case "VMkernel":
		h.facts.kind = plans.KindESXi
	case "Linux":
		if h.facts.kind == plans.KindAuto {
			h.facts.kind = plans.KindLinux
		}
	default:
		return fmt.Errorf("%s is neither Linux nor ESXi; casecap captures on those", sys)
	}
	if h.plan.Kind == plans.KindLinux && sys != "Linux" || h.plan.Kind == plans.KindESXi && sys != "VMkernel" {
		return fmt.Errorf("the plan says kind %s, but the host runs %s", h.plan.Kind, sys)
	}
	h.facts.os = sys + " " + release
	if strings.HasPrefix(pr.vmware, "VMware ESXi") {
		h.facts.os = pr.vmware
	}
	if h.facts.kind == plans.KindESXi {
		v, err := esxi.ParseVersion(h.facts.os)
		if err != nil {
			return err
		}
		h.facts.esxi = &v
	}
	if err := targetsFit(o.opt.Plan.File, h); err != nil {
		return err
	}
	// A new run starts in agent mode; check falls back to ssh mode
	// where the host refuses the agent.
	if h.drv, err = chooseDriver(h.facts.kind, ModeAgent); err != nil {
		return err
	}
	if h.facts.kind == plans.KindLocal {
		if h.facts.agent, err = o.localAgent(); err != nil {
			return err
		}
		h.facts.verified = true // casecap is its own agent here
	}
	var ok bool
	if h.facts.arch, ok = goArch(machine); !ok {
		return fmt.Errorf("unsupported architecture %s (the agent exists for x86_64 and aarch64)", machine)
	}
	if !pr.writable {
		return fmt.Errorf("datastore %s does not exist or is not writable", h.plan.Datastore)
	}
	df := strings.Fields(pr.df)
	if len(df) < 4 {
		return fmt.Errorf("cannot read the free space of %s: %q", h.plan.Datastore, pr.df)
	}
	if h.facts.freeKB, err = strconv.ParseUint(df[3], 10, 64); err != nil {
		return fmt.Errorf("cannot read the free space of %s: %q", h.plan.Datastore, pr.df)
	}
	need := uint64(reserve)
	for _, c := range h.facts.captures {
		need = max(need, c.MinFree+reserve)
	}
	if free := h.facts.freeKB << 10; free < need {
		return fmt.Errorf("only %s free on %s; the plan keeps %s free (min_free + %s)", humanize.IBytes(free), h.plan.Datastore, humanize.IBytes(need), humanize.IBytes(reserve))
	}
	o.disp.HostPhase(h.name(), "preflight ok: "+h.facts.os+" "+machine)
	return nil
}

// probeAnswer is the probe's answer, split.
type probeAnswer struct {
	sys, release, machine string // uname -s -r -m
	writable              bool   // the datastore exists and is writable
	df                    string // df -Pk's last line
	agentSum              string // the agent found there ("" if none)
	vmware                string // vmware -v (ESXi)
	inventory             string // from net-stats' exit status on (ESXi)
}

// parseProbe splits probeScript's answer.
func parseProbe(out string) (probeAnswer, error) {
	var pr probeAnswer
	bad := fmt.Errorf("unexpected answer to the probe: %q", out)
	text, inventory, _ := strings.Cut(out, "\n"+inventoryMark)
	pr.inventory = inventory
	head, tail, ok := strings.Cut(text, "\n"+dfEndMark+"\n")
	if !ok {
		head, ok = strings.CutSuffix(text, "\n"+dfEndMark)
	}
	lines := strings.Split(head, "\n")
	if !ok || len(lines) < 2 {
		return pr, bad
	}
	u := strings.Fields(lines[0])
	if len(u) != 3 {
		return pr, bad
	}
	pr.sys, pr.release, pr.machine = u[0], u[1], u[2]
	pr.writable = lines[1] == "yes"
	for _, l := range lines[2:] {
		if strings.TrimSpace(l) != "" {
			pr.df = l // df's header, then its line
		}
	}
	for _, l := range strings.Split(tail, "\n") {
		switch {
		case strings.HasPrefix(l, agentSumMark):
			sum, _, _ := strings.Cut(strings.TrimPrefix(l, agentSumMark), " ")
			pr.agentSum = sum
		case strings.HasPrefix(l, "VMware "):
			pr.vmware = l
		}
	}
	return pr, nil
}

// targetsFit checks a host's captures against what the host turned out to
// be (a plan that leaves kind to auto finds out here): switchports,
// uplinks, vmks and VMs exist only on ESXi, interfaces only on Linux.
func targetsFit(planFile string, h *hostRun) error {
	var errs []error
	for _, c := range h.facts.captures {
		if h.facts.kind.Captures(c.Target.Kind) {
			continue
		}
		switch h.facts.kind {
		case plans.KindLinux, plans.KindLocal:
			what := string(c.Target.Kind) + " capture"
			if c.Target.Kind == plans.TargetNone {
				what = "standalone point (" + strings.Join(c.Points, ",") + ")"
			}
			errs = append(errs, fmt.Errorf("%s (%s:%d %s): a %s is for ESXi hosts, and this one runs %s; capture an interface (casecap targets PLAN lists them)", c.File, planFile, c.Line, c.Path, what, h.facts.os))
		default:
			errs = append(errs, fmt.Errorf("%s (%s:%d %s): an interface capture is for Linux hosts, and this one runs %s; capture a VM, switchport, uplink or vmk (casecap targets PLAN lists them)", c.File, planFile, c.Line, c.Path, h.facts.os))
		}
	}
	return errors.Join(errs...)
}

// localAgent is the argv that runs the agent on the local host: casecap
// itself (Options.LocalAgent in tests).
func (o *Orchestrator) localAgent() (agentproto.Argv, error) {
	if o.opt.LocalAgent != nil {
		return o.opt.LocalAgent, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("casecap is the local host's agent, and cannot find its own executable: %w", err)
	}
	return agentproto.Argv{exe, "agent"}, nil
}

// firstOn is the plan's first host on a datastore path.
func (o *Orchestrator) firstOn(ds string) *hostRun {
	for _, h := range o.hosts {
		if h.plan.Datastore == ds {
			return h
		}
	}
	return nil
}
