package main

import (
	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
)

// stopCommand: casecap stop PLAN.
func stopCommand() *cli.Command {
	return orchestrated(orchestratedCommand{name: "stop", usage: "stop every capture together (idempotent)",
		do: (*orchestrator.Orchestrator).Stop})
}
