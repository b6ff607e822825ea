package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/internal/suggest"
	"github.com/casecap/casecap/orchestrator"
)

func targetsCommand() *cli.Command {
	return planCommand("targets", "list what can be captured on each host: VMs with vNICs, MACs and switchports, uplinks, vmks; Linux interfaces",
		"Connects to each host (nothing is uploaded) and asks the host's own tools: net-stats -l on ESXi, sysfs on Linux. Use it to write or check a plan's captures.",
		func(c *cli.Context, _ string) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			only := c.StringSlice("host")
			var names []string
			for _, h := range p.Hosts {
				names = append(names, h.Name)
			}
			for _, want := range only {
				found := false
				for _, n := range names {
					found = found || n == want
				}
				if !found {
					return usageError{fmt.Sprintf("--host %s: no such host in %s; it has %s%s", want, p.File, strings.Join(names, ", "), suggest.DidYouMean(want, names))}
				}
			}
			s, err := newSession(c, p, false, orchestrator.Signals{})
			if err != nil {
				return err
			}
			defer s.close()
			ctx, cancel := cancelOnSignal(c.Context)
			defer cancel()
			ts, err := s.orch.Targets(ctx, only)
			if c.Bool("json") {
				if werr := writeJSON(c.App.Writer, ts); werr != nil {
					return werr
				}
			} else {
				printTargets(c.App.Writer, ts)
			}
			if err != nil {
				return runtimeError{err}
			}
			return nil
		},
		append(orchestrateFlags(false)[1:], &cli.StringSliceFlag{Name: "host", Usage: "only this host (repeat for more)"})...)
}

// printTargets writes each host's targets as tables, in the plan's words
// (vm/vnic, switchport, uplink, vmk, interface).
func printTargets(w io.Writer, ts []orchestrator.HostTargets) {
	for i, t := range ts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		about := t.OS
		if about == "" {
			about = string(t.Kind)
		}
		fmt.Fprintf(w, "%s (%s)\n", t.Host, about)
		if t.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", t.Error)
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if len(t.VNICs) > 0 {
			fmt.Fprintln(tw, "  VM\tVNIC\tMAC\tSWITCHPORT\tSWITCH")
			for _, p := range t.VNICs {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", p.VM, p.VNIC, p.MAC, p.Switchport, p.Switch)
			}
		}
		for _, group := range []struct {
			title string
			ports []orchestrator.TargetPort
		}{{"UPLINK", t.Uplinks}, {"VMK", t.Vmks}} {
			if len(group.ports) == 0 {
				continue
			}
			fmt.Fprintf(tw, "  %s\t\tMAC\tSWITCHPORT\tSWITCH\n", group.title)
			for _, p := range group.ports {
				fmt.Fprintf(tw, "  %s\t\t%s\t%d\t%s\n", p.Name, p.MAC, p.Switchport, p.Switch)
			}
		}
		if len(t.Interfaces) > 0 {
			fmt.Fprintln(tw, "  INTERFACE\tMAC")
			for _, i := range t.Interfaces {
				fmt.Fprintf(tw, "  %s\t%s\n", i.Name, i.MAC)
			}
		}
		tw.Flush()
	}
}
