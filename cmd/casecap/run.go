package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "preflight, deploy, start together, watch, stop together (Ctrl-C stops early), collect",
		ArgsUsage: "PLAN | --demo",
		Flags: append(orchestrateFlags(true),
			&cli.BoolFlag{Name: "demo", Usage: "run the embedded local demo plan (examples/local-demo.yaml) instead of PLAN"},
			&cli.BoolFlag{Name: "allow-partial", Usage: "go on without hosts that fail before the start, instead of starting nothing"},
		),
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} },
		Action: func(c *cli.Context) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			sigs, stop := watchSignals()
			defer stop()
			s, err := newSession(c, p, true, sigs)
			if err != nil {
				return err
			}
			defer s.close()
			if c.Bool("demo") {
				// A quiet machine would give an empty demo: send it a few
				// labelled datagrams on the loopback (they never leave it).
				done := make(chan struct{})
				defer close(done)
				go demoTraffic(done)
			}
			m, err := s.orch.Run(c.Context)
			if errors.Is(err, orchestrator.ErrDetached) {
				fmt.Fprintf(c.App.ErrWriter, "stopped waiting: the captures end on their own; collect them later with: casecap collect %s\n", c.Args().First())
			}
			if errors.Is(err, orchestrator.ErrCalledOff) {
				fmt.Fprintln(c.App.ErrWriter, "casecap:", err)
			}
			return report(c, m, err)
		},
	}
}

// demoTraffic sends "casecap demo packet N" to 127.0.0.1:9 (discard) ten
// times a second until done.
func demoTraffic(done <-chan struct{}) {
	conn, err := net.Dial("udp", "127.0.0.1:9")
	if err != nil {
		return
	}
	defer conn.Close()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-done:
			return
		case <-t.C:
			fmt.Fprintf(conn, "casecap demo packet %d", n)
		}
	}
}
