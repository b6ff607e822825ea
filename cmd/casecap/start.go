package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
)

func startCommand() *cli.Command {
	return orchestrated("start", "start every capture together and return; captures stop themselves at the plan's duration",
		false, (*orchestrator.Orchestrator).Start,
		&cli.BoolFlag{Name: "allow-partial", Usage: "go on without hosts that fail before the start"})
}

func statusCommand() *cli.Command {
	return orchestrated("status", "per capture: state, packets, bytes, drops, file size", false, (*orchestrator.Orchestrator).Status)
}

func stopCommand() *cli.Command {
	return orchestrated("stop", "stop every capture together (idempotent)", false, (*orchestrator.Orchestrator).Stop)
}

func collectCommand() *cli.Command {
	return orchestrated("collect", "download every capture into the case folder, verified (resumable, idempotent)", true, (*orchestrator.Orchestrator).Collect)
}

// orchestrated builds a command that carries out one orchestrator method on
// the plan; collecting ones write into the case folder (and take --out).
func orchestrated(name, usage string, collects bool, do func(*orchestrator.Orchestrator, context.Context) (*orchestrator.Manifest, error), extra ...cli.Flag) *cli.Command {
	return planCommand(name, usage, "",
		func(c *cli.Context, _ string) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			// start arms and begins: a signal before the begin calls it off
			// and disarms every host (the orchestrator acts on it). The
			// other commands simply end, to be run again.
			ctx := c.Context
			sigs, stop := watchSignals()
			if name != "start" {
				stop()
				sigs = orchestrator.Signals{}
				var cancel context.CancelFunc
				ctx, cancel = cancelOnSignal(ctx)
				defer cancel()
			} else {
				defer stop()
			}
			s, err := newSession(c, p, collects, sigs)
			if err != nil {
				return err
			}
			defer s.close()
			m, err := do(s.orch, ctx)
			if errors.Is(err, orchestrator.ErrCalledOff) {
				fmt.Fprintln(c.App.ErrWriter, "casecap:", err)
			}
			return report(c, m, err)
		}, append(orchestrateFlags(collects)[1:], extra...)...)
}
