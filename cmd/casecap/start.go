package main

import "github.com/urfave/cli/v2"

func startCommand() *cli.Command {
	return planCommand("start", "start every capture together and return; captures stop themselves at the plan's duration", "",
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
			m, err := s.orch.Start(ctx)
			return report(c, m, err)
		}, append(orchestrateFlags(false)[1:], &cli.BoolFlag{Name: "allow-partial", Usage: "go on without hosts that fail before the start"})...)
}
