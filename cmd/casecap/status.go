package main

import (
	"github.com/casecap/casecap/orchestrator"
	"github.com/urfave/cli/v2"
)

// statusCommand: casecap status PLAN.
func statusCommand() *cli.Command {
	return orchestrated(orchestratedCommand{name: "status", usage: "per capture: state, packets, bytes, drops, file size",
		do: (*orchestrator.Orchestrator).Status})
}
