package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/atomicfile"
	"github.com/casecap/casecap/plans"
)

// Manifest is what a command did, host by host and capture by capture:
// written as manifest.json in the case folder by run and collect, and
// printed by every command with --json.
type Manifest struct {
	Case     string            `json:"case"`
	Casecap  string            `json:"casecap"`
	Command  string            `json:"command"`
	Plan     string            `json:"plan,omitempty"` // the plan as run, in the case folder
	CaseDir  string            `json:"case_dir,omitempty"`
	Begin    time.Time         `json:"begin,omitzero"`
	Hosts    []ManifestHost    `json:"hosts"`
	Captures []ManifestCapture `json:"captures"`
	// Trigger is what every capture stopped around, when one fired.
	Trigger *ManifestTrigger `json:"trigger,omitempty"`
	Errors  []string         `json:"errors,omitempty"`
}

// ManifestTrigger is the trigger of a run with until: rules or rings.
type ManifestTrigger struct {
	Host   string        `json:"host"`   // where it fired (or was fired by hand)
	Source string        `json:"source"` // rule, or manual (casecap trigger)
	Rule   string        `json:"rule,omitempty"`
	Note   string        `json:"note,omitempty"` // the matching log line, the command's output, casecap trigger's --note
	At     time.Time     `json:"at"`             // on casecap's clock
	AtHost time.Time     `json:"at_host"`        // on the host's clock, as its capture files are stamped
	PostNs time.Duration `json:"post_ns"`
	// Packet, for a packet rule: the capture that saw it, and the file
	// (in the case folder) that holds it alone.
	PacketCapture string `json:"packet_capture,omitempty"`
	PacketFile    string `json:"packet_file,omitempty"`
}

// TriggerPacketFile holds the packet that fired a packet rule.
const TriggerPacketFile = "trigger.pcapng"

// ManifestHost is one host.
type ManifestHost struct {
	Name          string        `json:"name"`
	Address       string        `json:"address,omitempty"`
	Kind          plans.Kind    `json:"kind"`
	OS            string        `json:"os,omitempty"`
	Arch          string        `json:"arch,omitempty"`
	Mode          Mode          `json:"mode,omitempty"`  // how it captured: agent, or ssh (ESXi refused the agent)
	ClockOffsetNs time.Duration `json:"clock_offset_ns"` // host clock minus casecap's, as measured
	// ClockUncertaintyNs bounds the offset's error (half the best probe's
	// round trip); ClockCorrected: the offset was larger, so instants told
	// to the host were moved by it (otherwise its clock was taken as right).
	ClockUncertaintyNs time.Duration `json:"clock_uncertainty_ns"`
	ClockCorrected     bool          `json:"clock_corrected"`
	RTTNs              time.Duration `json:"rtt_ns"`
	BeginLateNs        time.Duration `json:"begin_late_ns,omitempty"`
	Reachable          bool          `json:"reachable"`
	Note               string        `json:"note,omitempty"` // what the reader of the figures should know
	// TriggerLateNs is how long after the trigger fired this host heard
	// of it (its own rule: about 0); a ring that rotated in between no
	// longer held the trigger's start.
	TriggerLateNs time.Duration `json:"trigger_late_ns,omitempty"`
	Phase         string        `json:"failed_phase,omitempty"`
	Error         string        `json:"error,omitempty"`
}

// ManifestCapture is one capture.
type ManifestCapture struct {
	File       string    `json:"file"`
	Host       string    `json:"host"`
	Target     string    `json:"target"`
	Points     []string  `json:"points,omitempty"`
	Filter     string    `json:"filter"` // as the agent resolved it
	Start      time.Time `json:"start,omitzero"`
	Stop       time.Time `json:"stop,omitzero"`
	Packets    uint64    `json:"packets"`
	Bytes      uint64    `json:"bytes"`
	Drops      uint64    `json:"drops"`
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256,omitempty"` // of the collected file (verified against the host's checksum)
	State      string    `json:"state"`            // the agent's: armed, capturing, stopped, failed; unknown if never heard
	StopReason string    `json:"stop_reason,omitempty"`
	Collected  bool      `json:"collected"`
	// Verified: the collected file matched the checksum its agent
	// recorded when it closed the file. A capture whose agent died before
	// it finished is collected as it was on the host, unverified.
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
	// Ring is what a ring capture holds while it runs.
	Ring *agentproto.RingStatus `json:"ring,omitempty"`
	// Note says what a reader of the file should know: what pktcap-uw's
	// command line could not honour, a ring that no longer held the
	// trigger's start.
	Note string `json:"note,omitempty"`
}

// manifest sums up the hosts' state.
func (o *Orchestrator) manifest(command string) *Manifest {
	p := o.opt.Plan
	m := &Manifest{Case: p.Case, Casecap: o.opt.Version, Command: command}
	for _, h := range o.hosts {
		mh := ManifestHost{Name: h.name(), Address: h.plan.Address, Kind: h.facts.kind, OS: h.facts.os, Arch: h.facts.arch,
			Reachable: h.conn != nil && h.run.status != nil}
		clock := h.facts.clock
		if r := h.run.record; r != nil {
			if h.drv != nil {
				mh.Mode, mh.Note = h.drv.mode(), h.drv.note()
			}
			mh.OS, mh.Arch, mh.Kind = r.OS, r.Arch, r.Kind
			clock = clockReading{offset: r.ClockOffset, rtt: r.RTT} // as the captures were begun
		}
		mh.ClockOffsetNs, mh.ClockUncertaintyNs, mh.ClockCorrected, mh.RTTNs = clock.offset, clock.uncertainty(), clock.corrected(), clock.rtt
		if h.run.status != nil {
			mh.BeginLateNs = h.run.status.BeginLate
			if t := h.run.status.Trigger; t != nil && !t.Heard.IsZero() {
				mh.TriggerLateNs = max(t.Heard.Sub(t.At), 0)
			}
		}
		if h.err != nil {
			mh.Phase, mh.Error = string(h.err.Phase), h.err.Err.Error()
			m.Errors = append(m.Errors, h.err.Error())
		}
		m.Hosts = append(m.Hosts, mh)
		for _, c := range h.facts.captures {
			mc := ManifestCapture{File: c.File, Host: h.name(), Target: c.Target.String(), Points: c.Points, Filter: c.Filter.Expression(), State: "unknown"}
			if h.run.status != nil {
				for _, s := range h.run.status.Captures {
					if path.Base(s.File) != c.File {
						continue
					}
					mc.Filter, mc.Start, mc.Stop = s.Filter, s.Start, s.Stop
					// The agreed start, on casecap's clock.
					if b := s.Start.Add(-clock.correction()); !s.Start.IsZero() && (m.Begin.IsZero() || b.Before(m.Begin)) {
						m.Begin = b
					}
					mc.Packets, mc.Bytes, mc.Drops, mc.Size = s.Packets, s.Bytes, s.Drops, s.Size
					mc.SHA256, mc.State, mc.StopReason, mc.Error, mc.Ring, mc.Note = s.SHA256, string(s.State), string(s.StopReason), s.Error, s.Ring, s.Note
				}
			}
			if sha, ok := h.run.collected[c.File]; ok {
				// The manifest's SHA-256 is of the file as collected and
				// verified against the host's checksum.
				mc.Collected, mc.Verified, mc.SHA256 = true, !h.run.asIs[c.File], sha
				if h.run.asIs[c.File] {
					mc.StopReason, mc.Error = agentGoneReason, errAsIs.Error()
				}
			}
			m.Captures = append(m.Captures, mc)
		}
	}
	if t := o.earliestTrigger(o.hosts); t != nil {
		m.Trigger = &ManifestTrigger{Host: t.Host, Source: string(t.Source), Rule: t.Rule, Note: t.Note, At: t.Local, AtHost: t.At, PostNs: p.Post}
		if t.Packet != nil {
			m.Trigger.PacketCapture, m.Trigger.PacketFile = t.Packet.Capture, TriggerPacketFile
		}
	}
	return m
}

// agentGoneReason is the stop reason of a capture whose agent died first.
const agentGoneReason = "agent-gone"

var errAsIs = errors.New("the agent ended before this capture did (killed, or the host rebooted): collected as it was on the host, not verified against a final checksum; its last packets may be cut short")

// writeCaseFolder writes manifest.json and the plan as run into the case
// folder. A failure is the command's: it is added to the manifest's errors
// (so the summary and --json say it) and returned.
func (o *Orchestrator) writeCaseFolder(m *Manifest) error {
	dir := o.LocalCaseDir()
	m.CaseDir, m.Plan = dir, "plan.yaml"
	failed := func(err error) error {
		if err == nil {
			return nil
		}
		err = fmt.Errorf("the case folder is incomplete: %w", err)
		m.Errors = append(m.Errors, err.Error())
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return failed(err)
	}
	// The plan first, so that the manifest can say if it is missing.
	planErr := failed(writeFileAtomic(filepath.Join(dir, "plan.yaml"), o.opt.Plan.Source))
	if t := o.earliestTrigger(o.hosts); t != nil && t.Packet != nil {
		planErr = errors.Join(planErr, failed(writeTriggerPacket(filepath.Join(dir, TriggerPacketFile), t.Packet)))
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(dir, "manifest.json"), append(b, '\n'))
	}
	return errors.Join(planErr, failed(err))
}

// writeFileAtomic writes a file of the case folder whole or not at all,
// synced (atomicfile.WriteDurable).
func writeFileAtomic(p string, data []byte) error {
	return atomicfile.WriteDurable(p, bytes.NewReader(data), 0o640)
}
