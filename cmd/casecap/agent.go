package main

import "github.com/urfave/cli/v2"

// agentCommand is `casecap agent ...`: casecap as the capture agent of the
// local host (runAgent, per system).
func agentCommand() *cli.Command {
	return &cli.Command{
		Name:            "agent",
		Usage:           "run the capture agent (used by casecap on the local host)",
		Hidden:          true,
		SkipFlagParsing: true,
		Action:          runAgent,
	}
}
