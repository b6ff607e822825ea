package agentproto

import "time"

// Facts are what `check` tells of a host, for preflight.
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
