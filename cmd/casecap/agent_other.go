//go:build !linux

package main

import (
	"runtime"

	"github.com/urfave/cli/v2"
)

// runAgent: the capture agent runs on Linux only (on ESXi, the uploaded
// agent or ssh mode captures), so a casecap built for another system
// cannot be its own local agent, and says so.
func runAgent(*cli.Context) error {
	return cli.Exit("casecap agent: the local host captures on Linux only (this casecap runs on "+runtime.GOOS+")", 2)
}
