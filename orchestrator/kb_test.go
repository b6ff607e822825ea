package orchestrator

import (
	"flag"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./orchestrator -run %s -update creates it)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", file, diff)
	}
}

// kbHost resolves the KB plan's host against a real net-stats -l sample,
// its team uplinks answered as vsish would.
func kbHost(t *testing.T) (*plans.Plan, *hostRun) {
	t.Helper()
	p, err := plans.Load("testdata/kb/plan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/kb/net-stats-l.txt")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := esxi.ParseNetStats(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	v, err := esxi.ParseVersion("VMware ESXi 8.0.2 build-22380479")
	if err != nil {
		t.Fatal(err)
	}
	d := &esxiAgent{}
	h := &hostRun{plan: p.Hosts[0], drv: d, facts: hostFacts{kind: plans.KindESXi, esxi: &v}}
	inv := &esxi.Inventory{Host: h.name(), Version: v, Ports: ports}
	h.facts.captures, d.sessions, err = resolveESXi(p.File, inv, h.plan.Captures, func(p esxi.Port) (string, error) { return "vmnic0", nil })
	if err != nil {
		t.Fatal(err)
	}
	return p, h
}

// TestKBCommands: the pktcap-uw command lines casecap builds for the seed
// KB article's runbook are the article's own (casecap adds --ng, the file
// names of docs/design.md section 4, and the uplink that `uplink: auto` finds).
func TestKBCommands(t *testing.T) {
	p, h := kbHost(t)
	var lines []string
	for _, c := range h.facts.captures {
		argv, note, err := esxi.Argv(h.drv.(*esxiAgent).sessions[c.File], path.Join(h.caseDir(p), c.File), *h.facts.esxi)
		if err != nil || note != "" {
			t.Fatalf("%s: %v %q", c.File, err, note)
		}
		lines = append(lines, strings.Join(argv, " "))
	}
	golden(t, "kb/pktcap-uw.golden", strings.Join(lines, "\n")+"\n")
}

// TestKBShellJob: in ssh mode the same two captures (and the auto uplink)
// are one job for the script, started together by its one "run": every
// value quoted for the shell, casecap's own SSH session left out of the
// unfiltered uplink capture.
func TestKBShellJob(t *testing.T) {
	_, h := kbHost(t)
	h.drv, h.facts.sshConn = fallbackDriver(h.drv), "198.51.100.7 50022 192.0.2.50 22"
	o := &Orchestrator{opt: Options{Plan: mustPlan(t, "testdata/kb/plan.yaml")}}
	job, err := h.drv.(*esxiSSH).shellJob(o, h)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kb/job.sh.golden", job)
}

func mustPlan(t *testing.T, file string) *plans.Plan {
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestREADMECommandLines: the pktcap-uw command lines the README shows are
// the ones casecap builds for the README's own example plan (its esxi01,
// resolved against the KB's net-stats sample, ESXi 8.0.2).
func TestREADMECommandLines(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i := strings.Index(text, "## Writing a plan")
	j := strings.Index(text[i:], "```yaml\n")
	if i < 0 || j < 0 {
		t.Fatal("the README has no example plan")
	}
	block := text[i+j+len("```yaml\n"):]
	block = block[:strings.Index(block, "\n```")]
	p, err := plans.Parse("README.md", []byte(block))
	if err != nil {
		t.Fatalf("the README's example plan: %v", err)
	}
	nets, err := os.ReadFile("testdata/kb/net-stats-l.txt")
	if err != nil {
		t.Fatal(err)
	}
	ports, err := esxi.ParseNetStats(string(nets))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := esxi.ParseVersion("VMware ESXi 8.0.2 build-22380479")
	d := &esxiAgent{}
	h := &hostRun{plan: p.Hosts[0], drv: d, facts: hostFacts{kind: plans.KindESXi, esxi: &v}}
	inv := &esxi.Inventory{Host: h.name(), Version: v, Ports: ports}
	h.facts.captures, d.sessions, err = resolveESXi(p.File, inv, h.plan.Captures, func(esxi.Port) (string, error) { return "vmnic0", nil })
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range h.facts.captures {
		argv, _, err := esxi.Argv(d.sessions[c.File], path.Join(h.caseDir(p), c.File), *h.facts.esxi)
		if err != nil {
			t.Fatalf("%s: %v", c.File, err)
		}
		want = append(want, strings.Join(argv, " "))
	}
	var shown []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "pktcap-uw --") {
			shown = append(shown, line)
		}
	}
	if diff := cmp.Diff(want, shown); diff != "" {
		t.Errorf("the README's pktcap-uw lines are not casecap's for its example plan (-casecap's +README's):\n%s", diff)
	}
}
