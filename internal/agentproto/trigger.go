package agentproto

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/casecap/casecap/plans/filter"
)

// Ring is a capture that keeps only its latest packets (the plan's ring:),
// in segment files it rotates, trimmed into the capture's one file when it
// stops: with a trigger, to [trigger - Keep, trigger + post); without one,
// to the last Keep before the stop.
type Ring struct {
	Keep         time.Duration `json:"keep,omitempty"`
	KeepBytes    uint64        `json:"keep_bytes,omitempty"` // a cap on what the ring holds
	Segment      time.Duration `json:"segment,omitempty"`
	SegmentBytes uint64        `json:"segment_bytes,omitempty"`
}

// Rule is one of the plan's until: rules that this host watches. One of
// Packet, DropsMin, Command or LogFile is set.
type Rule struct {
	ID       string        `json:"id"`               // the plan's words, e.g. "until[0] (plan.yaml:12) packet tcpport 443"
	Packet   *PacketRule   `json:"packet,omitempty"` // a packet a capture of the host sees
	DropsMin uint64        `json:"drops_min,omitempty"`
	Command  string        `json:"command,omitempty"` // run with /bin/sh -c every Every; fires on exit 0
	Every    time.Duration `json:"every,omitempty"`
	LogFile  string        `json:"log_file,omitempty"` // a new line of the file matching LogMatch (RE2)
	LogMatch string        `json:"log_match,omitempty"`
}

// PacketRule is a packet rule's filter, structured or raw as in the plan:
// the capture's own filter and this one, both, select the packets that
// fire it.
type PacketRule struct {
	Filter filter.Filter `json:"filter"`
}

// TriggerSource says who fired a trigger.
type TriggerSource string

// Trigger sources.
const (
	TriggerRule   TriggerSource = "rule"   // one of the host's rules
	TriggerManual TriggerSource = "manual" // casecap trigger
	TriggerPeer   TriggerSource = "peer"   // another host's, passed on by casecap
)

// Trigger is the moment every capture of a case stops around: At on the
// host's clock where it is recorded. Host and Rule say where it fired and
// why; the earliest trigger a host hears of is the one it keeps.
type Trigger struct {
	At     time.Time     `json:"at"`
	Host   string        `json:"host"`
	Source TriggerSource `json:"source"`
	Rule   string        `json:"rule,omitempty"`
	Note   string        `json:"note,omitempty"`
	// Stop is when this host's captures stop: At + the plan's post.
	Stop time.Time `json:"stop,omitzero"`
	// Heard is when this host's agent learned of it (its clock): later
	// than At by the time a trigger from elsewhere took to come.
	Heard time.Time `json:"heard,omitzero"`
	// Packet is the packet that fired a packet rule.
	Packet *TriggerPacket `json:"packet,omitempty"`
}

// TriggerPacket is the packet that fired a packet rule, as the capture
// that saw it would record it.
type TriggerPacket struct {
	Capture  string    `json:"capture"`   // the capture's name (host.port.points)
	LinkType uint16    `json:"link_type"` // pcap link type of Data
	Time     time.Time `json:"time"`
	Length   int       `json:"length"` // on the wire
	Outgoing bool      `json:"outgoing"`
	Data     []byte    `json:"data"` // as captured (snap length)
}

// Earlier says whether t should replace cur: the earliest trigger wins, so
// that every host, hearing of them in any order, keeps the same one.
func (t *Trigger) Earlier(cur *Trigger) bool {
	return t != nil && (cur == nil || t.At.Before(cur.At))
}

// String is the trigger in a line of the summary.
func (t *Trigger) String() string {
	s := fmt.Sprintf("%s on %s at %s", t.Source, t.Host, t.At.UTC().Format("15:04:05.000000"))
	if t.Rule != "" {
		s += ": " + t.Rule
	}
	if t.Note != "" {
		s += fmt.Sprintf(" (%s)", t.Note)
	}
	return s
}

// RingStatus is what a ring capture holds on disk while it runs.
type RingStatus struct {
	Segments int       `json:"segments"`
	Bytes    int64     `json:"bytes"`
	Oldest   time.Time `json:"oldest,omitzero"` // its oldest packet
	Deleted  int       `json:"deleted"`         // segments rotated out so far
}

// TriggerLine is the trigger request (casecap passing on another host's
// trigger, or casecap trigger's), newline ended.
func TriggerLine(t Trigger) []byte {
	b, _ := json.Marshal(t)
	return append(append([]byte(LineTrigger+" "), b...), '\n')
}

// TriggerAnswer answers a trigger request: the trigger the host keeps.
type TriggerAnswer struct {
	Running bool     `json:"running"`
	Trigger *Trigger `json:"trigger,omitempty"`
}
