package main

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
)

// triggerCommand: casecap trigger PLAN [--note TEXT].
func triggerCommand() *cli.Command {
	return orchestrated(orchestratedCommand{name: "trigger",
		usage: "fire the plan's trigger by hand, now: every capture keeps its ring's last keep and stops post later (a plan with ring: or until:)",
		doFlags: func(c *cli.Context) func(*orchestrator.Orchestrator, context.Context) (*orchestrator.Manifest, error) {
			note := c.String("note")
			return func(o *orchestrator.Orchestrator, ctx context.Context) (*orchestrator.Manifest, error) {
				return o.Trigger(ctx, note)
			}
		},
		flags: []cli.Flag{&cli.StringFlag{Name: "note", Usage: "why, in the manifest (e.g. \"user saw the stall\")"}}})
}
