package plans

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Ring is a capture that keeps only its latest packets, for a trigger to
// stop it around (issue 15): at least Keep (or KeepBytes) of them,
// rotating Segment (or SegmentBytes) at a time.
type Ring struct {
	Keep         time.Duration `json:"keep,omitempty"`
	KeepBytes    uint64        `json:"keep_bytes,omitempty"`
	Segment      time.Duration `json:"segment,omitempty"`
	SegmentBytes uint64        `json:"segment_bytes,omitempty"`
}

// Rule is one rule of a plan's `until`: when it fires on a host, every
// capture stops Post later. One of Packet, Drops, Command or Log is set.
type Rule struct {
	Packet   *Filter       `json:"packet,omitempty"`    // a packet a capture of the host sees
	DropsMin uint64        `json:"drops_min,omitempty"` // a capture's drop counter rising by this much
	Command  string        `json:"command,omitempty"`   // run on the host every Every; fires on exit 0
	Every    time.Duration `json:"every,omitempty"`
	LogFile  string        `json:"log_file,omitempty"` // a new line of this file matching LogMatch
	LogMatch string        `json:"log_match,omitempty"`
	Hosts    []string      `json:"hosts,omitempty"` // where it is watched; none: every host
	Path     string        `json:"path"`
	Line     int           `json:"line"`

	hostNodes []*yaml.Node // each of Hosts, for messages
}

// Trigger defaults and bounds.
const (
	DefaultPost  = 10 * time.Second
	MaxPost      = time.Hour
	DefaultEvery = 2 * time.Second
	MinSegment   = time.Second
)

// ring reads a ring: mapping.
func (d *decoder) ring(n *yaml.Node, p string) *Ring {
	r := &Ring{}
	ok := d.fields(n, p, map[string]field{
		"keep": func(v *yaml.Node, vp string) { r.Keep, _ = d.duration(v, vp, MinSegment, MaxDuration) },
		"keep_bytes": func(v *yaml.Node, vp string) {
			r.KeepBytes, _ = d.size(v, vp, 1<<20)
		},
		"segment": func(v *yaml.Node, vp string) { r.Segment, _ = d.duration(v, vp, MinSegment, MaxDuration) },
		"segment_bytes": func(v *yaml.Node, vp string) {
			r.SegmentBytes, _ = d.size(v, vp, 64<<10)
		},
	})
	if !ok {
		return nil
	}
	switch {
	case r.Keep == 0 && r.KeepBytes == 0:
		d.errf(n, p, "a ring needs keep (a time, e.g. 60s) or keep_bytes (e.g. 2GiB): how much to keep")
	case r.Segment == 0 && r.SegmentBytes == 0:
		d.errf(n, p, "a ring needs segment (e.g. 10s) or segment_bytes: the unit it rotates by")
	case r.Segment != 0 && r.SegmentBytes != 0:
		d.errf(n, p, "a ring rotates by segment or by segment_bytes, not both")
	case r.Segment != 0 && r.Keep != 0 && r.Segment >= r.Keep:
		d.errf(n, p, "segment %v is not shorter than keep %v: a ring keeps several segments", r.Segment, r.Keep)
	case r.SegmentBytes != 0 && r.KeepBytes != 0 && r.SegmentBytes >= r.KeepBytes:
		d.errf(n, p, "segment_bytes is not smaller than keep_bytes: a ring keeps several segments")
	}
	return r
}

// until reads the plan's until: list of rules (host names are checked
// once the hosts are read: checkRuleHosts).
func (d *decoder) until(n *yaml.Node, p string) []Rule {
	items, ok := d.list(n, p)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errf(n, p, "until has no rules: leave it out to capture for the plan's duration")
	}
	var rules []Rule
	for i, item := range items {
		rp := itemPath(p, i)
		r := Rule{Path: rp, Line: deref(item).Line}
		kinds := 0
		var everyNode *yaml.Node
		ok := d.fields(item, rp, map[string]field{
			"packet": func(v *yaml.Node, vp string) {
				kinds++
				d.fields(v, vp, map[string]field{"filter": func(f *yaml.Node, fp string) {
					x := d.filter(f, fp)
					r.Packet = &x
				}})
				if r.Packet == nil {
					d.errf(v, vp, "a packet rule needs a filter: the packets that fire it, e.g. { filter: { tcpport: 443 } }")
				}
			},
			"drops": func(v *yaml.Node, vp string) {
				kinds++
				d.fields(v, vp, map[string]field{"min": func(m *yaml.Node, mp string) {
					if x, ok := d.integer(m, mp, 1, 1<<62); ok {
						r.DropsMin = uint64(x)
					}
				}})
				if r.DropsMin == 0 {
					r.DropsMin = 1
				}
			},
			"command": func(v *yaml.Node, vp string) {
				kinds++
				if s, ok := d.text(v, vp); ok {
					if strings.TrimSpace(s) == "" {
						d.errf(v, vp, "the command is empty")
					}
					r.Command = s
				}
			},
			"every": func(v *yaml.Node, vp string) {
				everyNode = v
				r.Every, _ = d.duration(v, vp, 100*time.Millisecond, time.Hour)
			},
			"log": func(v *yaml.Node, vp string) {
				kinds++
				d.fields(v, vp, map[string]field{
					"file": func(f *yaml.Node, fp string) {
						if s, ok := d.text(f, fp); ok {
							if !path.IsAbs(s) {
								d.errf(f, fp, "log file %q: give the host's absolute path, e.g. /var/log/vmkernel.log", s)
							}
							r.LogFile = s
						}
					},
					"match": func(m *yaml.Node, mp string) {
						if s, ok := d.text(m, mp); ok {
							if _, err := regexp.Compile(s); err != nil {
								d.errf(m, mp, "match %q is not a regular expression (RE2): %v", s, err)
							}
							r.LogMatch = s
						}
					},
				})
				if r.LogFile == "" || r.LogMatch == "" {
					d.errf(v, vp, "a log rule needs file and match, e.g. { file: /var/log/vmkernel.log, match: \"link down\" }")
				}
			},
			"hosts": func(v *yaml.Node, vp string) {
				hs, ok := d.list(v, vp)
				if !ok {
					return
				}
				for j, h := range hs {
					if s, ok := d.text(h, itemPath(vp, j)); ok {
						r.Hosts, r.hostNodes = append(r.Hosts, s), append(r.hostNodes, h)
					}
				}
			},
		})
		if !ok {
			continue
		}
		switch {
		case kinds == 0:
			d.errf(item, rp, "a rule needs one of packet, drops, command or log")
			continue
		case kinds > 1:
			d.errf(item, rp, "a rule has one of packet, drops, command or log; use a rule for each")
			continue
		case everyNode != nil && r.Command == "":
			d.errf(everyNode, rp+".every", "every is how often a command rule runs; this rule runs none")
		case r.Command != "" && r.Every == 0:
			r.Every = DefaultEvery
		}
		rules = append(rules, r)
	}
	return rules
}

// checkRuleHosts reports rule hosts the plan does not have.
func (d *decoder) checkRuleHosts(p *Plan) {
	names := map[string]bool{}
	var all []string
	for _, h := range p.Hosts {
		names[h.Name] = true
		all = append(all, h.Name)
	}
	for _, r := range p.Until {
		for i, h := range r.Hosts {
			if !names[h] {
				d.errf(r.hostNodes[i], itemPath(r.Path+".hosts", i), "no host %q in the plan (it has %s)", h, strings.Join(all, ", "))
			}
		}
	}
}

// Triggered says whether the plan uses ring buffers or triggers.
func (p *Plan) Triggered() bool {
	if len(p.Until) > 0 {
		return true
	}
	for _, c := range p.Captures() {
		if c.Ring != nil {
			return true
		}
	}
	return false
}

// ErrTriggerSSHMode is an ESXi host's failure at check when it refuses to
// run the agent (execInstalledOnly) in a plan with rings or triggers: in
// ssh mode casecap drives pktcap-uw with BusyBox shell commands, and
// neither rotates files or reads a packet stream, so neither can keep a
// ring, window a capture to the packet, or watch for a packet.
var ErrTriggerSSHMode = fmt.Errorf("this host refuses to run casecap's agent (execInstalledOnly), and ring buffers and triggers (ring:, until:) need it: in ssh mode pktcap-uw and BusyBox cannot keep a ring or watch packets; capture this host without them, in another plan")
