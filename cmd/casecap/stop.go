package main

import "github.com/urfave/cli/v2"

func stopCommand() *cli.Command {
	return planCommand("stop", "stop every capture together (idempotent)", "",
		func(c *cli.Context, _ string) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			s, err := newSession(c, p, false)
			if err != nil {
				return err
			}
			defer s.close()
			ctx, cancel := cancelOnInterrupt(c.Context)
			defer cancel()
			m, err := s.orch.Stop(ctx)
			return report(c, m, err)
		}, orchestrateFlags(false)[1:]...)
}
