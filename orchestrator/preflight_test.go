package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestParseProbe splits the probe's answers as a Linux host, an ESXi host
// (with the agent found and its inventory) and a broken host give them.
func TestParseProbe(t *testing.T) {
	esxiOut := "VMkernel 8.0.2 x86_64\nyes\nFilesystem 1024-blocks Used Available Capacity Mounted on\n" +
		"/vmfs/volumes/ds1 1000 10 990 1% /vmfs/volumes/ds1\ncasecap-df-end\n" +
		"casecap-agent-sha256 0123abcd  /vmfs/volumes/ds1/.casecap/agent/casecap-agent-x-linux-amd64\n" +
		"VMware ESXi 8.0.2 build-22380479\ncasecap-inventory 0\nPortNum Type SubType SwitchName MACAddress ClientName\n" +
		"casecap-ssh-connection 198.18.0.1 5000 198.18.0.2 22\n"
	pr, err := parseProbe(esxiOut)
	if err != nil {
		t.Fatal(err)
	}
	want := probeAnswer{sys: "VMkernel", release: "8.0.2", machine: "x86_64", writable: true,
		df: "/vmfs/volumes/ds1 1000 10 990 1% /vmfs/volumes/ds1", agentSum: "0123abcd", vmware: "VMware ESXi 8.0.2 build-22380479",
		inventory: "0\nPortNum Type SubType SwitchName MACAddress ClientName\ncasecap-ssh-connection 198.18.0.1 5000 198.18.0.2 22\n"}
	if pr != want {
		t.Errorf("ESXi:\n got %+v\nwant %+v", pr, want)
	}

	pr, err = parseProbe("Linux 6.1.0-13-amd64 aarch64\nno\ncasecap-df-end\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (probeAnswer{sys: "Linux", release: "6.1.0-13-amd64", machine: "aarch64"}); pr != want {
		t.Errorf("Linux, no datastore: got %+v, want %+v", pr, want)
	}

	for _, bad := range []string{"", "sh: uname: not found\n", "Linux 6.1.0 x86_64\nyes\n/dev/x 1 1 1 1% /ds\n"} {
		if _, err := parseProbe(bad); err == nil || !strings.Contains(err.Error(), "unexpected answer to the probe") {
			t.Errorf("%q: %v, want it refused", bad, err)
		}
	}
}

// TestProbeScriptOnThisHost runs the probe with this machine's own sh,
// uname and df, and parses what they say (the lab's hosts do the same
// over SSH; this catches a broken script without one).
func TestProbeScriptOnThisHost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the probe runs on Linux and ESXi hosts")
	}
	ds := t.TempDir()
	agent := ds + "/agent"
	if err := os.WriteFile(agent, []byte("casecap\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", probeScript, "probe", ds+"/new", "create", agent, agent).Output()
	if err != nil {
		t.Fatal(err)
	}
	pr, err := parseProbe(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if pr.sys != "Linux" || !pr.writable || len(strings.Fields(pr.df)) < 6 || pr.vmware != "" || pr.inventory != "" {
		t.Errorf("%+v from %q", pr, out)
	}
	if sum := sha256.Sum256([]byte("casecap\n")); pr.agentSum != hex.EncodeToString(sum[:]) {
		t.Errorf("the agent's sum: %q in %q", pr.agentSum, out)
	}
	if _, err := os.Stat(ds + "/new"); err != nil {
		t.Errorf("the datastore was not made: %v", err)
	}
}
