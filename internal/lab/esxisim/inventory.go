package esxisim

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/casecap/casecap/internal/esxi"
)

// InventoryPath is where a lab ESXi host keeps its inventory: beside the
// tools, in the directory the lab mounts on /usr/local/bin in that host.
const InventoryPath = "/usr/local/bin/.esxi.json"

// inventoryEnv overrides InventoryPath (unit tests).
const inventoryEnv = "CASECAP_ESXISIM_INVENTORY"

// Inventory is one simulated ESXi host.
type Inventory struct {
	Version  string `json:"version"` // as vmware -v prints it
	Hostname string `json:"hostname"`
	Machine  string `json:"machine"` // uname -m
	Ports    []Port `json:"ports"`
}

// Port is a switchport and the Linux interface that carries its traffic.
type Port struct {
	esxi.Port
	// Ifname is the interface in the host's namespace: the uplink's link,
	// the vmk's bridge, or the host side of a VM's veth.
	Ifname string `json:"ifname"`
	// World is the VM's world id, TeamUplink its port's active uplink.
	World      int    `json:"world,omitempty"`
	TeamUplink string `json:"team_uplink,omitempty"`
	Portgroup  string `json:"portgroup,omitempty"`
	IP         string `json:"ip,omitempty"`
}

func loadInventory() (*Inventory, error) {
	path := InventoryPath
	if p := os.Getenv(inventoryEnv); p != "" {
		path = p
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("this host has no ESXi inventory: %w", err)
	}
	var inv Inventory
	if err := json.Unmarshal(raw, &inv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &inv, nil
}

// WriteInventory stores an inventory where the tools find it.
func WriteInventory(path string, inv *Inventory) error {
	raw, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}
