package main

import "github.com/urfave/cli/v2"

func collectCommand() *cli.Command {
	return planCommand("collect", "download every capture into the case folder, verified (resumable, idempotent) [not built yet]", "", func(c *cli.Context, plan string) error {
		return notBuiltError{command: "casecap collect", issue: 5}
	})
}
