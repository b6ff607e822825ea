package main

import (
	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
)

// startCommand: casecap start PLAN. A signal before the begin calls the
// start off and disarms every host (the orchestrator acts on it).
func startCommand() *cli.Command {
	return orchestrated(orchestratedCommand{name: "start", usage: "start every capture together and return; captures stop themselves at the plan's duration",
		do: (*orchestrator.Orchestrator).Start, signals: true,
		flags: []cli.Flag{&cli.BoolFlag{Name: "allow-partial", Usage: "go on without hosts that fail before the start"}}})
}
