package agent

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"time"
)

// Facts are what preflight needs to know about a host.
type Facts struct {
	Agent      string      `json:"agent"`
	OS         string      `json:"os"`
	Arch       string      `json:"arch"`
	Kernel     string      `json:"kernel"`
	Hostname   string      `json:"hostname"`
	UID        int         `json:"uid"`
	Time       time.Time   `json:"time"` // this host's clock, when checked
	Tcpdump    string      `json:"tcpdump,omitempty"`
	Interfaces []Interface `json:"interfaces"`
}

// Interface is one network interface of the host.
type Interface struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	MAC   string `json:"mac,omitempty"`
	Up    bool   `json:"up"`
}

// Check gathers this host's facts.
func Check(version string) Facts {
	f := Facts{Agent: version, OS: runtime.GOOS, Arch: runtime.GOARCH, Kernel: kernelRelease(), UID: os.Geteuid(), Time: time.Now()}
	f.Hostname, _ = os.Hostname()
	f.Tcpdump, _ = exec.LookPath("tcpdump")
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		f.Interfaces = append(f.Interfaces, Interface{Name: i.Name, Index: i.Index, MAC: i.HardwareAddr.String(), Up: i.Flags&net.FlagUp != 0})
	}
	return f
}
