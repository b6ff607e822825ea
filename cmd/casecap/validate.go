package main

import "github.com/urfave/cli/v2"

func validateCommand() *cli.Command {
	return planCommand("validate", "checks the plan and prints the resolved captures; touches no host [not built yet]", "", func(c *cli.Context, plan string) error {
		return notBuiltError{command: "casecap validate", issue: 3}
	})
}
