package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v2"
)

// cpuProfileFlag writes a CPU profile of the whole command: how the figures
// in BENCHMARKS.md were explained (`casecap --cpuprofile F collect PLAN`,
// then `go tool pprof`). Hidden: it is for performance work.
func cpuProfileFlag() cli.Flag {
	return &cli.StringFlag{Name: "cpuprofile", Hidden: true, Usage: "write a CPU profile of the command to `FILE`"}
}

// startProfile starts the profile --cpuprofile asks for; stopProfile ends
// it (the app's After runs whatever the command returned).
func startProfile(c *cli.Context) error {
	p := c.String("cpuprofile")
	if p == "" {
		return nil
	}
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	profileFile = f
	return nil
}

var profileFile *os.File

func stopProfile(*cli.Context) error {
	if profileFile == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := profileFile.Close()
	profileFile = nil
	return err
}
