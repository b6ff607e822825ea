package main

import "github.com/urfave/cli/v2"

func stopCommand() *cli.Command {
	return planCommand("stop", "stop every capture together (idempotent) [not built yet]", "", func(c *cli.Context, plan string) error {
		return notBuiltError{command: "casecap stop", issue: 5}
	})
}
