package main

import "github.com/urfave/cli/v2"

func targetsCommand() *cli.Command {
	return planCommand("targets", "list what can be captured on each host [not built yet]", "", func(c *cli.Context, plan string) error {
		return notBuiltError{command: "casecap targets", issue: 6}
	})
}
