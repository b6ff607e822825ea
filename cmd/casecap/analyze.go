package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/analysis/casedir"
	"github.com/casecap/casecap/analysis/hops"
)

// analyzeCommand: casecap analyze CASE_DIR.
func analyzeCommand() *cli.Command {
	return &cli.Command{
		Name:      "analyze",
		Usage:     "where the case's packets were lost, and how long each hop took",
		ArgsUsage: "CASE_DIR",
		Description: "Finds each packet at every capture point that saw it (by what does not change on the way; tunnels\n" +
			"taken off, TCP matched by byte range), learns the path order from the data, and reports per hop:\n" +
			"packets, loss, duplicates, reorderings, latency (p50, p99, max) with the clocks' uncertainty,\n" +
			"loss per second and the flows that lost most. Loss is counted only inside both points' windows.",
		Flags: []cli.Flag{jsonFlag(),
			&cli.DurationFlag{Name: "window", Value: hops.DefaultWindow, Usage: "the longest latency looked for: a packet not at the next point within it is lost there"}},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} },
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{fmt.Sprintf("analyze needs exactly one CASE_DIR, got %d arguments", c.NArg())}
			}
			if c.Duration("window") <= 0 {
				return usageError{"--window must be positive"}
			}
			dir := c.Args().First()
			cd, err := casedir.Open(dir)
			if err != nil {
				if cd == nil {
					return usageError{err.Error()}
				}
				return err
			}
			for _, s := range cd.Skipped {
				fmt.Fprintf(c.App.ErrWriter, "casecap: left out %s (%s): %s\n", s.File, s.Host, s.Why)
			}
			r, err := hops.Analyze(cd, hops.Options{Window: c.Duration("window")})
			if err != nil {
				return fmt.Errorf("analyze %s: %w", dir, err)
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, r)
			}
			return r.WriteText(c.App.Writer)
		},
	}
}
