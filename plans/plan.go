package plans

import (
	"strconv"
	"time"

	"github.com/casecap/casecap/plans/filter"
)

// Schema limits and defaults.
const (
	DefaultDuration = 10 * time.Minute
	MaxDuration     = 24 * time.Hour // nothing runs forever
	DefaultSnaplen  = 0              // whole packets
	MinSnaplen      = 24
	MaxSnaplen      = 262144
	CaseDirPrefix   = "Case_"
	MaxBuffer       = 1 << 30 // a capture's kernel buffer
)

// Plan is a validated, compiled capture plan.
type Plan struct {
	File        string  `json:"file"`
	Version     int     `json:"version"`
	Case        string  `json:"case"`
	Description string  `json:"description,omitempty"`
	Hosts       []*Host `json:"hosts"`
	// Until are the trigger rules, Post how long after one fires every
	// capture goes on (issue 15; see until.go).
	Until    []Rule        `json:"until,omitempty"`
	Post     time.Duration `json:"post,omitempty"`
	Warnings []Diag        `json:"warnings,omitempty"`
	Source   []byte        `json:"-"` // the plan as written, copied into the case folder
}

// CaseDir is the case folder's name, local and remote: Case_<case>.
func (p *Plan) CaseDir() string { return CaseDirPrefix + p.Case }

// Captures lists every capture of every host, in plan order.
func (p *Plan) Captures() []*Capture {
	var all []*Capture
	for _, h := range p.Hosts {
		all = append(all, h.Captures...)
	}
	return all
}

// Kind is what a host is.
type Kind string

// Host kinds.
const (
	KindAuto  Kind = "auto" // detected at preflight
	KindESXi  Kind = "esxi"
	KindLinux Kind = "linux"
	KindLocal Kind = "local" // this machine, no SSH
)

// Host is one host of the plan.
type Host struct {
	Name      string     `json:"name"`
	Address   string     `json:"address,omitempty"`
	Kind      Kind       `json:"kind"`
	Datastore string     `json:"datastore"`
	SSH       SSH        `json:"ssh"`
	Captures  []*Capture `json:"captures"`
	Line      int        `json:"line"`
}

// SSH says how to reach a host. Secrets are never here: PasswordEnv names an
// environment variable that holds the password.
type SSH struct {
	User           string        `json:"user"`
	Port           int           `json:"port"`
	IdentityFile   string        `json:"identity_file,omitempty"`
	KnownHosts     string        `json:"known_hosts,omitempty"`
	PasswordEnv    string        `json:"password_env,omitempty"`
	Jump           string        `json:"jump,omitempty"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
	Keepalive      time.Duration `json:"keepalive"`
}

// TargetKind is what a capture is attached to.
type TargetKind string

// Target kinds. TargetNone is a standalone ESXi capture point (Drop, ...).
const (
	TargetSwitchport TargetKind = "switchport"
	TargetUplink     TargetKind = "uplink"
	TargetVmk        TargetKind = "vmk"
	TargetVM         TargetKind = "vm"
	TargetDVFilter   TargetKind = "dvfilter"
	TargetInterface  TargetKind = "interface"
	TargetNone       TargetKind = "none"
)

// esxiOnly reports whether a target kind exists only on ESXi.
func (k TargetKind) esxiOnly() bool { return k != TargetInterface }

// Captures says whether a host of this kind captures on targets of kind t:
// Linux (and local) hosts on interfaces, ESXi hosts on everything else; a
// host of kind auto on either. It is the one rule for both validate (the
// kind a plan declares) and preflight (the kind casecap finds).
func (k Kind) Captures(t TargetKind) bool {
	switch k {
	case KindLinux, KindLocal:
		return !t.esxiOnly()
	case KindESXi:
		return t.esxiOnly()
	}
	return true
}

// Target is where a capture is attached.
type Target struct {
	Kind       TargetKind `json:"kind"`
	Switchport uint32     `json:"switchport,omitempty"`
	Name       string     `json:"name,omitempty"` // uplink, vmk, dvfilter or interface name
	VM         string     `json:"vm,omitempty"`
	VNIC       string     `json:"vnic,omitempty"`
	// AutoUplink asks preflight to add a capture on the team uplink of this
	// VM or switchport (`uplink: auto`), at UplinkPoints.
	AutoUplink   bool     `json:"auto_uplink,omitempty"`
	UplinkPoints []string `json:"uplink_points,omitempty"`
}

// String is the target as a person would say it.
func (t Target) String() string {
	switch t.Kind {
	case TargetSwitchport:
		return "switchport " + strconv.FormatUint(uint64(t.Switchport), 10)
	case TargetVM:
		return "vm " + t.VM + " vnic " + t.VNIC
	case TargetNone:
		return "(standalone)"
	}
	return string(t.Kind) + " " + t.Name
}

// Direction is the ESXi --dir value.
type Direction string

// ESXi directions (pktcap-uw --dir 0, 1, 2).
const (
	DirNone   Direction = ""
	DirInput  Direction = "input"
	DirOutput Direction = "output"
	DirBoth   Direction = "inputAndOutput"
)

// Stage is the ESXi --stage value.
type Stage string

// ESXi stages (pktcap-uw --stage 0, 1).
const (
	StageNone Stage = ""
	StagePre  Stage = "pre"
	StagePost Stage = "post"
)

// Capture is one capture, fully resolved from the plan.
type Capture struct {
	Host   string `json:"host"`
	Target Target `json:"target"`
	// Points are ESXi capture points, or Linux directions (Rx, Tx).
	Points        []string      `json:"points,omitempty"`
	Dir           Direction     `json:"dir,omitempty"`
	Stage         Stage         `json:"stage,omitempty"`
	Filter        Filter        `json:"filter"`
	ExcludeOwnSSH bool          `json:"exclude_own_ssh"`
	Snaplen       int           `json:"snaplen"`
	Duration      time.Duration `json:"duration"`
	MaxPackets    uint64        `json:"max_packets,omitempty"`
	MaxBytes      uint64        `json:"max_bytes,omitempty"`
	MinFree       uint64        `json:"min_free,omitempty"`
	Buffer        uint64        `json:"buffer,omitempty"` // kernel ring; 0: the agent's default (4 MiB)
	Ring          *Ring         `json:"ring,omitempty"`   // keep only the latest packets (issue 15)
	Label         string        `json:"label,omitempty"`
	File          string        `json:"file"`
	Path          string        `json:"path"` // YAML path, for messages: hosts[0].captures[1]
	Line          int           `json:"line"`
	Col           int           `json:"-"`
}

// Filter is a capture's structured packet filter (see package filter).
type Filter = filter.Filter

// MAC is an Ethernet address in a filter.
type MAC = filter.MAC
