// Command casecap-agent is casecap's capture agent, deployed by the
// orchestrator to each host's datastore and run there over SSH. It is built
// static (CGO_ENABLED=0) for linux/amd64 and linux/arm64 and stays small: it
// links the capture engine and nothing of the orchestrator. Its commands are
// in package agent/cli.
package main

import (
	"os"

	"github.com/casecap/casecap/internal/agent/cli"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	os.Exit(cli.Main([]string{self}, os.Args[1:], version, os.Stdout, os.Stderr))
}
