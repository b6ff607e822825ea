//go:build linux

package orchestrator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// esxiPlan is a plan for the lab's ESXi hosts: on each, its first VM by
// name with `uplink: auto`, and its second VM's switchport by number.
func esxiPlan(t *testing.T, l *lab.Lab, caseID string, duration time.Duration) *plans.Plan {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n",
		caseID, lab.ESXiDatastore, duration, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, `  - name: %s
    kind: esxi
    address: %s
    captures:
      - vm: %s
        vnic: eth0
        points: [VnicTx, VnicRx]
        filter: { udpport: 9999 }
        uplink: auto
      - switchport: %d
        points: [VnicTx, VnicRx]
`, h.Name, h.Addr, h.VMs[0].Name, h.VMs[1].Switchport)
	}
	file := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// vmTraffic sends numbered UDP datagrams (port 9999) from the gateway to
// every VM of every ESXi host until ctx ends: traffic that crosses each
// host's uplink vmnic0 and each VM's switchport.
func vmTraffic(ctx context.Context, t *testing.T, l *lab.Lab) {
	conn, err := net.ListenPacket("udp4", l.VMNet.Addr().Next().String()+":0")
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		for _, h := range l.Hosts {
			for _, vm := range h.VMs {
				conn.WriteTo([]byte("casecap "+strconv.Itoa(n)), &net.UDPAddr{IP: vm.Addr.AsSlice(), Port: 9999})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// tsharkDsts lists, per packet of a file, its IPv4 destination ("" for
// packets without one), read by tshark.
func tsharkDsts(t *testing.T, file string) []string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command("tshark", "-n", "-r", file, "-T", "fields", "-E", "occurrence=f", "-e", "ip.dst")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", file, err, stderr.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, "Running as user") {
			t.Errorf("tshark says about %s: %s", file, l)
		}
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// casecapPktcaps lists the pktcap-uw processes of a case still running
// anywhere on this machine (every lab host's processes are visible from
// here): any of them is one casecap left behind.
func casecapPktcaps(caseID string) []string {
	var left []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		raw, err := os.ReadFile(f)
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) == "pktcap-uw" && strings.Contains(string(raw), "Case_"+caseID+"/") {
			left = append(left, filepath.Base(filepath.Dir(f))+": "+strings.Join(args, " "))
		}
	}
	return left
}

// handCapture starts a pktcap-uw on a host by hand, as a colleague would,
// and returns its PID on that host.
func handCapture(t *testing.T, l *lab.Lab, h *lab.Host) int {
	t.Helper()
	cmd := fmt.Sprintf("nohup pktcap-uw --uplink vmnic1 -o %s/hand-%s.pcap >/dev/null 2>&1 </dev/null & echo $!", lab.ESXiDatastore, h.Name)
	out, err := h.Command(context.Background(), "sh", "-c", cmd).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("hand capture: %q", out)
	}
	t.Cleanup(func() { h.Command(context.Background(), "kill", "-INT", strconv.Itoa(pid)).Run() })
	return pid
}

func alive(h *lab.Host, pid int) bool {
	return h.Command(context.Background(), "kill", "-0", strconv.Itoa(pid)).Run() == nil
}

// testESXiRun is issue 6's end-to-end test, in one mode: two lab ESXi
// hosts, a VM by name with its uplink (auto) and a switchport each, under
// real traffic to the VMs: correctly named pcapng files that tshark reads,
// holding the packets that crossed those ports; no pktcap-uw of casecap's
// left after the run, and a hand-started one untouched.
func testESXiRun(t *testing.T, mode string) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 2, ESXi: 2, ESXiNoExec: mode == "ssh"})
	caseID := "ESX-" + strings.ToUpper(mode)
	hand := map[string]int{}
	for _, h := range l.Hosts {
		hand[h.Name] = handCapture(t, l, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)

	p := esxiPlan(t, l, caseID, 2*time.Second)
	out := t.TempDir()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test",
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	began := time.Now()
	m, err := o.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("%s mode: run of a 2 s window on 2 ESXi hosts took %v", mode, time.Since(began).Round(time.Millisecond))
	if left := casecapPktcaps(caseID); len(left) > 0 {
		t.Errorf("pktcap-uw sessions of casecap still running after the run: %v", left)
	}
	for _, h := range l.Hosts {
		if !alive(h, hand[h.Name]) {
			t.Errorf("%s: the hand-started pktcap-uw (pid %d) was stopped", h.Name, hand[h.Name])
		}
	}
	for _, mh := range m.Hosts {
		if string(mh.Mode) != mode || mh.Kind != plans.KindESXi || !strings.HasPrefix(mh.OS, "VMware ESXi 8.0.2") || (mode == "ssh") != strings.Contains(mh.Note, "execInstalledOnly") {
			t.Errorf("host %s: mode %q kind %q os %q, want mode %s on ESXi 8.0.2", mh.Name, mh.Mode, mh.Kind, mh.OS, mode)
		}
	}
	caseDir := filepath.Join(out, "Case_"+caseID)
	raw, err := os.ReadFile(filepath.Join(caseDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest orchestrator.Manifest
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	byFile := map[string]orchestrator.ManifestCapture{}
	for _, c := range manifest.Captures {
		byFile[c.File] = c
	}
	if len(manifest.Captures) != 6 {
		t.Errorf("%d captures in the manifest, want 6 (3 per host)", len(manifest.Captures))
	}
	gw := l.VMNet.Addr().Next().String()
	for _, h := range l.Hosts {
		app, web := h.VMs[0], h.VMs[1]
		want := map[string]func(dst string) bool{
			// The VM's vNIC: datagrams to it only (the filter keeps UDP 9999).
			fmt.Sprintf("%s.%s.eth0.VnicTxRx.pcapng", h.Name, app.Name): func(d string) bool { return d == app.Addr.String() },
			// Its team uplink, found by vsish: datagrams to both VMs.
			fmt.Sprintf("%s.uplink.vmnic0.UplinkSndRcvKernel.pcapng", h.Name): func(d string) bool { return d == app.Addr.String() || d == web.Addr.String() },
			// The other VM's switchport, unfiltered: its datagrams, and what
			// the VM sends (ICMP port unreachable to the gateway), ARP, IGMP.
			fmt.Sprintf("%s.switchport.%d.VnicTxRx.pcapng", h.Name, web.Switchport): func(d string) bool {
				return d == web.Addr.String() || d == gw || d == "" || strings.HasPrefix(d, "224.0.0.")
			},
		}
		for name, ok := range want {
			c, found := byFile[name]
			file := filepath.Join(caseDir, name)
			if !found || !c.Collected || c.State != "stopped" {
				t.Errorf("%s: in manifest %v, %+v", name, found, c)
				continue
			}
			if c.SHA256 != sum(t, file) {
				t.Errorf("%s: sha256 differs from the manifest", name)
			}
			dsts := tsharkDsts(t, file)
			counts := map[string]int{}
			for _, d := range dsts {
				if !ok(d) {
					t.Errorf("%s holds a packet to %q", name, d)
					break
				}
				counts[d]++
			}
			// 2 s at one datagram per VM every 5 ms: about 400 to each VM
			// whose port this is.
			need := []string{app.Addr.String(), web.Addr.String()}
			switch {
			case strings.Contains(name, ".VnicTxRx.") && strings.Contains(name, app.Name):
				need = need[:1]
			case strings.Contains(name, ".VnicTxRx."):
				need = need[1:]
			}
			for _, d := range need {
				if n := counts[d]; n < 200 {
					t.Errorf("%s: %d packets to %s, want about 400", name, n, d)
				}
			}
			if len(counts) == 0 || uint64(len(dsts)) != c.Packets {
				t.Errorf("%s: tshark reads %d packets (%v), the manifest says %d", name, len(dsts), counts, c.Packets)
			}
		}
	}
}

func TestESXiAgentMode(t *testing.T) { testESXiRun(t, "agent") }

func TestESXiSSHMode(t *testing.T) { testESXiRun(t, "ssh") }

// testESXiStartStop: start, status, stop and collect as separate commands
// (new orchestrators, as new casecap processes) on an ESXi host; after the
// stop no pktcap-uw of casecap's runs, the hand-started one does; in ssh
// mode a second start ends on the host's own timers with casecap gone.
func testESXiStartStop(t *testing.T, mode string) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: mode == "ssh"})
	h := l.Hosts[0]
	hand := handCapture(t, l, h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	caseID := "SS-" + strings.ToUpper(mode)
	p := esxiPlan(t, l, caseID, 10*time.Minute)
	out := t.TempDir()

	step := time.Now()
	took := func(what string) {
		t.Logf("%s took %v", what, time.Since(step).Round(time.Millisecond))
		step = time.Now()
	}
	m, err := newOrch(t, p, out).Start(context.Background())
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	took("start")
	if len(m.Captures) != 3 || string(m.Hosts[0].Mode) != mode {
		t.Fatalf("start: %d captures, mode %q", len(m.Captures), m.Hosts[0].Mode)
	}
	// Started, or about to: a loaded machine may take a moment to exec them.
	started := casecapPktcaps(caseID)
	for wait := time.Now().Add(3 * time.Second); len(started) < 3 && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
		started = casecapPktcaps(caseID)
	}
	if len(started) != 3 {
		t.Errorf("after start, %d pktcap-uw of the case run, want 3: %v", len(started), started)
	}
	if _, err := newOrch(t, p, out).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second start: %v, want a refusal", err)
	}
	took("second start")
	time.Sleep(time.Second)
	step = time.Now()
	if m, err = newOrch(t, p, out).Status(context.Background()); err != nil {
		t.Fatalf("status: %v", err)
	}
	took("status")
	// The status.json on the datastore, as the agent or the ssh-mode
	// script wrote it, is agentproto.Status to the letter.
	statusFile := filepath.Join(l.Datastore, ".casecap", "cases", caseID, h.Name, agentproto.StatusFile)
	if st := strictStatus(t, statusFile); st.State != agentproto.StateRunning || len(st.Captures) != 3 || st.Captures[0].State != agentproto.CaptureCapturing {
		t.Errorf("%s while capturing: %+v", statusFile, st)
	}
	for _, c := range m.Captures {
		if c.State != "capturing" || c.Size == 0 {
			t.Errorf("status of %s: %q, %d bytes", c.File, c.State, c.Size)
		}
	}
	if m, err = newOrch(t, p, out).Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took("stop")
	for _, c := range m.Captures {
		if c.State != "stopped" || c.StopReason != "stop-request" {
			t.Errorf("after stop, %s is %q (%s) %s", c.File, c.State, c.StopReason, c.Error)
		}
	}
	if left := casecapPktcaps(caseID); len(left) > 0 {
		t.Errorf("pktcap-uw of casecap still running after stop: %v", left)
	}
	// Each PID that casecap's pktcap-uw had is gone, or is now another
	// program's.
	for _, p := range started {
		pid, _, _ := strings.Cut(p, ":")
		if raw, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && strings.Contains(string(raw), "pktcap-uw") {
			t.Errorf("pid %s still runs %q after stop", pid, raw)
		}
	}
	if !alive(h, hand) {
		t.Errorf("the hand-started pktcap-uw (pid %d) was stopped", hand)
	}
	if m, err = newOrch(t, p, out).Collect(context.Background()); err != nil {
		t.Fatalf("collect: %v", err)
	}
	took("collect")
	for _, c := range m.Captures {
		file := filepath.Join(out, "Case_"+caseID, c.File)
		if !c.Collected || sum(t, file) != c.SHA256 || c.Packets == 0 || uint64(len(tsharkDsts(t, file))) != c.Packets {
			t.Errorf("%s: collected %v, %d packets", c.File, c.Collected, c.Packets)
		}
	}
	if mode != "ssh" {
		return
	}
	// casecap starts, then is gone: the host's timers end the captures.
	caseID = "SS-GONE"
	p = esxiPlan(t, l, caseID, 2*time.Second)
	if _, err := newOrch(t, p, out).Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	statusFile = filepath.Join(l.Datastore, ".casecap", "cases", caseID, h.Name, agentproto.StatusFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(statusFile)
		var st agentproto.Status
		if json.Unmarshal(raw, &st) == nil && st.State == agentproto.StateDone {
			st = strictStatus(t, statusFile)
			for _, c := range st.Captures {
				if c.StopReason != agentproto.StopWindowEnd || c.State != agentproto.CaptureStopped || c.SHA256 == "" || c.Command == "" {
					t.Errorf("a capture is %s, ended by %q, want stopped by window-end, with its sha256 and command: %+v", c.State, c.StopReason, c)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the captures did not end by themselves: %s", raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left := casecapPktcaps(caseID); len(left) > 0 {
		t.Errorf("pktcap-uw of casecap still running after their end: %v", left)
	}
}

func TestESXiStartStopAgent(t *testing.T) { testESXiStartStop(t, "agent") }

func TestESXiStartStopSSH(t *testing.T) { testESXiStartStop(t, "ssh") }

// TestTargets: targets lists an ESXi host's VMs (a name with a space too),
// vNICs, MACs and switchports, uplinks and vmks, and a Linux host's
// interfaces, from the hosts' own tools; --host narrows it.
func TestTargets(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 2, ESXi: 1})
	esx, lin := l.Hosts[0], l.Hosts[1]
	plan := fmt.Sprintf(`case: T
datastore: %s
ssh: { user: root, identity_file: %s, known_hosts: %s }
hosts:
  - name: %s
    address: %s
    captures: [ { switchport: %d } ]
  - name: %s
    kind: linux
    address: %s
    captures: [ { interface: eth0 } ]
`, lab.ESXiDatastore, l.ClientKey, l.KnownHosts, esx.Name, esx.Addr, esx.VMs[0].Switchport, lin.Name, lin.Addr)
	file := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(file, []byte(plan), 0o600)
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := newOrch(t, p, t.TempDir()).Targets(context.Background(), nil)
	if err != nil || len(ts) != 2 {
		t.Fatalf("targets: %v, %d hosts", err, len(ts))
	}
	e := ts[0]
	if e.Kind != plans.KindESXi || !strings.HasPrefix(e.OS, "VMware ESXi 8.0.2") || len(e.VNICs) != 2 || len(e.Uplinks) != 2 || len(e.Vmks) != 1 {
		t.Fatalf("ESXi targets: %+v", e)
	}
	for i, vm := range esx.VMs {
		got := e.VNICs[i]
		if got.VM != vm.Name || got.VNIC != vm.VNIC || got.MAC != vm.MAC || got.Switchport != vm.Switchport || got.Switch != "vSwitch0" {
			t.Errorf("vNIC %d: %+v, want %+v", i, got, vm)
		}
	}
	if e.Uplinks[0].Name != "vmnic0" || e.Vmks[0].Name != "vmk0" {
		t.Errorf("uplinks %+v, vmks %+v", e.Uplinks, e.Vmks)
	}
	li := ts[1]
	found := false
	for _, i := range li.Interfaces {
		found = found || (i.Name == "eth0" && i.MAC == lin.MAC)
	}
	if li.Kind != plans.KindLinux || !found {
		t.Errorf("Linux targets: %+v, want eth0 with %s", li, lin.MAC)
	}
	ts, err = newOrch(t, p, t.TempDir()).Targets(context.Background(), []string{lin.Name})
	if err != nil || len(ts) != 1 || ts[0].Host != lin.Name {
		t.Errorf("targets --host %s: %+v %v", lin.Name, ts, err)
	}
}

// testESXiToolFails: a pktcap-uw that the host refuses at run time (a
// dvfilter that does not exist: nothing casecap can check beforehand) fails
// its own capture with pktcap-uw's words, quickly; the host's other capture
// is captured and collected, and the run says it failed.
func testESXiToolFails(t *testing.T, mode string) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: mode == "ssh"})
	h := l.Hosts[0]
	plan := fmt.Sprintf(`case: BAD-%s
datastore: %s
duration: 2s
ssh: { user: root, identity_file: %s, known_hosts: %s }
hosts:
  - name: %s
    kind: esxi
    address: %s
    captures:
      - dvfilter: nic-1234-eth0-vmware-sfw.2
        points: [PreDVFilter]
      - switchport: %d
`, mode, lab.ESXiDatastore, l.ClientKey, l.KnownHosts, h.Name, h.Addr, h.VMs[0].Switchport)
	file := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(file, []byte(plan), 0o600)
	p, err := plans.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	// start returns with the failure, quickly: pktcap-uw said no at once.
	m, err := newOrch(t, p, out).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("start: %v, want the capture's failure", err)
	}
	for _, c := range m.Captures {
		if strings.Contains(c.File, "dvfilter") != (c.State == "failed") {
			t.Errorf("after start, %s is %s (%s)", c.File, c.State, c.Error)
		}
	}
	if _, err := newOrch(t, p, out).Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	m, err = newOrch(t, p, out).Collect(context.Background())
	if err == nil {
		t.Error("collect: no error, with a capture that failed")
	}
	for _, c := range m.Captures {
		switch {
		case strings.Contains(c.File, "dvfilter"):
			if c.State != "failed" || !strings.Contains(c.Error, "the dvfilter nic-1234-eth0-vmware-sfw.2 does not exist") || c.Collected {
				t.Errorf("%s: %s, %q, collected %v; want failed with pktcap-uw's words", c.File, c.State, c.Error, c.Collected)
			}
		default:
			if c.State != "stopped" || !c.Collected || c.Error != "" {
				t.Errorf("%s: %s, %q, collected %v; want stopped and collected", c.File, c.State, c.Error, c.Collected)
			}
		}
	}
}

func TestESXiToolFailsAgent(t *testing.T) { testESXiToolFails(t, "agent") }

func TestESXiToolFailsSSH(t *testing.T) { testESXiToolFails(t, "ssh") }

// TestESXiSSHModeLinkCut: in ssh mode, the script on the host needs no
// casecap: with the host's link cut mid-capture, status names it
// unreachable, the captures end on the host's timers, and collect gets
// every file once the link is back.
func TestESXiSSHModeLinkCut(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: true})
	h := l.Hosts[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	p := withConnectTimeout(t, esxiPlan(t, l, "SSH-CUT", 5*time.Second), 2*time.Second)
	out := t.TempDir()
	m, err := newOrch(t, p, out).Start(context.Background())
	if err != nil || m.Hosts[0].Mode != "ssh" {
		t.Fatalf("start: %v (mode %q)", err, m.Hosts[0].Mode)
	}
	began := time.Now()
	if err := h.LinkDown(); err != nil {
		t.Fatal(err)
	}
	if _, err := newOrch(t, p, out).Status(context.Background()); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("status with the link cut: %v, want unreachable", err)
	}
	time.Sleep(time.Until(began.Add(6 * time.Second)))
	if err := h.LinkUp(); err != nil {
		t.Fatal(err)
	}
	m = collectUntil(t, p, out, 20*time.Second)
	for _, c := range m.Captures {
		if c.State != "stopped" || c.StopReason != "window-end" || c.Packets == 0 {
			t.Errorf("%s: %s by %q with %d packets, want stopped at the window's end", c.File, c.State, c.StopReason, c.Packets)
		}
	}
	if left := casecapPktcaps("SSH-CUT"); len(left) > 0 {
		t.Errorf("pktcap-uw of casecap still running: %v", left)
	}
}

// TestESXiSSHModeSSHDKilled: in ssh mode, the host's sshd killed mid-run
// (with every process under it) and restarted: the script and its
// pktcap-uw, detached from the session that started them, go on; the run
// completes and collects every file.
func TestESXiSSHModeSSHDKilled(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: true})
	h := l.Hosts[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	p := withConnectTimeout(t, esxiPlan(t, l, "SSH-SSHD", 6*time.Second), 2*time.Second)
	out := t.TempDir()
	d := newCapturingDisplay()
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, AgentBinary: agentBinary(t), Version: "test", Display: d})
	var m *orchestrator.Manifest
	var err error
	d.whileCapturing(t, func() { m, err = o.Run(context.Background()) }, h.KillSSHD, h.StartSSHD)
	if err != nil {
		t.Fatalf("run with sshd killed and restarted: %v", err)
	}
	for _, c := range m.Captures {
		file := filepath.Join(out, "Case_SSH-SSHD", c.File)
		if !c.Collected || c.StopReason != "window-end" || sum(t, file) != c.SHA256 || uint64(tsharkCount(t, file)) != c.Packets || c.Packets < 800 {
			t.Errorf("%s: collected %v, stopped by %q, %d packets; want the whole 6 s window", c.File, c.Collected, c.StopReason, c.Packets)
		}
	}
	if m.Hosts[0].Mode != "ssh" {
		t.Errorf("mode %q", m.Hosts[0].Mode)
	}
}

// TestNeverChangesExecInstalledOnly: on a host that refuses uploaded
// programs (the lab's stand-in for execInstalledOnly: a noexec datastore),
// casecap captures in ssh mode and asks the host nothing but read-only
// questions: every call of ESXi's tools it made is a listing or a capture,
// none a setting; the datastore is still noexec afterwards.
func TestNeverChangesExecInstalledOnly(t *testing.T) {
	labtest.Require(t)
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: true})
	h := l.Hosts[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go vmTraffic(ctx, t, l)
	p := esxiPlan(t, l, "NOEXEC", 2*time.Second)
	m, err := newOrch(t, p, t.TempDir()).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if m.Hosts[0].Mode != "ssh" {
		t.Fatalf("mode %q, want ssh: the host must refuse the agent for this test to mean anything", m.Hosts[0].Mode)
	}
	calls, err := h.ESXiCalls()
	if err != nil || len(calls) == 0 {
		t.Fatalf("the host's tool calls: %v %v", calls, err)
	}
	readOnly := func(c []string) bool {
		switch {
		case c[0] == "net-stats" && slices.Equal(c[1:], []string{"-l"}),
			c[0] == "vmware" && slices.Equal(c[1:], []string{"-v"}),
			c[0] == "uname",
			c[0] == "pktcap-uw",
			c[0] == "vsish" && len(c) == 4 && c[1] == "-e" && c[2] == "get",
			c[0] == "esxcli" && slices.Equal(c[1:], []string{"network", "vm", "list"}),
			c[0] == "esxcli" && len(c) == 7 && slices.Equal(c[1:6], []string{"network", "vm", "port", "list", "-w"}):
			return true
		}
		return false
	}
	for _, c := range calls {
		if !readOnly(c) || slices.ContainsFunc(c, func(a string) bool { return strings.Contains(strings.ToLower(a), "execinstalledonly") }) {
			t.Errorf("casecap asked the host %q: not a read-only question", c)
		}
	}
	out, err := h.Command(context.Background(), "findmnt", "-no", "OPTIONS", lab.ESXiDatastore).Output()
	if err != nil || !strings.Contains(string(out), "noexec") {
		t.Errorf("the datastore's mount options after the run: %q %v, want noexec still", out, err)
	}
}

// strictStatus decodes a status.json as agentproto.Status, refusing any
// field the protocol does not name.
func strictStatus(t *testing.T, file string) agentproto.Status {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var st agentproto.Status
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("%s is not agentproto.Status: %v\n%s", file, err, raw)
	}
	return st
}
