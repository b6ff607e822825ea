package main

import (
	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
)

// collectCommand: casecap collect PLAN.
func collectCommand() *cli.Command {
	return orchestrated(orchestratedCommand{name: "collect", usage: "download every capture into the case folder, verified (resumable, idempotent)",
		collects: true, do: (*orchestrator.Orchestrator).Collect})
}
