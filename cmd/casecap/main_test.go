package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/orchestrator"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"casecap"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsEveryCommand(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, cmd := range []string{"validate", "run", "start", "status", "stop", "collect", "targets", "points"} {
		if !strings.Contains(out, "\n   "+cmd+" ") {
			t.Errorf("--help does not list %q:\n%s", cmd, out)
		}
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"run"}, exitUsage},                     // missing PLAN
		{[]string{"run", "a.yaml", "b.yaml"}, exitUsage}, // too many
		{[]string{"run", "--no-such-flag", "a.yaml"}, exitUsage},
		{[]string{"bogus"}, exitUsage},
	}
	for _, c := range cases {
		if code, _, errOut := runCLI(t, c.args...); code != c.want {
			t.Errorf("casecap %v: exit %d, want %d (stderr %q)", c.args, code, c.want, errOut)
		}
	}
}

func TestValidate(t *testing.T) {
	code, out, errOut := runCLI(t, "validate", "../../examples/vm-to-vm-loss.yaml")
	if code != exitOK {
		t.Fatalf("validate a good plan: exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{"esxi01.app01.eth0.VnicTxRx.pcapng", "esxi02.db01.eth0.VnicTxRx.pcapng", "Case_12345678", "10m snap 256", "ip=192.0.2.10 -ssh"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = runCLI(t, "validate", "../../plans/testdata/bad/53-many-errors-at-once.yaml")
	if code != exitUsage || out != "" || strings.Count(errOut, "53-many-errors-at-once.yaml:") != 9 {
		t.Errorf("validate a bad plan: exit %d, stdout %q, stderr:\n%s\nwant exit 2, nothing on stdout, 9 problems", code, out, errOut)
	}
	code, out, _ = runCLI(t, "validate", "--json", "../../plans/testdata/bad/12-unknown-point.yaml")
	var res struct {
		Valid  bool `json:"valid"`
		Errors []struct {
			Line int    `json:"line"`
			Path string `json:"path"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitUsage || res.Valid || len(res.Errors) != 1 || res.Errors[0].Path != "hosts[0].captures[0].points[1]" {
		t.Errorf("validate --json of a bad plan: exit %d, %+v, %v", code, res, err)
	}
	code, out, _ = runCLI(t, "validate", "--json", "../../examples/linux-fleet.yaml")
	var good struct {
		Valid bool `json:"valid"`
		Plan  struct {
			Hosts []struct {
				Captures []struct {
					File string `json:"file"`
				} `json:"captures"`
			} `json:"hosts"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(out), &good); err != nil || code != exitOK || !good.Valid || good.Plan.Hosts[0].Captures[0].File != "lb01.eth0.RxTx.pcapng" {
		t.Errorf("validate --json of a good plan: exit %d, %+v, %v", code, good, err)
	}
	if code, _, _ := runCLI(t, "validate", "no-such-plan.yaml"); code != exitUsage {
		t.Errorf("validate a missing file: exit %d, want %d (bad input)", code, exitUsage)
	}
}

func TestPoints(t *testing.T) {
	code, out, _ := runCLI(t, "points", "--json")
	var pts []struct{ Name, Meaning string }
	if err := json.Unmarshal([]byte(out), &pts); err != nil || code != 0 || len(pts) < 30 {
		t.Fatalf("points --json: exit %d, %d points, %v", code, len(pts), err)
	}
	code, out, _ = runCLI(t, "points")
	if code != 0 || !strings.Contains(out, "EtherswitchDispath") || !strings.Contains(out, "UplinkRcvKernel") {
		t.Errorf("points: exit %d\n%s", code, out)
	}
}

// TestFlagsAfterThePlan: flags go before or after PLAN alike, with their
// values; "--" ends flags; a flag the command does not have is refused
// (exit 2) wherever it stands, never taken for a plan.
func TestFlagsAfterThePlan(t *testing.T) {
	const plan = "../../examples/vm-to-vm-loss.yaml"
	for _, args := range [][]string{
		{"validate", plan, "--json"},
		{"validate", "--json", plan},
		{"validate", plan, "--json=true"},
	} {
		code, out, errOut := runCLI(t, args...)
		var doc struct {
			Valid bool `json:"valid"`
		}
		if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || !doc.Valid {
			t.Errorf("casecap %v: exit %d, want the JSON document\n%s%s", args, code, out, errOut)
		}
	}
	app := newApp(nil, nil)
	for _, c := range []struct{ in, want []string }{
		{[]string{"casecap", "targets", "p.yaml", "--host", "esxi01", "--json"}, []string{"casecap", "targets", "--host", "esxi01", "--json", "p.yaml"}},
		{[]string{"casecap", "run", "p.yaml", "--out=/x", "--parallel", "8"}, []string{"casecap", "run", "--out=/x", "--parallel", "8", "p.yaml"}},
		{[]string{"casecap", "validate", "--", "-odd.yaml", "--json"}, []string{"casecap", "validate", "--", "-odd.yaml", "--json"}},
		{[]string{"casecap", "agent", "start", "--hold", "-"}, []string{"casecap", "agent", "start", "--hold", "-"}},
		// Global flags (and their values) stay ahead of the command.
		{[]string{"casecap", "--cpuprofile", "c.prof", "collect", "p.yaml", "--out", "/x"}, []string{"casecap", "--cpuprofile", "c.prof", "collect", "--out", "/x", "p.yaml"}},
		{[]string{"casecap", "--cpuprofile=c.prof", "collect", "p.yaml", "--json"}, []string{"casecap", "--cpuprofile=c.prof", "collect", "--json", "p.yaml"}},
	} {
		if got := flagsFirst(app, c.in); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("flagsFirst(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, args := range [][]string{{"validate", plan, "--no-such-flag"}, {"run", plan, "--no-such-flag"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("casecap %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// TestUnreadablePlan: a plan that does not exist, or is a directory, is
// bad input: exit 2, saying so, for every command that takes a plan.
func TestUnreadablePlan(t *testing.T) {
	for _, cmd := range []string{"validate", "run", "start", "status", "stop", "collect", "targets"} {
		for _, plan := range []string{"no-such-plan.yaml", t.TempDir()} {
			code, out, errOut := runCLI(t, cmd, plan)
			if code != exitUsage || !strings.Contains(out+errOut, "cannot read the plan") {
				t.Errorf("casecap %s %s: exit %d, want %d saying it cannot read the plan\n%s%s", cmd, plan, code, exitUsage, out, errOut)
			}
		}
	}
}

// TestREADMEFlags: the README's table of flags and the binary agree both
// ways: every flag of every command is in the table with that command,
// and every row names flags the commands it lists have.
func TestREADMEFlags(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (`--[^|]*) \\| [^|]* \\| ([^|]*) \\| [^|]* \\|$")
	flagName := regexp.MustCompile("`-{1,2}([a-z-]+)")
	documented := map[string]map[string]bool{} // flag -> commands
	for _, m := range row.FindAllStringSubmatch(string(raw), -1) {
		for _, f := range flagName.FindAllStringSubmatch(m[1], -1) {
			documented[f[1]] = map[string]bool{}
			for _, c := range strings.Split(m[2], ",") {
				documented[f[1]][strings.TrimSpace(c)] = true
			}
		}
	}
	if len(documented) < 8 {
		t.Fatalf("the README's flag table has %d flags: the test no longer reads it", len(documented))
	}
	app := newApp(nil, nil)
	actual := map[string]map[string]bool{}
	note := func(flag, cmd string) {
		if actual[flag] == nil {
			actual[flag] = map[string]bool{}
		}
		actual[flag][cmd] = true
	}
	for _, c := range app.Commands {
		if c.Hidden {
			continue
		}
		for _, f := range c.Flags {
			for _, name := range f.Names() {
				note(name, c.Name)
			}
		}
	}
	for flag, cmds := range actual {
		for cmd := range cmds {
			if !documented[flag][cmd] {
				t.Errorf("casecap %s --%s is not in the README's flag table for %s", cmd, flag, cmd)
			}
		}
	}
	for flag, cmds := range documented {
		for cmd := range cmds {
			switch {
			case flag == "version" && cmd == "casecap", flag == "help" || flag == "h":
				continue // the library's own
			case !actual[flag][cmd]:
				t.Errorf("the README's flag table gives %s --%s, which casecap does not have", cmd, flag)
			}
		}
	}
	// The commands table: every command, and only commands casecap has.
	cmdRow := regexp.MustCompile("(?m)^\\| `casecap ([a-z]+)[^`]*` \\|")
	listed := map[string]bool{}
	for _, m := range cmdRow.FindAllStringSubmatch(string(raw), -1) {
		listed[m[1]] = true
	}
	for _, c := range app.Commands {
		if !c.Hidden && !listed[c.Name] {
			t.Errorf("casecap %s is not in the README's table of commands", c.Name)
		}
	}
	for name := range listed {
		if c := app.Command(name); c == nil || c.Hidden {
			t.Errorf("the README's table of commands lists casecap %s, which casecap does not have", name)
		}
	}
	if code, out, _ := runCLI(t, "--version"); code != 0 || !strings.Contains(out, "casecap") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	if code, _, _ := runCLI(t, "-v"); code != exitUsage {
		t.Errorf("casecap -v: exit %d, want %d (-v is --verbose, a command's flag)", code, exitUsage)
	}
}

// TestSummaryClocks: the summary names the hosts whose clocks were
// corrected, with offset and uncertainty, and counts the others, taken as
// right; hosts whose clock was not measured are in neither.
func TestSummaryClocks(t *testing.T) {
	m := &orchestrator.Manifest{Hosts: []orchestrator.ManifestHost{
		{Name: "esxi01", ClockOffsetNs: 80 * time.Millisecond, ClockUncertaintyNs: 400 * time.Microsecond, ClockCorrected: true, RTTNs: 800 * time.Microsecond},
		{Name: "esxi02", ClockOffsetNs: 300 * time.Microsecond, ClockUncertaintyNs: 3 * time.Millisecond, RTTNs: 6 * time.Millisecond},
		{Name: "esxi03", Mode: orchestrator.ModeSSH},
	}}
	var b strings.Builder
	printSummary(&b, m)
	out := b.String()
	for _, want := range []string{"clocks corrected: esxi01 +80ms ± 400µs\n", "clocks taken as right (offset within its uncertainty): 1 of 3 hosts\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "esxi02") || strings.Contains(out, "esxi03") {
		t.Errorf("summary names hosts whose clocks were not corrected:\n%s", out)
	}
}

// TestTriggerPlans: plans with ring or until validate on ESXi and Linux
// hosts alike; casecap trigger refuses a plan with nothing to trigger,
// with exit 2 before touching any host (192.0.2.0/24 answers nothing).
func TestTriggerPlans(t *testing.T) {
	dir := t.TempDir()
	write := func(name, captures string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("case: RING\ndatastore: /ds\nduration: 5m\nring: { keep: 60s, segment: 10s }\nhosts:\n  - { name: h, address: 192.0.2.1, captures: [ "+captures+" ] }\n"), 0o600)
		return p
	}
	for _, plan := range []string{write("esxi.yaml", "{ uplink: vmnic2 }"), write("linux.yaml", "{ interface: eth0 }")} {
		if code, _, errOut := runCLI(t, "validate", plan); code != exitOK {
			t.Errorf("validate %s: exit %d: %s", plan, code, errOut)
		}
	}
	plain := filepath.Join(dir, "plain.yaml")
	os.WriteFile(plain, []byte("case: P\ndatastore: /ds\nduration: 5m\nhosts:\n  - { name: h, address: 192.0.2.1, captures: [ { interface: eth0 } ] }\n"), 0o600)
	if code, _, errOut := runCLI(t, "trigger", plain); code != exitUsage || !strings.Contains(errOut, "nothing to trigger") {
		t.Errorf("trigger of a plan without rules: exit %d: %s", code, errOut)
	}
}
