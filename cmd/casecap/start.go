package main

import "github.com/urfave/cli/v2"

func startCommand() *cli.Command {
	return planCommand("start", "start every capture together and return; captures stop themselves at the plan's duration [not built yet]", "", func(c *cli.Context, plan string) error {
		return notBuiltError{command: "casecap start", issue: 5}
	})
}
