package main

import "github.com/urfave/cli/v2"

func statusCommand() *cli.Command {
	return planCommand("status", "per capture: state, packets, bytes, drops, file size", "",
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
			m, err := s.orch.Status(ctx)
			return report(c, m, err)
		}, orchestrateFlags(false)[1:]...)
}
