//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab/labtest"
)

// TestExtcap: `casecap live PLAN --install-extcap` makes the plan a
// capture interface that tshark -D lists, and a tshark capture through it
// records both hosts' capture points (an interface each); when tshark
// stops, no agent is left running.
func TestExtcap(t *testing.T) {
	labtest.Require(t)
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark is not installed")
	}
	l := labtest.Start(t, 2)
	labtest.Stream(t, l, 72, 5*time.Millisecond)
	var b strings.Builder
	fmt.Fprintf(&b, "case: LIVE-EXTCAP\ndatastore: %s\nduration: 1m\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", l.Datastore, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0, filter: { udpport: 9999 } } ] }\n", h.Name, h.Addr)
	}
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	os.WriteFile(plan, []byte(b.String()), 0o600)
	home := filepath.Join(dir, "home")
	env := append(os.Environ(), "HOME="+home, "CASECAP_CONFIG_DIR="+filepath.Join(dir, "config"), "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	// Where this Wireshark looks: Debian 12's 4.0 has no personal extcap
	// folder, and ignores WIRESHARK_EXTCAP_DIR for root; casecap asks
	// tshark, and the link lands in the global folder (removed after).
	where, err := extcapDir()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(where, "casecap")
	if _, err := os.Lstat(link); err == nil {
		t.Fatalf("%s exists already: not this test's to replace", link)
	}
	t.Cleanup(func() { os.Remove(link) })
	install := exec.Command(casecapBinary(t), "live", plan, "--install-extcap")
	install.Env = env
	out, err := install.CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), link) {
		t.Errorf("install does not say where it put the link (%s):\n%s", link, out)
	}
	list := exec.Command("tshark", "-D")
	list.Env = env
	out, err = list.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "casecap-LIVE-EXTCAP") {
		t.Fatalf("tshark -D does not list the plan: %v\n%s", err, out)
	}
	pcap := filepath.Join(dir, "through-extcap.pcapng")
	capture := exec.Command("tshark", "-i", "casecap-LIVE-EXTCAP", "-a", "duration:6", "-w", pcap)
	capture.Env = env
	if out, err := capture.CombinedOutput(); err != nil {
		t.Fatalf("tshark through the extcap: %v\n%s", err, out)
	}
	names, err := exec.Command("tshark", "-r", pcap, "-T", "fields", "-e", "frame.interface_name").Output()
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, n := range strings.Fields(string(names)) {
		per[n]++
	}
	for _, h := range l.Hosts {
		if per[h.Name+".eth0.RxTx"] < 100 {
			t.Errorf("%s.eth0.RxTx: %d packets through the extcap (%v)", h.Name, per[h.Name+".eth0.RxTx"], per)
		}
	}
	t.Logf("through the extcap: %v", per)
	time.Sleep(time.Second)
	for _, h := range l.Hosts {
		procs, _ := h.Processes()
		for _, argv := range procs {
			if strings.Contains(argv[0], "casecap-agent") {
				t.Errorf("%s: an agent is still running after tshark stopped: %v", h.Name, argv)
			}
		}
	}
}
