package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/plans"
)

func pointsCommand() *cli.Command {
	return &cli.Command{
		Name:  "points",
		Usage: "list the capture points casecap knows, with what they mean",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if c.Bool("json") {
				return writeJSON(c.App.Writer, plans.Catalogue)
			}
			tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "POINT\tON\tFITS\tMEANING")
			for _, p := range plans.Catalogue {
				fits := make([]string, len(p.Targets))
				for i, t := range p.Targets {
					fits[i] = string(t)
					if t == plans.TargetNone {
						fits[i] = "standalone"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Platform, strings.Join(fits, ","), p.Meaning)
			}
			return tw.Flush()
		},
	}
}

func humanBytes(n uint64) string { return humanize.IBytes(n) }
