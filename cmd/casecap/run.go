package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
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
			if c.Bool("demo") {
				demoCleanup(c, p, err)
			}
			return report(c, m, err)
		},
	}
}

// demoCleanup removes the demo's working copy from its datastore on this
// machine once the case folder holds it, collected and verified: a demo
// leaves nothing behind but ./Case_demo-<time>/. A run that failed keeps
// it, and says where it is.
func demoCleanup(c *cli.Context, p *plans.Plan, runErr error) {
	ds := p.Hosts[0].Datastore
	copies := []string{filepath.Join(ds, p.CaseDir()), filepath.Join(ds, ".casecap", "cases", p.Case)}
	if runErr != nil {
		fmt.Fprintf(c.App.ErrWriter, "the demo's working copy is kept in %s and %s\n", copies[0], copies[1])
		return
	}
	for _, dir := range copies {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "could not remove the demo's working copy %s: %v\n", dir, err)
		}
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
