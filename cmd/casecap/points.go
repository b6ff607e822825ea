package main

import "github.com/urfave/cli/v2"

func pointsCommand() *cli.Command {
	return &cli.Command{
		Name:  "points",
		Usage: "list the capture points casecap knows, with what they mean [not built yet]",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(*cli.Context) error {
			return notBuiltError{command: "casecap points", issue: 3}
		},
	}
}
