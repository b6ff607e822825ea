package main

import "github.com/urfave/cli/v2"

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "preflight, deploy, start together, watch, stop together, collect [not built yet]",
		ArgsUsage: "PLAN | --demo",
		Flags: []cli.Flag{
			jsonFlag(),
			&cli.BoolFlag{Name: "demo", Usage: "run the embedded local demo plan (examples/local-demo.yaml) instead of PLAN"},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} },
		Action: func(c *cli.Context) error {
			if !c.Bool("demo") {
				if _, err := planArg(c); err != nil {
					return err
				}
			} else if c.NArg() > 0 {
				return usageError{"run takes either PLAN or --demo, not both"}
			}
			return notBuiltError{command: "casecap run", issue: 5}
		},
	}
}
