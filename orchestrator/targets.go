package orchestrator

import (
	"context"
	"fmt"
	"strings"

	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
)

// HostTargets is what can be captured on one host: on ESXi its VMs' vNICs,
// uplinks and vmks with their switchports; on Linux its interfaces.
type HostTargets struct {
	Host       string            `json:"host"`
	Kind       plans.Kind        `json:"kind"`
	OS         string            `json:"os,omitempty"`
	VNICs      []TargetPort      `json:"vnics,omitempty"`
	Uplinks    []TargetPort      `json:"uplinks,omitempty"`
	Vmks       []TargetPort      `json:"vmks,omitempty"`
	Interfaces []TargetInterface `json:"interfaces,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// TargetPort is one ESXi port: a VM's vNIC (VM and VNIC set), an uplink or
// a vmk (Name set).
type TargetPort struct {
	VM         string `json:"vm,omitempty"`
	VNIC       string `json:"vnic,omitempty"`
	Name       string `json:"name,omitempty"`
	Switchport uint32 `json:"switchport"`
	Switch     string `json:"switch"`
	MAC        string `json:"mac"`
}

// TargetInterface is one Linux interface.
type TargetInterface struct {
	Name string `json:"name"`
	MAC  string `json:"mac,omitempty"`
}

// targetsScript says what the host is, then lists its ports: net-stats -l
// on ESXi, interfaces and their MACs from sysfs on Linux. Nothing is
// uploaded and nothing runs but the host's own tools.
const targetsScript = `s=$(uname -s); echo "$s"; uname -r
if [ "$s" = VMkernel ]; then vmware -v; echo; net-stats -l; exit; fi
echo
for i in /sys/class/net/*; do [ -e "$i" ] && echo "${i##*/} $(cat "$i/address" 2>/dev/null)"; done`

// Targets lists what can be captured on each host of the plan (or on the
// hosts named in only). A host that cannot be reached or read has its
// error in its entry; the others are listed all the same.
func (o *Orchestrator) Targets(ctx context.Context, only []string) ([]HostTargets, error) {
	defer o.disp.Close()
	defer o.closeAll()
	if len(only) > 0 {
		var keep []*hostRun
		for _, h := range o.hosts {
			for _, name := range only {
				if h.name() == name {
					keep = append(keep, h)
				}
			}
		}
		o.hosts = keep
	}
	out := make([]HostTargets, len(o.hosts))
	index := map[*hostRun]int{}
	for i, h := range o.hosts {
		index[h] = i
		out[i] = HostTargets{Host: h.name(), Kind: h.plan.Kind}
	}
	o.each(ctx, phaseConnect, o.connectHost)
	o.each(ctx, phaseTargets, func(ctx context.Context, h *hostRun) error {
		raw, err := h.conn.Run(ctx, []string{"sh", "-c", targetsScript}, nil)
		if err != nil {
			return err
		}
		t, err := parseTargets(string(raw))
		if err != nil {
			return err
		}
		t.Host = h.name()
		out[index[h]] = t
		return nil
	})
	for _, h := range o.hosts {
		if h.err != nil {
			out[index[h]].Error = h.err.Error()
		}
	}
	return out, o.failures()
}

// parseTargets reads targetsScript's answer: system, release, a version
// line on ESXi, an empty line, then the ports or interfaces.
func parseTargets(raw string) (HostTargets, error) {
	head, body, ok := strings.Cut(raw, "\n\n")
	lines := strings.Split(head, "\n")
	if !ok || len(lines) < 2 {
		return HostTargets{}, fmt.Errorf("unexpected answer: %q", firstLines(raw, 3))
	}
	var t HostTargets
	switch lines[0] {
	case "VMkernel":
		t.Kind, t.OS = plans.KindESXi, strings.Join(lines[2:], " ")
		ports, err := esxi.ParseNetStats(body)
		if err != nil {
			return t, err
		}
		inv := &esxi.Inventory{Ports: ports}
		for _, p := range inv.Of(esxi.TypeVNIC) {
			t.VNICs = append(t.VNICs, TargetPort{VM: p.VM(), VNIC: p.VNIC(), Switchport: p.Num, Switch: p.Switch, MAC: p.MAC})
		}
		for _, p := range inv.Of(esxi.TypeUplink) {
			t.Uplinks = append(t.Uplinks, TargetPort{Name: p.Client, Switchport: p.Num, Switch: p.Switch, MAC: p.MAC})
		}
		for _, p := range inv.Of(esxi.TypeVmk) {
			t.Vmks = append(t.Vmks, TargetPort{Name: p.Client, Switchport: p.Num, Switch: p.Switch, MAC: p.MAC})
		}
	case "Linux":
		t.Kind, t.OS = plans.KindLinux, "Linux "+lines[1]
		for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
			name, mac, _ := strings.Cut(strings.TrimSpace(l), " ")
			if name != "" {
				t.Interfaces = append(t.Interfaces, TargetInterface{Name: name, MAC: mac})
			}
		}
	default:
		return t, fmt.Errorf("%s is neither Linux nor ESXi", lines[0])
	}
	return t, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
