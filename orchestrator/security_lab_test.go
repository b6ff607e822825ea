//go:build linux

package orchestrator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/esxisim"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// canaries lists the regular files named CANARY... (or C, for fields too
// short for more) under the given roots: each is an injected command that
// ran.
func canaries(roots ...string) []string {
	var found []string
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && (strings.HasPrefix(d.Name(), "CANARY") || d.Name() == "C") {
				found = append(found, p)
			}
			return nil
		})
	}
	return found
}

// hostCanaries lists the canary files in a host's own private
// directories (its /tmp, /run and root's home), where an injected command
// with a relative path would leave one.
func hostCanaries(t *testing.T, h *lab.Host) []string {
	t.Helper()
	out, err := h.Command(context.Background(), "find", "/tmp", "/run", "/root", "-xdev", "-type", "f", "(", "-name", "CANARY*", "-o", "-name", "C", ")").Output()
	if err != nil {
		t.Errorf("%s: find canaries: %v", h.Name, err)
	}
	return strings.Fields(string(out))
}

// TestShellMetacharactersAreInert: every plan field that reaches a host and
// takes free text (the datastore path, a filter's raw expr, an interface
// name) holds `;`, `$(...)`, backticks and both quotes, each trying to
// create a CANARY file. They reach the hosts as data: through the
// preflight probe, mkdir, SFTP, the agent's job, tcpdump's argv, and on an
// ESXi host in ssh mode the shell job and the script; through start,
// status, stop and collect, each its own command, on a Linux host and an
// ESXi host that capture from the payload datastore. No canary appears,
// here or in any host's own /tmp, /run or /root; the captures that can
// run, run and are collected. Newlines are refused by the plan itself.
func TestShellMetacharactersAreInert(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 4, ESXi: 1, ESXiNoExec: true})
	esx, lin, odd, good := l.Hosts[0], l.Hosts[1], l.Hosts[2], l.Hosts[3]
	labtest.Stream(t, l, 38, time.Millisecond)
	payload := func(tag string) string {
		c := filepath.Join(l.Datastore, "CANARY-"+tag)
		return fmt.Sprintf(`x';touch %s1;'"$(touch %s2)"`+"`touch %s3`"+`;touch %s4 #`, c, c, c, c)
	}
	dsLinux := filepath.Join(l.Datastore, "ds "+payload("ds"))
	dsESXi := filepath.Join(lab.ESXiDatastore, "esx "+payload("esx"))
	// An ESXi datastore exists before casecap comes (it never creates one).
	if err := os.MkdirAll(filepath.Join(l.Datastore, strings.TrimPrefix(dsESXi, lab.ESXiDatastore)), 0o755); err != nil {
		t.Fatal(err)
	}
	expr := "udp port 9999 and " + payload("expr")
	const oddIface = "`touch${IFS}C`" // an interface name is at most 15 characters
	plan := fmt.Sprintf(`case: INERT
duration: 1m
ssh: { user: root, identity_file: %q, known_hosts: %q }
hosts:
  - name: %s
    kind: esxi
    address: %s
    datastore: %q
    captures:
      - switchport: %d
        filter: { udpport: 9999 }
  - name: %s
    kind: linux
    address: %s
    datastore: %q
    captures:
      - interface: eth0
        filter: { expr: %q }
  - name: %s
    kind: linux
    address: %s
    datastore: %q
    captures:
      - interface: %q
  - name: %s
    kind: linux
    address: %s
    datastore: %q
    captures:
      - interface: eth0
        filter: { udpport: 9999 }
`, l.ClientKey, l.KnownHosts, esx.Name, esx.Addr, dsESXi, esx.VMs[0].Switchport, lin.Name, lin.Addr, dsLinux, expr, odd.Name, odd.Addr, dsLinux, oddIface,
		good.Name, good.Addr, dsLinux)
	file := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(file, []byte(plan), 0o600)
	p, err := plans.Load(file)
	if err != nil {
		t.Fatalf("the plan: %v", err)
	}
	if p.Hosts[0].Datastore != dsESXi || p.Hosts[1].Captures[0].Filter.Expr != expr {
		t.Fatalf("the plan did not keep the payloads as they are: %q %q", p.Hosts[0].Datastore, p.Hosts[1].Captures[0].Filter.Expr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	out := t.TempDir()
	orch := func() *orchestrator.Orchestrator {
		return orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", AllowPartial: true})
	}
	started, err := orch().Start(context.Background())
	if err == nil {
		t.Error("start: no error, though two hosts cannot capture what they were given")
	}
	if m, _ := orch().Status(context.Background()); len(m.Captures) != 4 {
		t.Errorf("status: %d captures", len(m.Captures))
	}
	time.Sleep(time.Second)
	if _, err := orch().Stop(context.Background()); err == nil {
		t.Error("stop: no error, though two hosts never started")
	}
	m, err := orch().Collect(context.Background())
	if err == nil {
		t.Error("collect: no error, though two hosts never started")
	}
	if found := canaries(l.Datastore, "/root", out, "/tmp"); len(found) > 0 {
		t.Fatalf("injected commands ran: %v", found)
	}
	for _, h := range l.Hosts {
		if found := hostCanaries(t, h); len(found) > 0 {
			t.Errorf("injected commands ran on %s: %v", h.Name, found)
		}
	}
	// What could run, ran, with the payload datastore as its home.
	for _, h := range started.Hosts {
		switch h.Name {
		case esx.Name:
			if h.Error != "" || h.Mode != "ssh" {
				t.Errorf("%s: %q (mode %s), want a clean ssh-mode run", h.Name, h.Error, h.Mode)
			}
		case lin.Name:
			if h.Phase != "arm" || !strings.Contains(h.Error, "tcpdump") {
				t.Errorf("%s: failed %q: %s; want tcpdump refusing the expr at arm", h.Name, h.Phase, h.Error)
			}
		case odd.Name:
			if h.Phase != "check" || !strings.Contains(h.Error, fmt.Sprintf("no interface %q", oddIface)) {
				t.Errorf("%s: failed %q: %s; want the interface named as it is", h.Name, h.Phase, h.Error)
			}
		case good.Name:
			if h.Error != "" {
				t.Errorf("%s: %q, want a clean start", h.Name, h.Error)
			}
		}
	}
	for _, c := range m.Captures {
		if (c.Host == esx.Name || c.Host == good.Name) && (!c.Collected || !c.Verified || c.Packets == 0 || c.StopReason != "stop-request") {
			t.Errorf("%s: collected %v, verified %v, %d packets, stopped by %q; want it whole, stopped by the stop", c.File, c.Collected, c.Verified, c.Packets, c.StopReason)
		}
	}
	if _, err := os.Stat(filepath.Join(dsLinux, "Case_INERT", good.Name+".eth0.RxTx.pcapng")); err != nil {
		t.Errorf("the Linux host's capture is not under the datastore as written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Datastore, strings.TrimPrefix(dsESXi, lab.ESXiDatastore), "Case_INERT")); err != nil {
		t.Errorf("the ESXi host's case folder is not under the datastore as written: %v", err)
	}

	// A newline never gets that far: the plan refuses it.
	for _, bad := range []string{
		"case: NL\ndatastore: \"/srv/ds\\n;touch /CANARY\"\nhosts: [ { name: h, kind: linux, address: 198.18.0.99, captures: [ { interface: eth0 } ] } ]\n",
		"case: NL\ndatastore: /srv/ds\nhosts: [ { name: h, kind: linux, address: 198.18.0.99, captures: [ { interface: eth0, filter: { expr: \"udp\\n;touch /CANARY\" } } ] } ]\n",
		"case: NL\ndatastore: /srv/ds\nhosts: [ { name: h, kind: esxi, address: 198.18.0.99, captures: [ { vm: \"a\\nb\" } ] } ]\n",
	} {
		if _, err := plans.Parse("nl.yaml", []byte(bad)); err == nil {
			t.Errorf("a newline was accepted:\n%s", bad)
		}
	}
}

// TestHostileNames: names that come from hosts never place a file outside
// the case folder. A status.json listing a file with "../" in it is
// ignored; a run record naming captures casecap would not is refused; a
// VM whose name climbs directories is captured under a file-safe name; a
// team uplink that is a path is refused. Nothing appears outside the case
// folder.
func TestHostileNames(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 2, ESXi: 1})
	esx, lin := l.Hosts[0], l.Hosts[1]
	top := t.TempDir()
	out := filepath.Join(top, "out")
	outside := func() []string {
		var found []string
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasPrefix(p, filepath.Join(out, "Case_")) {
				found = append(found, p)
			}
			return nil
		})
		for _, p := range []string{"/tmp/casecap-evil.pcapng", "/tmp/evil.pcapng"} {
			if _, err := os.Stat(p); err == nil {
				found = append(found, p)
			}
		}
		return found
	}

	// A Linux host's state, rewritten by a hostile host after its run.
	p := withConnectTimeout(t, labPlan(t, &lab.Lab{Datastore: l.Datastore, ClientKey: l.ClientKey, KnownHosts: l.KnownHosts, Hosts: []*lab.Host{lin}}, "HOSTILE", time.Second, "      - interface: eth0\n"), 5*time.Second)
	if _, err := newOrch(t, p, out).Run(context.Background()); err != nil {
		t.Fatalf("run: %v", err)
	}
	state := filepath.Join(l.Datastore, ".casecap", "cases", "HOSTILE", lin.Name)
	statusRaw, _ := os.ReadFile(filepath.Join(state, "status.json"))
	evil := `{"name":"evil","file":"/x/../../../../tmp/casecap-evil.pcapng","state":"stopped","size":4,"sha256":"88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"}`
	os.WriteFile(filepath.Join(l.Datastore, "evil.pcapng"), []byte("abcd"), 0o644)
	tampered := strings.Replace(string(statusRaw), `"captures": [`, `"captures": [`+evil+",", 1)
	if tampered == string(statusRaw) {
		t.Fatalf("status.json has no captures list: %s", statusRaw)
	}
	os.WriteFile(filepath.Join(state, "status.json"), []byte(tampered), 0o640)
	os.RemoveAll(out)
	_, err := newOrch(t, p, out).Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not in the plan; ignored") {
		t.Errorf("collect with a hostile status: %v, want the stranger ignored", err)
	}
	if f := outside(); len(f) > 0 {
		t.Errorf("files outside the case folder: %v", f)
	}
	recordRaw, _ := os.ReadFile(filepath.Join(state, "run.json"))
	hostileRecord := strings.Replace(string(recordRaw), `"file":"`+lin.Name+`.eth0.RxTx.pcapng"`, `"file":"../../evil.pcapng"`, 1)
	if hostileRecord == string(recordRaw) {
		t.Fatalf("run.json names no capture file: %s", recordRaw)
	}
	os.WriteFile(filepath.Join(state, "run.json"), []byte(hostileRecord), 0o640)
	if _, err := newOrch(t, p, out).Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "casecap would not") {
		t.Errorf("collect with a hostile record: %v, want a refusal", err)
	}
	if f := outside(); len(f) > 0 {
		t.Errorf("files outside the case folder: %v", f)
	}

	// An ESXi host whose VM names and uplinks are paths.
	invFile := filepath.Join(esx.Dir, "bin", ".esxi.json")
	raw, err := os.ReadFile(invFile)
	if err != nil {
		t.Fatal(err)
	}
	var inv esxisim.Inventory
	if err := json.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}
	const hostileVM = "../../../../tmp/evil"
	for i := range inv.Ports {
		switch inv.Ports[i].Num {
		case esx.VMs[0].Switchport:
			inv.Ports[i].Client = hostileVM + ".eth0"
		case esx.VMs[1].Switchport:
			inv.Ports[i].TeamUplink = "../../../tmp/x"
		}
	}
	if err := esxisim.WriteInventory(invFile, &inv); err != nil {
		t.Fatal(err)
	}
	esxPlan := func(caseID, captures string) *plans.Plan {
		text := fmt.Sprintf("case: %s\ndatastore: %s\nduration: 1s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n  - name: %s\n    kind: esxi\n    address: %s\n    captures:\n%s",
			caseID, lab.ESXiDatastore, l.ClientKey, l.KnownHosts, esx.Name, esx.Addr, captures)
		p, err := plans.Parse("hostile.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := newOrch(t, esxPlan("HOSTILE-VM", fmt.Sprintf("      - vm: %q\n", hostileVM)), out).Run(context.Background())
	if err != nil {
		t.Fatalf("run on the VM named %q: %v", hostileVM, err)
	}
	if c := m.Captures[0]; c.File != esx.Name+".tmp_evil.eth0.VnicTxRx.pcapng" || !c.Collected {
		t.Errorf("the VM named %q: file %q, collected %v", hostileVM, c.File, c.Collected)
	}
	_, err = newOrch(t, esxPlan("HOSTILE-UPLINK", fmt.Sprintf("      - vm: %q\n        uplink: auto\n", esx.VMs[1].Name)), out).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no active uplink") {
		t.Errorf("a team uplink that is a path: %v, want it refused", err)
	}
	if f := outside(); len(f) > 0 {
		t.Errorf("files outside the case folder: %v", f)
	}
}

// TestAgentVerifiedByHash: a file at the agent's path that is not the
// agent (here, a script that would leave a CANARY) never runs: on a shared
// datastore the first host checks the sha256 and uploads the real one; on
// storage of a host's own, check verifies the sha256 before it executes
// anything and uploads again on a mismatch. The agent and casecap's state
// are private (0700/0600), capture files and case folders are not world
// readable (0640/0750), here and on the hosts.
func TestAgentVerifiedByHash(t *testing.T) {
	labtest.Require(t)
	l := labtest.Start(t, 2)
	bin := agentBinary(t)
	blob, err := bin("amd64")
	if err != nil {
		t.Fatal(err)
	}
	sumOf := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	agentName := fmt.Sprintf("casecap-agent-%s-linux-%s", sumOf(blob)[:16], goarch())
	canary := filepath.Join(l.Datastore, "CANARY-agent")
	impostor := []byte("#!/bin/sh\ntouch " + canary + "\n")
	// Same size as the agent, so that nothing but its hash gives it away.
	impostor = append(impostor, make([]byte, len(blob)-len(impostor))...)

	// Shared datastore: the impostor sits where the agent would be.
	shared := filepath.Join(l.Datastore, ".casecap", "agent")
	os.MkdirAll(shared, 0o700)
	os.WriteFile(filepath.Join(shared, agentName), impostor, 0o700)
	p := labPlan(t, l, "HASH1", time.Second, "      - interface: eth0\n")
	out := t.TempDir()
	if _, err := newOrch(t, p, out).Run(context.Background()); err != nil {
		t.Fatalf("run over an impostor on the shared datastore: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(shared, agentName)); sumOf(got) != sumOf(blob) {
		t.Error("the impostor is still at the agent's path")
	}

	// A datastore of each host's own (a tmpfs at the same path in each):
	// the second host's copy is an impostor, found by check.
	for _, h := range l.Hosts {
		if out, err := h.Command(context.Background(), "sh", "-c", "mkdir -p /srv/own && mount -t tmpfs -o size=96m casecap-own /srv/own").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", h.Name, err, out)
		}
		t.Cleanup(func() { h.Command(context.Background(), "umount", "/srv/own").Run() })
	}
	write := l.Hosts[1].Command(context.Background(), "sh", "-c", "mkdir -p -m 700 /srv/own/.casecap/agent && cat > /srv/own/.casecap/agent/"+agentName+" && chmod 700 /srv/own/.casecap/agent/"+agentName)
	write.Stdin = strings.NewReader(string(impostor))
	if out, err := write.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, h := range p.Hosts {
		h.Datastore = "/srv/own"
	}
	p.Case = "HASH2"
	m, err := newOrch(t, p, out).Run(context.Background())
	if err != nil {
		t.Fatalf("run over an impostor on a host's own datastore: %v", err)
	}
	if found := canaries(l.Datastore, "/root", "/tmp"); len(found) > 0 {
		t.Fatalf("the impostor ran: %v", found)
	}
	for _, h := range l.Hosts {
		got, _ := h.Command(context.Background(), "sha256sum", "/srv/own/.casecap/agent/"+agentName).Output()
		if !strings.HasPrefix(string(got), sumOf(blob)) {
			t.Errorf("%s: the agent on its own datastore is %s", h.Name, got)
		}
	}

	// Modes: remote (on the shared datastore, from run 1) and local.
	mode := func(p string) os.FileMode {
		st, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			return 0
		}
		return st.Mode().Perm()
	}
	h := l.Hosts[0]
	for p, want := range map[string]os.FileMode{
		shared:                           0o700,
		filepath.Join(shared, agentName): 0o700,
		filepath.Join(l.Datastore, ".casecap", "cases", "HASH1", h.Name):             0o700,
		filepath.Join(l.Datastore, ".casecap", "cases", "HASH1", h.Name, "job.json"): 0o600,
		filepath.Join(l.Datastore, "Case_HASH1"):                                     0o750,
		filepath.Join(l.Datastore, "Case_HASH1", h.Name+".eth0.RxTx.pcapng"):         0o640,
		filepath.Join(out, "Case_HASH2"):                                             0o750,
		filepath.Join(out, "Case_HASH2", "manifest.json"):                            0o640,
		filepath.Join(out, "Case_HASH2", m.Captures[0].File):                         0o640,
	} {
		if got := mode(p); got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
}

func goarch() string { return runtime.GOARCH }
