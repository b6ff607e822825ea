package agent

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// Check gathers this host's facts.
func Check(version string) agentproto.Facts {
	f := agentproto.Facts{Agent: version, OS: runtime.GOOS, Arch: runtime.GOARCH, Kernel: kernelRelease(), UID: os.Geteuid(), Time: time.Now()}
	f.Hostname, _ = os.Hostname()
	f.Tcpdump, _ = exec.LookPath("tcpdump")
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		f.Interfaces = append(f.Interfaces, agentproto.Interface{Name: i.Name, Index: i.Index, MAC: i.HardwareAddr.String(), Up: i.Flags&net.FlagUp != 0})
	}
	return f
}
