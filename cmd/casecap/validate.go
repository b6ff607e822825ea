package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/plans"
)

func validateCommand() *cli.Command {
	return planCommand("validate", "check the plan and print the resolved captures; touches no host",
		"Exit 0 when the plan is valid, 2 when it is not (every problem is listed, with file:line:col).",
		func(c *cli.Context, file string) error {
			p, err := plans.Load(file)
			var perr *plans.Error
			if c.Bool("json") {
				out := struct {
					Valid  bool         `json:"valid"`
					Errors []plans.Diag `json:"errors,omitempty"`
					Plan   *plans.Plan  `json:"plan,omitempty"`
				}{Valid: err == nil, Plan: p}
				if errors.As(err, &perr) {
					out.Errors = perr.Diags
				} else if err != nil {
					return err
				}
				if werr := writeJSON(c.App.Writer, out); werr != nil {
					return werr
				}
				if err != nil {
					return invalidPlan{err}
				}
				return nil
			}
			if err != nil {
				return err
			}
			for _, w := range p.Warnings {
				fmt.Fprintln(c.App.ErrWriter, "warning:", w)
			}
			printPlan(c.App.Writer, p)
			return nil
		})
}

// invalidPlan is a plan error already printed (as JSON): exit 2, say nothing.
type invalidPlan struct{ error }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printPlan prints the resolved table: what will be captured where.
func printPlan(w io.Writer, p *plans.Plan) {
	n := len(p.Captures())
	fmt.Fprintf(w, "plan %s: case %s -> %s/, %s, %s\n\n", p.File, p.Case, p.CaseDir(), plural(len(p.Hosts), "host"), plural(n, "capture"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tKIND\tTARGET\tPOINTS\tFILTER\tLIMITS\tFILE")
	for _, h := range p.Hosts {
		for _, c := range h.Captures {
			points := strings.Join(c.Points, ",")
			if c.Dir != plans.DirNone {
				points = "dir=" + string(c.Dir)
				if c.Stage != plans.StageNone {
					points += " stage=" + string(c.Stage)
				}
			}
			target := c.Target.String()
			file := c.File
			if c.Target.AutoUplink {
				target += " + uplink auto"
				file += " (+ its uplink's)"
			}
			filter := c.Filter.String()
			if filter == "" {
				filter = "(all)"
			}
			if c.ExcludeOwnSSH && h.Kind != plans.KindLocal {
				// The agent adds the exact exclusion once it knows the session.
				filter += " -ssh"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Kind, target, points, filter, limits(c), file)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\n-ssh: casecap's own SSH traffic to the host is left out (exclude_own_ssh: false keeps it)")
	seen := map[string]bool{}
	for _, h := range p.Hosts {
		where := h.Address
		if h.Kind == plans.KindLocal {
			where = "this machine"
		} else {
			user, port := h.SSH.User, h.SSH.Port
			if user == "" {
				user = "(ssh config or root)"
			}
			where = fmt.Sprintf("%s@%s", user, h.Address)
			if port != 0 {
				where += fmt.Sprintf(":%d", port)
			}
		}
		line := fmt.Sprintf("%s: %s, datastore %s", h.Name, where, h.Datastore)
		if !seen[line] {
			fmt.Fprintln(w, line)
			seen[line] = true
		}
	}
}

func limits(c *plans.Capture) string {
	parts := []string{shortDuration(c.Duration)}
	if c.Snaplen > 0 {
		parts = append(parts, fmt.Sprintf("snap %d", c.Snaplen))
	}
	if c.MaxPackets > 0 {
		parts = append(parts, fmt.Sprintf("%d pkts", c.MaxPackets))
	}
	if c.MaxBytes > 0 {
		parts = append(parts, "max "+humanBytes(c.MaxBytes))
	}
	if c.MinFree > 0 {
		parts = append(parts, "keep "+humanBytes(c.MinFree)+" free")
	}
	return strings.Join(parts, " ")
}

// shortDuration prints 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
