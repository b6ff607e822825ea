package main

import "github.com/urfave/cli/v2"

func collectCommand() *cli.Command {
	return planCommand("collect", "download every capture into the case folder, verified (resumable, idempotent)", "",
		func(c *cli.Context, _ string) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			s, err := newSession(c, p, true)
			if err != nil {
				return err
			}
			defer s.close()
			ctx, cancel := cancelOnInterrupt(c.Context)
			defer cancel()
			m, err := s.orch.Collect(ctx)
			return report(c, m, err)
		}, orchestrateFlags(true)[1:]...)
}
