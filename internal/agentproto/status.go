package agentproto

import (
	"hash"
	"hash/crc32"
	"strconv"
	"time"
)

// AgentState is where an agent (or the ssh-mode script) is.
type AgentState string

// Agent states.
const (
	StateArming  AgentState = "arming"
	StateArmed   AgentState = "armed" // every capture armed, none begun
	StateRunning AgentState = "running"
	StateDone    AgentState = "done"
	StateFailed  AgentState = "failed"
)

// Ended says whether an agent in this state has nothing left to do.
func (s AgentState) Ended() bool { return s == StateDone || s == StateFailed }

// Status is what status.json holds.
type Status struct {
	Case    string     `json:"case"`
	Host    string     `json:"host"`
	PID     int        `json:"pid"`
	Agent   string     `json:"agent"` // version; "casecap-ssh" for the ssh-mode script
	State   AgentState `json:"state"`
	Updated time.Time  `json:"updated"`
	Error   string     `json:"error,omitempty"`
	// BeginLate is how long after its instant a begin request arrived: the
	// packets read before it were not kept.
	BeginLate time.Duration `json:"begin_late_ns,omitempty"`
	// Trigger is the trigger this host's captures stop around, once one
	// fired here or casecap passed one on.
	Trigger  *Trigger        `json:"trigger,omitempty"`
	Captures []CaptureStatus `json:"captures"`
	// Alive is filled in by `status` when it reads the file: whether the
	// agent that wrote it still runs.
	Alive bool `json:"alive"`
}

// Finished says whether every capture of the status has ended.
func (s *Status) Finished() bool {
	if s == nil || len(s.Captures) == 0 {
		return false
	}
	for _, c := range s.Captures {
		if !c.State.Ended() {
			return false
		}
	}
	return true
}

// Over says whether the agent is done and every capture has ended: the
// status will not change again.
func (s *Status) Over() bool { return s != nil && s.State.Ended() && s.Finished() }

// CaptureState is where one capture is.
type CaptureState string

// Capture states.
const (
	CaptureArmed     CaptureState = "armed"     // ready, waiting for its window
	CaptureCapturing CaptureState = "capturing" // inside its window
	CaptureStopped   CaptureState = "stopped"
	CaptureFailed    CaptureState = "failed"
)

// Ended says whether a capture in this state has ended.
func (s CaptureState) Ended() bool { return s == CaptureStopped || s == CaptureFailed }

// StopReason says why a capture ended.
type StopReason string

// Stop reasons.
const (
	StopWindowEnd   StopReason = "window-end"
	StopPacketCount StopReason = "packet-count"
	StopMaxBytes    StopReason = "max-bytes"
	StopMinFree     StopReason = "min-free"
	StopRequest     StopReason = "stop-request"
	StopSignal      StopReason = "signal"
	StopError       StopReason = "error"
	// StopInterfaceGone: the captured interface was removed from the host
	// (the capture fails: what it had is kept).
	StopInterfaceGone StopReason = "interface-gone"
	// StopTrigger: a trigger fired (here or on another host) and the
	// capture ran on for the plan's post.
	StopTrigger StopReason = "trigger"
	// StopDisarmed: stopped before its window began (a start that was
	// called off): it captured nothing and keeps no file, which would only
	// be in the way of the next start of the case.
	StopDisarmed StopReason = "disarmed"
)

// CaptureStatus is one capture's progress.
type CaptureStatus struct {
	Name        string       `json:"name"`
	File        string       `json:"file"`
	State       CaptureState `json:"state"`
	Filter      string       `json:"filter"` // the resolved filter, pcap-filter syntax
	Start       time.Time    `json:"start"`
	Stop        time.Time    `json:"stop"`
	Packets     uint64       `json:"packets"` // written to the file
	Bytes       uint64       `json:"bytes"`   // captured bytes written
	Size        int64        `json:"size"`    // file size so far
	Drops       uint64       `json:"drops"`   // dropped by the kernel (ring full)
	Received    uint64       `json:"received"`
	FirstPacket time.Time    `json:"first_packet,omitzero"`
	LastPacket  time.Time    `json:"last_packet,omitzero"`
	StoppedAt   time.Time    `json:"stopped_at,omitzero"`
	StopReason  StopReason   `json:"stop_reason,omitempty"`
	Error       string       `json:"error,omitempty"`
	// CRC32C is the agent's checksum of the whole file (Castagnoli, hex),
	// computed as it is written, for casecap to verify its download: at
	// SHA-NI speed, a SHA-256 of every byte was 40% of the capture's CPU.
	// SHA256 is set instead where the host computes one (ssh mode on ESXi);
	// casecap computes the SHA-256 of every file it collects either way.
	CRC32C string `json:"crc32c,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// On ESXi: the pktcap-uw command line run, and what it could not honour.
	Command string `json:"command,omitempty"`
	Note    string `json:"note,omitempty"`
	// Ring is what a ring capture holds while it runs.
	Ring *RingStatus `json:"ring,omitempty"`
}

// castagnoli is CRC-32C's table: the polynomial CPUs compute in hardware.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// NewCRC32C returns the hash CaptureStatus.CRC32C is made with.
func NewCRC32C() hash.Hash32 { return crc32.New(castagnoli) }

// CRC32CHex formats a CRC-32C as CaptureStatus.CRC32C carries it.
func CRC32CHex(h hash.Hash32) string {
	s := strconv.FormatUint(uint64(h.Sum32()), 16)
	return "00000000"[len(s):] + s
}
