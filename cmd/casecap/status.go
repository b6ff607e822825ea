package main

import "github.com/urfave/cli/v2"

func statusCommand() *cli.Command {
	return planCommand("status", "per capture: state, packets, bytes, drops, file size, elapsed [not built yet]", "", func(c *cli.Context, plan string) error {
		return notBuiltError{command: "casecap status", issue: 5}
	})
}
