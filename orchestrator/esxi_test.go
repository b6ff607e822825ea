package orchestrator

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/esxi"
)

// A host where vsish cannot say (an older build, a locked-down shell):
// esxcli's "Team Uplink" of the VM's ports answers instead; a port teamed
// over all uplinks has no single one, and says why.
func TestTeamUplinkFallsBackToEsxcli(t *testing.T) {
	sample := func(name string) []byte {
		b, err := os.ReadFile("../internal/esxi/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	conn := hosts.NewFake("esxi01", func(argv []string, _ []byte) ([]byte, error) {
		switch strings.Join(argv, " ") {
		case "esxcli network vm list":
			return sample("esxcli-vm-list.txt"), nil
		case "esxcli network vm port list -w 2101234":
			return sample("esxcli-vm-port-list.txt"), nil
		}
		if argv[0] == "vsish" {
			return nil, errors.New("vsish: Error: Not found")
		}
		return nil, errors.New("unexpected " + strings.Join(argv, " "))
	})
	ports, err := esxi.ParseNetStats(string(sample("net-stats-l.txt")))
	if err != nil {
		t.Fatal(err)
	}
	inv := &esxi.Inventory{Host: "esxi01", Ports: ports}
	eth0, _ := inv.VNIC("app01", "eth0")
	if u, err := teamUplink(context.Background(), conn, eth0); err != nil || u != "vmnic0" {
		t.Errorf("app01 eth0: %q %v, want vmnic0 from esxcli", u, err)
	}
	eth1, _ := inv.VNIC("app01", "eth1")
	if u, err := teamUplink(context.Background(), conn, eth1); err == nil || !strings.Contains(err.Error(), "vsish: Error") || !strings.Contains(err.Error(), "no single active uplink") {
		t.Errorf("app01 eth1 (teamed over all): %q %v, want both reasons", u, err)
	}
	vmk, _ := inv.Vmk("vmk0")
	if _, err := teamUplink(context.Background(), conn, vmk); err == nil || !strings.Contains(err.Error(), "name the uplink") {
		t.Errorf("vmk0: %v, want vsish's error and the way out", err)
	}
}
