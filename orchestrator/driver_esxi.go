package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/plans"
)

// esxiPorts are an ESXi host's captures as pktcap-uw sessions, by file:
// what both ESXi drivers (agent and ssh mode) run.
type esxiPorts struct {
	sessions map[string]esxi.Capture
}

// resolve reads the host's ports and resolves its captures to pktcap-uw
// sessions: a VM's vNIC to its switchport, `uplink: auto` to the port's
// team uplink (a capture added beside it). A name that matches nothing
// fails the host with the candidates, before anything is uploaded.
func (e *esxiPorts) resolve(ctx context.Context, o *Orchestrator, h *hostRun) error {
	status, text, ok := strings.Cut(h.facts.inventory, "\n")
	if !ok {
		return errors.New("the host's probe did not list its ports (net-stats -l)")
	}
	if i := strings.LastIndex(text, "casecap-ssh-connection "); i >= 0 {
		h.facts.sshConn = strings.TrimSpace(text[i+len("casecap-ssh-connection "):])
		text = text[:i]
	}
	if status != "0" {
		return fmt.Errorf("net-stats -l failed (exit %s): %s", status, strings.TrimSpace(text))
	}
	ports, err := esxi.ParseNetStats(text)
	if err != nil {
		return err
	}
	inv := &esxi.Inventory{Host: h.name(), Version: *h.facts.esxi, Ports: ports}
	caps, pcs, err := resolveESXi(o.opt.Plan.File, inv, h.plan.Captures, func(p esxi.Port) (string, error) {
		return teamUplink(ctx, h.conn, p)
	})
	if err != nil {
		return err
	}
	h.facts.captures, e.sessions = caps, pcs
	o.disp.HostPhase(h.name(), fmt.Sprintf("resolved %d captures on %d ports", len(caps), len(ports)))
	return nil
}

// resolveESXi turns a host's planned captures into pktcap-uw sessions.
// teamUplink answers a port's active uplink. It returns the captures to
// run (the plan's, then the uplinks `uplink: auto` added, each once) and
// their sessions by file name, or every capture's error at once.
func resolveESXi(planFile string, inv *esxi.Inventory, planned []*plans.Capture, teamUplink func(esxi.Port) (string, error)) ([]*plans.Capture, map[string]esxi.Capture, error) {
	var errs []string
	caps := append([]*plans.Capture(nil), planned...)
	pcs := map[string]esxi.Capture{}
	files := map[string]bool{}
	for _, c := range planned {
		files[c.File] = true
	}
	uplinks := map[uint32]string{}
	for _, c := range planned {
		pc := sessionOf(c)
		var port esxi.Port
		var err error
		switch t := c.Target; t.Kind {
		case plans.TargetSwitchport:
			port, err = inv.Switchport(t.Switchport)
		case plans.TargetVM:
			port, err = inv.VNIC(t.VM, t.VNIC)
			pc.Switchport = port.Num
		case plans.TargetUplink:
			_, err = inv.Uplink(t.Name)
		case plans.TargetVmk:
			_, err = inv.Vmk(t.Name)
		}
		if err == nil {
			_, _, err = esxi.Argv(pc, "/casecap/check", inv.Version)
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s (%s:%d %s): %v", c.File, planFile, c.Line, c.Path, err))
			continue
		}
		pcs[c.File] = pc
		if !c.Target.AutoUplink {
			continue
		}
		name, ok := uplinks[port.Num]
		if !ok {
			if name, err = teamUplink(port); err != nil {
				errs = append(errs, fmt.Sprintf("%s: uplink auto: %v", c.File, err))
				continue
			}
			uplinks[port.Num] = name
		}
		up := *c
		up.Target = plans.Target{Kind: plans.TargetUplink, Name: name}
		up.Points, up.Dir, up.Stage = c.Target.UplinkPoints, plans.DirNone, plans.StageNone
		up.File = plans.FileName(&up)
		if files[up.File] {
			continue // asked for in the plan, or by another capture's auto
		}
		files[up.File] = true
		upc := sessionOf(&up)
		if _, _, err := esxi.Argv(upc, "/casecap/check", inv.Version); err != nil {
			errs = append(errs, fmt.Sprintf("%s (uplink auto of %s): %v", up.File, c.File, err))
			continue
		}
		caps = append(caps, &up)
		pcs[up.File] = upc
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return caps, pcs, nil
}

// sessionOf is the pktcap-uw session of a capture, before its VM is
// resolved to a switchport.
func sessionOf(c *plans.Capture) esxi.Capture {
	pc := esxi.Capture{Points: c.Points, Dir: string(c.Dir), Stage: string(c.Stage), Snaplen: c.Snaplen, Filter: c.Filter}
	switch t := c.Target; t.Kind {
	case plans.TargetSwitchport:
		pc.Switchport = t.Switchport
	case plans.TargetUplink:
		pc.Uplink = t.Name
	case plans.TargetVmk:
		pc.Vmk = t.Name
	case plans.TargetDVFilter:
		pc.DVFilter = t.Name
	}
	return pc
}

// teamUplink finds the uplink a port's traffic leaves by: vsish's
// teamUplink, or, for a VM's port where vsish cannot say, esxcli's "Team
// Uplink" of that VM's ports.
func teamUplink(ctx context.Context, conn hosts.Conn, p esxi.Port) (string, error) {
	out, err := conn.Run(ctx, esxi.TeamUplinkArgv(p.Switch, p.Num), nil)
	if err == nil {
		var u string
		if u, err = esxi.ParseTeamUplink(string(out)); err == nil {
			return u, nil
		}
	}
	if p.Type == esxi.TypeVNIC {
		u, xerr := esxcliTeamUplink(ctx, conn, p)
		if xerr == nil {
			return u, nil
		}
		err = errors.Join(err, xerr)
	}
	return "", fmt.Errorf("the team uplink of port %d (%s): %w; name the uplink in the plan instead", p.Num, p.Client, err)
}

// esxcliTeamUplink asks esxcli for a VM port's team uplink: the VM's world
// from `esxcli network vm list`, then its ports.
func esxcliTeamUplink(ctx context.Context, conn hosts.Conn, p esxi.Port) (string, error) {
	out, err := conn.Run(ctx, esxi.VMListArgv, nil)
	if err != nil {
		return "", err
	}
	vms, err := esxi.ParseVMList(string(out))
	if err != nil {
		return "", err
	}
	for _, vm := range vms {
		if vm.Name != p.VM() {
			continue
		}
		out, err := conn.Run(ctx, esxi.VMPortsArgv(vm.World), nil)
		if err != nil {
			return "", err
		}
		ports, err := esxi.ParseVMPorts(string(out))
		if err != nil {
			return "", err
		}
		for _, vp := range ports {
			if vp.Port == p.Num {
				if vp.TeamUplink == "" {
					return "", fmt.Errorf("esxcli: port %d has no single active uplink (teamed over all, or none)", p.Num)
				}
				return esxi.ParseTeamUplink(vp.TeamUplink)
			}
		}
	}
	return "", fmt.Errorf("esxcli network vm list has no VM %q with port %d", p.VM(), p.Num)
}
