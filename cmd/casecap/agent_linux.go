//go:build linux

package main

import (
	"os"

	"github.com/urfave/cli/v2"

	agentcli "github.com/casecap/casecap/internal/agent/cli"
)

// runAgent makes casecap its own capture agent on the local host (no
// upload needed there): `casecap agent start JOB` and so on.
func runAgent(c *cli.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if code := agentcli.Main([]string{self, "agent"}, c.Args().Slice(), version, c.App.Writer, c.App.ErrWriter); code != 0 {
		return cli.Exit("", code)
	}
	return nil
}
