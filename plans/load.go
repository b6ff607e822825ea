package plans

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"

	"github.com/casecap/casecap/internal/suggest"
	"github.com/casecap/casecap/plans/filter"
)

// MaxPlanSize bounds what Load reads: a 200-host plan is ~100 KiB.
const MaxPlanSize = 16 << 20

// Load reads, validates and compiles the plan in file. An invalid plan
// returns an *Error listing every problem.
func Load(file string) (*Plan, error) {
	// A plan that cannot be read is bad input like one that is wrong: it
	// is reported the same way (exit 2, no host touched).
	unreadable := func(err error) error {
		return &Error{Diags: []Diag{{File: file, Message: "cannot read the plan: " + strings.TrimPrefix(err.Error(), "open "+file+": ")}}}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, unreadable(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPlanSize+1))
	if err != nil {
		return nil, unreadable(err)
	}
	if len(data) > MaxPlanSize {
		return nil, &Error{Diags: []Diag{{File: file, Message: fmt.Sprintf("the plan is larger than %d MiB", MaxPlanSize>>20)}}}
	}
	return Parse(file, data)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse validates and compiles a plan; file names it in messages.
func Parse(file string, data []byte) (*Plan, error) {
	return (&decoder{file: file}).parse(file, data)
}

func (d *decoder) parse(file string, data []byte) (*Plan, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Diags: []Diag{{File: file, Line: 1, Col: 1, Message: "the plan is empty"}}}
		}
		return nil, &Error{Diags: []Diag{syntaxDiag(file, data, err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Diags: []Diag{{File: file, Line: extra.Line, Col: extra.Column, Message: "a plan is one YAML document; remove the second one (after ---)"}}}
	}
	if len(root.Content) == 0 || isNull(root.Content[0]) {
		return nil, &Error{Diags: []Diag{{File: file, Line: 1, Col: 1, Message: "the plan is empty"}}}
	}
	p := d.plan(root.Content[0])
	if len(d.diags) > 0 {
		sortDiags(d.diags)
		return nil, &Error{Diags: d.diags}
	}
	sortDiags(d.warns)
	p.Warnings = d.warns
	p.Source = data
	return p, nil
}

// defaults are the settings that flow plan -> host -> capture.
type defaults struct {
	datastore     string
	datastoreBad  bool // given but invalid: already reported
	duration      time.Duration
	snaplen       int
	maxPackets    uint64
	maxBytes      uint64
	minFree       uint64
	filter        Filter
	excludeOwnSSH bool
	buffer        uint64
	ring          *Ring
	ssh           SSH
}

// limitFields are the keys allowed at every level (plan, host, capture).
func (d *decoder) limitFields(s *defaults) map[string]field {
	return map[string]field{
		"duration": func(v *yaml.Node, p string) {
			if x, ok := d.duration(v, p, time.Second, MaxDuration); ok {
				s.duration = x
			}
		},
		"snaplen": func(v *yaml.Node, p string) {
			x, ok := d.integer(v, p, 0, MaxSnaplen)
			switch {
			case !ok:
			case x > 0 && x < MinSnaplen:
				d.errf(v, p, "snaplen %d is too short to hold the headers: use 0 (whole packets) or at least %d", x, MinSnaplen)
			default:
				s.snaplen = int(x)
			}
		},
		"max_packets": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p, 1, 1<<62); ok {
				s.maxPackets = uint64(x)
			}
		},
		"max_bytes": func(v *yaml.Node, p string) {
			if x, ok := d.size(v, p, 64<<10); ok {
				s.maxBytes = x
			}
		},
		"buffer": func(v *yaml.Node, p string) {
			if x, ok := d.size(v, p, 1<<20); ok {
				if x > MaxBuffer {
					d.errf(v, p, "buffer %s is larger than %s", humanize.IBytes(x), humanize.IBytes(MaxBuffer))
					return
				}
				s.buffer = x
			}
		},
		"min_free": func(v *yaml.Node, p string) {
			if x, ok := d.size(v, p, 0); ok {
				s.minFree = x
			}
		},
		"filter": func(v *yaml.Node, p string) { s.filter = d.filter(v, p) },
		"ring":   func(v *yaml.Node, p string) { s.ring = d.ring(v, p) },
		"exclude_own_ssh": func(v *yaml.Node, p string) {
			if x, ok := d.boolean(v, p); ok {
				s.excludeOwnSSH = x
			}
		},
	}
}

func (d *decoder) plan(n *yaml.Node) *Plan {
	p := &Plan{File: d.file, Version: 1}
	def := defaults{
		duration:      DefaultDuration,
		excludeOwnSSH: true,
		// User and Port stay unset unless the plan sets them: ~/.ssh/config,
		// then root and 22, fill them in at connect time.
		ssh: SSH{ConnectTimeout: 10 * time.Second, Keepalive: 15 * time.Second},
	}
	var caseNode, hostsNode, untilNode, postNode *yaml.Node
	fs := map[string]field{
		"version": func(v *yaml.Node, path string) {
			if x, ok := d.integer(v, path, 1, 1); ok {
				p.Version = int(x)
			}
		},
		"case": func(v *yaml.Node, path string) {
			caseNode = v
			s, ok := d.text(v, path)
			if ok && !caseRE.MatchString(s) {
				d.errf(v, path, "case %q: use letters, digits, '.', '_' and '-' (up to 64, starting with a letter or digit); it names the folder Case_<case>", s)
				return
			}
			p.Case = s
		},
		"description": func(v *yaml.Node, path string) { p.Description, _ = d.text(v, path) },
		"datastore": func(v *yaml.Node, path string) {
			var ok bool
			def.datastore, ok = d.datastore(v, path)
			def.datastoreBad = !ok
		},
		"ssh":   func(v *yaml.Node, path string) { def.ssh = d.ssh(v, path, def.ssh) },
		"hosts": func(v *yaml.Node, _ string) { hostsNode = v },
		"until": func(v *yaml.Node, path string) {
			untilNode = v
			p.Until = d.until(v, path)
		},
		"post": func(v *yaml.Node, path string) {
			postNode = v
			p.Post, _ = d.duration(v, path, 0, MaxPost)
		},
	}
	maps.Copy(fs, d.limitFields(&def))
	// Top-level keys starting with "x-" are ignored, so that a runbook can
	// keep YAML anchors there (x-uplinks: &uplinks [...]).
	if n = deref(n); n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; strings.HasPrefix(k, "x-") {
				fs[k] = func(*yaml.Node, string) {}
			}
		}
	}
	if !d.fields(n, "", fs) {
		return p
	}
	if caseNode == nil {
		d.errf(n, "", `missing key "case": the case number or name, e.g. case: "12345678"`)
	}
	if hostsNode == nil {
		d.errf(n, "", `missing key "hosts": the list of hosts to capture on`)
		return p
	}
	items, ok := d.list(hostsNode, "hosts")
	if !ok {
		return p
	}
	if len(items) == 0 {
		d.errf(hostsNode, "hosts", "the plan has no hosts")
	}
	for i, hn := range items {
		if d.visits >= maxVisits {
			return p
		}
		if h := d.host(hn, itemPath("hosts", i), def); h != nil {
			p.Hosts = append(p.Hosts, h)
		}
	}
	d.checkUnique(p, items)
	if untilNode != nil {
		d.checkRuleHosts(p)
	}
	// A plan with rings stops on a trigger too: casecap trigger fires one
	// by hand.
	switch {
	case p.Triggered() && postNode == nil:
		p.Post = DefaultPost
	case !p.Triggered() && postNode != nil:
		d.errf(postNode, "post", "post is how long captures go on after a trigger; the plan has no until rules and no ring")
	}
	return p
}

// checkUnique reports host names, addresses and file names used twice, and a
// second local host.
func (d *decoder) checkUnique(p *Plan, hostNodes []*yaml.Node) {
	type first struct {
		path string
		line int
	}
	names, addrs, files := map[string]first{}, map[string]first{}, map[string]first{}
	var local *Host
	for i, h := range p.Hosts {
		hp := itemPath("hosts", i)
		hn := hostNodes[i]
		if f, dup := names[strings.ToLower(h.Name)]; dup && h.Name != "" {
			d.errf(hn, hp+".name", "host name %q is already used by %s (line %d)", h.Name, f.path, f.line)
			continue // its file names collide too; one message is enough
		} else {
			names[strings.ToLower(h.Name)] = first{hp, h.Line}
		}
		if h.Address != "" {
			if f, dup := addrs[sameHost(h.Address)]; dup {
				d.errf(hn, hp+".address", "address %q is already used by %s (line %d); list each host once", h.Address, f.path, f.line)
			} else {
				addrs[sameHost(h.Address)] = first{hp, h.Line}
			}
		}
		if h.Kind == KindLocal {
			if local != nil {
				d.errf(hn, hp+".kind", "only one host can be local (this machine); %s already is", local.Name)
			}
			local = h
		}
		for _, c := range h.Captures {
			key := strings.ToLower(c.File)
			if f, dup := files[key]; dup {
				d.errf(&yaml.Node{Line: c.Line, Column: c.Col}, c.Path, "file name %q is already used by %s (line %d); add a label to tell them apart", c.File, f.path, f.line)
			} else {
				files[key] = first{c.Path, c.Line}
			}
		}
	}
}

// datastore checks a datastore path: absolute, clean, never /tmp.
func (d *decoder) datastore(n *yaml.Node, p string) (string, bool) {
	s, ok := d.text(n, p)
	if !ok {
		return "", false
	}
	clean := path.Clean(s)
	switch {
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		d.errf(n, p, "datastore holds a control character")
	case !path.IsAbs(s):
		d.errf(n, p, "datastore %q must be an absolute path, such as /vmfs/volumes/shared-ds1", s)
	case clean != strings.TrimSuffix(s, "/") && s != "/":
		d.errf(n, p, "datastore %q is not a clean path; write %q", s, clean)
	case clean == "/":
		d.errf(n, p, "datastore cannot be /")
	case clean == "/tmp" || strings.HasPrefix(clean, "/tmp/"):
		d.errf(n, p, "datastore %q is under /tmp, a ramdisk on ESXi that captures fill (KB 341568); use a datastore under /vmfs/volumes", s)
	default:
		if strings.Contains(strings.ToLower(clean), "vsan") {
			d.warnf(n, p, "%q looks like a vSAN datastore: writing captures there competes with VM I/O; prefer a VMFS or NFS datastore", s)
		}
		return clean, true
	}
	return "", false
}

func (d *decoder) ssh(n *yaml.Node, p string, inherited SSH) SSH {
	s := inherited
	str := func(dst *string, re *regexp.Regexp, what string) field {
		return func(v *yaml.Node, path string) {
			x, ok := d.text(v, path)
			switch {
			case !ok:
			case re != nil && !re.MatchString(x):
				d.errf(v, path, "%q is not %s", x, what)
			case strings.TrimSpace(x) == "":
				d.errf(v, path, "an empty value; drop the key for the default")
			default:
				*dst = x
			}
		}
	}
	d.fields(n, p, map[string]field{
		"user":          str(&s.User, userRE, "a valid user name"),
		"identity_file": str(&s.IdentityFile, nil, ""),
		"known_hosts":   str(&s.KnownHosts, nil, ""),
		"password_env":  str(&s.PasswordEnv, envRE, "an environment variable name (letters, digits and _)"),
		"jump":          str(&s.Jump, nil, ""),
		"port": func(v *yaml.Node, path string) {
			if x, ok := d.integer(v, path, 1, 65535); ok {
				s.Port = int(x)
			}
		},
		"connect_timeout": func(v *yaml.Node, path string) {
			if x, ok := d.duration(v, path, time.Second, 5*time.Minute); ok {
				s.ConnectTimeout = x
			}
		},
		"keepalive": func(v *yaml.Node, path string) {
			if x, ok := d.duration(v, path, 0, 10*time.Minute); ok {
				s.Keepalive = x
			}
		},
	})
	return s
}

// sameHost is an address as a key that two spellings of one host share:
// an IP address in its canonical form, an IPv4 address mapped into IPv6
// (::ffff:198.18.1.11) as IPv4, a DNS name in lower case without a final
// dot.
func sameHost(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// validAddress accepts an IP address or a DNS name.
func validAddress(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !dnsLabelRE.MatchString(label) {
			return false
		}
	}
	return true
}

func (d *decoder) host(n *yaml.Node, p string, def defaults) *Host {
	h := &Host{Kind: KindAuto, Line: n.Line}
	hd := def
	var capsNode, nameNode, addrNode, sshNode *yaml.Node
	fs := map[string]field{
		"name": func(v *yaml.Node, path string) {
			nameNode = v
			s, ok := d.text(v, path)
			if ok && !hostNameRE.MatchString(s) {
				d.errf(v, path, "host name %q: use letters, digits, '_' and '-' (no dots: they separate the parts of file names)", s)
				return
			}
			h.Name = s
		},
		"address": func(v *yaml.Node, path string) {
			addrNode = v
			s, ok := d.text(v, path)
			switch {
			case !ok:
			case strings.Contains(s, "@"):
				d.errf(v, path, "address %q holds a user; put the user in ssh.user", s)
			case strings.Count(s, ":") == 1:
				d.errf(v, path, "address %q holds a port; put the port in ssh.port", s)
			case !validAddress(s):
				d.errf(v, path, "address %q is not an IP address or a host name", s)
			default:
				h.Address = s
			}
		},
		"kind": func(v *yaml.Node, path string) {
			s, ok := d.text(v, path)
			if !ok {
				return
			}
			switch Kind(s) {
			case KindESXi, KindLinux, KindLocal, KindAuto:
				h.Kind = Kind(s)
			default:
				d.errf(v, path, "unknown kind %q: want esxi, linux or local (or leave it out to detect it)%s", s, suggest.DidYouMean(s, []string{"esxi", "linux", "local"}))
			}
		},
		"datastore": func(v *yaml.Node, path string) {
			var ok bool
			hd.datastore, ok = d.datastore(v, path)
			hd.datastoreBad = !ok
		},
		"ssh": func(v *yaml.Node, path string) {
			sshNode = v
			hd.ssh = d.ssh(v, path, hd.ssh)
		},
		"captures": func(v *yaml.Node, _ string) { capsNode = v },
	}
	maps.Copy(fs, d.limitFields(&hd))
	if !d.fields(n, p, fs) {
		return nil
	}
	if nameNode == nil {
		d.errf(n, p, `missing key "name": the host's name in file names, e.g. esxi01`)
	}
	switch {
	case h.Kind == KindLocal && addrNode != nil:
		d.errf(addrNode, p+".address", "a local host is this machine: it has no address")
	case h.Kind == KindLocal && sshNode != nil:
		d.errf(sshNode, p+".ssh", "a local host is reached without SSH: drop ssh")
	case h.Kind != KindLocal && addrNode == nil:
		d.errf(n, p, `missing key "address": the host's IP address or DNS name (or kind: local for this machine)`)
	}
	if hd.datastore == "" && !hd.datastoreBad {
		d.errf(n, p, "no datastore: set datastore at the top of the plan or on this host")
	}
	if h.Kind == KindESXi && hd.datastore != "" && !strings.HasPrefix(hd.datastore, "/vmfs/volumes/") {
		d.warnf(n, p, "datastore %q is not under /vmfs/volumes: ESXi's own filesystems are small ramdisks", hd.datastore)
	}
	h.Datastore, h.SSH = hd.datastore, hd.ssh
	if h.Kind == KindLocal {
		h.SSH = SSH{}
	}
	if capsNode == nil {
		d.errf(n, p, `missing key "captures": what to capture on this host`)
		return h
	}
	items, ok := d.list(capsNode, p+".captures")
	if !ok {
		return h
	}
	if len(items) == 0 {
		d.errf(capsNode, p+".captures", "the host has no captures")
	}
	family := ""
	for i, cn := range items {
		if d.visits >= maxVisits {
			break
		}
		c := d.capture(cn, itemPath(p+".captures", i), hd, h)
		if c == nil {
			continue
		}
		f := "linux"
		if c.Target.Kind.esxiOnly() {
			f = "esxi"
		}
		if h.Kind == KindAuto && family != "" && f != family {
			d.errf(cn, c.Path, "this host mixes ESXi targets and Linux interfaces; set kind: esxi or kind: linux")
		}
		family = f
		h.Captures = append(h.Captures, c)
	}
	return h
}

// targetKeys are the keys that name what a capture is attached to.
var targetKeys = []TargetKind{TargetSwitchport, TargetUplink, TargetVmk, TargetVM, TargetDVFilter, TargetInterface}

func (d *decoder) capture(n *yaml.Node, p string, def defaults, h *Host) *Capture {
	c := &Capture{Host: h.Name, Path: p, Line: n.Line, Col: n.Column}
	cd := def
	targets := map[TargetKind]*yaml.Node{}
	var pointsNode, dirNode, stageNode, directionNode, vnicNode, uplinkPointsNode, filterNode *yaml.Node
	var points, uplinkPoints []string
	target := func(kind TargetKind) field {
		return func(v *yaml.Node, path string) {
			targets[kind] = v
			switch kind {
			case TargetSwitchport:
				if x, ok := d.integer(v, path, 1, 1<<32-1); ok {
					c.Target.Switchport = uint32(x)
				}
			case TargetVM:
				s, ok := d.text(v, path)
				switch {
				case !ok:
				case strings.TrimSpace(s) == "" || strings.IndexFunc(s, unicode.IsControl) >= 0 || len(s) > 80:
					d.errf(v, path, "VM name %q: want the VM's name as vSphere shows it (up to 80 characters, no control characters)", s)
				default:
					c.Target.VM = s
				}
			default:
				re := map[TargetKind]*regexp.Regexp{TargetUplink: uplinkRE, TargetVmk: vmkRE, TargetDVFilter: uplinkRE, TargetInterface: ifaceRE}[kind]
				what := map[TargetKind]string{TargetUplink: "an uplink such as vmnic2 (or auto)", TargetVmk: "a VMkernel adapter such as vmk1",
					TargetDVFilter: "a DVFilter name as summarize-dvfilter shows it", TargetInterface: "a Linux interface name such as eth0"}[kind]
				s, ok := d.text(v, path)
				if ok && !re.MatchString(s) {
					d.errf(v, path, "%q is not %s", s, what)
					return
				}
				c.Target.Name = s
			}
		}
	}
	strList := func(dst *[]string, node **yaml.Node) field {
		return func(v *yaml.Node, path string) {
			*node = v
			items, ok := d.list(v, path)
			if !ok {
				return
			}
			for i, it := range items {
				if s, ok := d.text(it, itemPath(path, i)); ok {
					*dst = append(*dst, s)
				}
			}
			if len(items) == 0 {
				d.errf(v, path, "an empty list; drop the key for the default")
			}
		}
	}
	fs := map[string]field{
		"vnic": func(v *yaml.Node, path string) {
			vnicNode = v
			s, ok := d.text(v, path)
			if ok && !vnicRE.MatchString(s) {
				d.errf(v, path, "%q is not a vNIC name as net-stats shows it, such as eth0", s)
				return
			}
			c.Target.VNIC = s
		},
		"points":        strList(&points, &pointsNode),
		"uplink_points": strList(&uplinkPoints, &uplinkPointsNode),
		"dir": func(v *yaml.Node, path string) {
			dirNode = v
			c.Dir, _ = choice(d, v, path, map[string]Direction{
				"0": DirInput, "in": DirInput, "input": DirInput,
				"1": DirOutput, "out": DirOutput, "output": DirOutput,
				"2": DirBoth, "both": DirBoth, "inout": DirBoth, "inputandoutput": DirBoth,
			}, "input, output or both (pktcap-uw --dir 0, 1, 2)")
		},
		"stage": func(v *yaml.Node, path string) {
			stageNode = v
			c.Stage, _ = choice(d, v, path, map[string]Stage{"0": StagePre, "pre": StagePre, "1": StagePost, "post": StagePost},
				"pre or post (pktcap-uw --stage 0, 1)")
		},
		"direction": func(v *yaml.Node, path string) {
			directionNode = v
			if p, ok := choice(d, v, path, map[string][]string{"rx": {"Rx"}, "tx": {"Tx"}, "both": {"Rx", "Tx"}}, "rx, tx or both"); ok {
				points = p
			}
		},
		"label": func(v *yaml.Node, path string) {
			s, ok := d.text(v, path)
			if ok && !labelRE.MatchString(s) {
				d.errf(v, path, "label %q: use up to 32 letters, digits, '_' and '-'", s)
				return
			}
			c.Label = s
		},
	}
	for _, k := range targetKeys {
		fs[string(k)] = target(k)
	}
	limits := d.limitFields(&cd)
	filterField := limits["filter"]
	limits["filter"] = func(v *yaml.Node, path string) { filterNode = v; filterField(v, path) }
	maps.Copy(fs, limits)
	if !d.fields(n, p, fs) {
		return nil
	}

	// The target: exactly one, or none for standalone points. `uplink: auto`
	// rides along with a VM or switchport.
	if v, ok := targets[TargetUplink]; ok && c.Target.Name == "auto" {
		delete(targets, TargetUplink)
		c.Target.Name = ""
		if targets[TargetVM] == nil && targets[TargetSwitchport] == nil {
			d.errf(v, p+".uplink", "uplink: auto adds the team uplink of a VM or switchport capture; name the uplink (vmnic2) for an uplink capture")
			return nil
		} else {
			c.Target.AutoUplink = true
		}
	}
	var kinds []string
	for _, k := range targetKeys {
		if targets[k] != nil {
			kinds = append(kinds, string(k))
			c.Target.Kind = k
		}
	}
	switch {
	case len(kinds) > 1:
		d.errf(n, p, "a capture has one target, this one has %s: split it into one capture each", strings.Join(kinds, " and "))
		return nil
	case len(kinds) == 0:
		c.Target.Kind = TargetNone
	}
	if vnicNode != nil && c.Target.Kind != TargetVM {
		d.errf(vnicNode, p+".vnic", "vnic goes with vm: name the VM too")
	}
	if c.Target.Kind == TargetVM && c.Target.VNIC == "" {
		c.Target.VNIC = "eth0"
	}
	if uplinkPointsNode != nil && !c.Target.AutoUplink {
		d.errf(uplinkPointsNode, p+".uplink_points", "uplink_points go with uplink: auto")
	}
	if c.Target.AutoUplink {
		c.Target.UplinkPoints = []string{"UplinkSndKernel", "UplinkRcvKernel"}
		if uplinkPoints != nil {
			c.Target.UplinkPoints = d.checkPoints(uplinkPointsNode, p+".uplink_points", uplinkPoints, TargetUplink, PlatformESXi)
		}
	}

	// Kind of host against kind of target.
	switch {
	case !h.Kind.Captures(c.Target.Kind) && c.Target.Kind.esxiOnly():
		d.errf(n, p, "%s is an ESXi target, and %s is a %s host: Linux hosts capture on an interface", c.Target.Kind, h.Name, h.Kind)
		return nil
	case !h.Kind.Captures(c.Target.Kind):
		d.errf(targets[TargetInterface], p+".interface", "interface is a Linux target; on ESXi capture a vmk, uplink, switchport or vm")
		return nil
	}

	// Where the capture looks: points, or ESXi dir/stage, or the default.
	if c.Target.Kind == TargetInterface {
		for _, bad := range []struct {
			node *yaml.Node
			key  string
		}{{dirNode, "dir"}, {stageNode, "stage"}} {
			if bad.node != nil {
				d.errf(bad.node, p+"."+bad.key, "%s is for ESXi captures; a Linux capture takes direction: rx, tx or both", bad.key)
			}
		}
		if pointsNode != nil && directionNode != nil {
			d.errf(directionNode, p+".direction", "give direction or points, not both")
		}
		if points == nil {
			points = []string{"Rx", "Tx"}
		}
		c.Points = d.checkPoints(pointsNode, p+".points", points, TargetInterface, PlatformLinux)
	} else {
		if directionNode != nil {
			d.errf(directionNode, p+".direction", "direction is for Linux captures; on ESXi use points, or dir: input, output or both")
		}
		switch {
		case pointsNode != nil && dirNode != nil:
			d.errf(dirNode, p+".dir", "give points or dir, not both: dir makes pktcap-uw choose the point itself")
		case stageNode != nil && dirNode == nil:
			d.errf(stageNode, p+".stage", "stage goes with dir")
		case pointsNode != nil:
			c.Points = d.checkPoints(pointsNode, p+".points", points, c.Target.Kind, PlatformESXi)
		case dirNode != nil:
			if c.Target.Kind == TargetNone || c.Target.Kind == TargetDVFilter {
				d.errf(dirNode, p+".dir", "dir needs a switchport, vm, vmk or uplink")
			}
		case c.Target.Kind == TargetNone:
			d.errf(n, p, "a capture needs a target (switchport, uplink, vmk, vm, dvfilter, interface) or standalone points such as [Drop]")
			return nil
		case c.Target.Kind == TargetDVFilter:
			d.errf(n, p, "a dvfilter capture needs points: PreDVFilter or PostDVFilter")
			return nil
		default:
			c.Points = slices.Clone(defaultPoints[c.Target.Kind])
		}
	}

	c.Filter, c.ExcludeOwnSSH = cd.filter, cd.excludeOwnSSH
	c.Snaplen, c.Duration = cd.snaplen, cd.duration
	c.MaxPackets, c.MaxBytes, c.MinFree, c.Buffer, c.Ring = cd.maxPackets, cd.maxBytes, cd.minFree, cd.buffer, cd.ring
	if r := c.Ring; r != nil && r.Keep > c.Duration {
		d.errf(n, p, "the ring keeps %v, longer than the capture's duration %v: nothing would ever rotate out", r.Keep, c.Duration)
	}
	if c.Ring != nil && (c.MaxPackets > 0 || c.MaxBytes > 0) {
		d.errf(n, p, "a ring keeps the latest packets, however many: max_packets and max_bytes do not apply (keep_bytes bounds its size)")
	}
	at := filterNode
	if at == nil {
		at = n
	}
	for _, msg := range filterConflicts(c.Filter) {
		d.errf(at, p+".filter", "%s", msg)
	}
	c.File = FileName(c)
	return c
}

// checkPoints checks capture point names against the catalogue, the platform
// and the target kind, with a "did you mean" for typos.
func (d *decoder) checkPoints(n *yaml.Node, p string, names []string, target TargetKind, pl Platform) []string {
	seen := map[string]bool{}
	var ok []string
	for i, name := range names {
		ip := itemPath(p, i)
		at := n
		if n != nil && deref(n).Kind == yaml.SequenceNode && i < len(deref(n).Content) {
			at = deref(n).Content[i]
		}
		pt, known := LookupPoint(name)
		switch {
		case !known:
			d.errf(at, ip, "unknown capture point %q%s; casecap points lists them", name, suggest.DidYouMean(name, pointNames(pl)))
		case pt.Platform != pl && pl == PlatformLinux:
			d.errf(at, ip, "%s is an ESXi capture point; a Linux capture takes direction: rx, tx or both", name)
		case pt.Platform != pl:
			d.errf(at, ip, "%s is a Linux direction; ESXi captures take capture points such as VnicTx or UplinkRcvKernel", name)
		case !slices.Contains(pt.Targets, target) && slices.Equal(pt.Targets, standalone):
			d.errf(at, ip, "%s is a standalone capture point: give it a capture of its own, without a target", name)
		case !slices.Contains(pt.Targets, target):
			d.errf(at, ip, "capture point %s does not fit %s capture; it fits %s", name, withArticle(targetWord(target)), targetList(pt.Targets))
		case seen[name]:
			d.errf(at, ip, "capture point %s is listed twice", name)
		default:
			seen[name] = true
			ok = append(ok, name)
		}
	}
	return ok
}

func targetWord(t TargetKind) string {
	if t == TargetNone {
		return "standalone"
	}
	return string(t)
}

func withArticle(w string) string {
	if strings.ContainsRune("aeiou", rune(w[0])) {
		return "an " + w
	}
	return "a " + w
}

func targetList(ts []TargetKind) string {
	words := make([]string, len(ts))
	for i, t := range ts {
		words[i] = targetWord(t)
	}
	return strings.Join(words, ", ")
}

// filterConflicts finds filters that can match nothing.
func filterConflicts(f Filter) []string {
	var msgs []string
	proto := -1
	if f.Proto != nil {
		proto = int(*f.Proto)
	}
	if f.TCPPort != nil && f.UDPPort != nil {
		msgs = append(msgs, "tcpport and udpport together match nothing (a packet is TCP or UDP); use port for either")
	}
	if f.TCPPort != nil && proto >= 0 && proto != 6 {
		msgs = append(msgs, fmt.Sprintf("tcpport with proto %s matches nothing", filter.ProtoName(uint8(proto))))
	}
	if f.UDPPort != nil && proto >= 0 && proto != 17 {
		msgs = append(msgs, fmt.Sprintf("udpport with proto %s matches nothing", filter.ProtoName(uint8(proto))))
	}
	if (f.Port != nil || f.SrcPort != nil || f.DstPort != nil) && proto >= 0 && proto != 6 && proto != 17 && proto != 132 {
		msgs = append(msgs, fmt.Sprintf("ports with proto %s match nothing; ports exist for tcp, udp and sctp", filter.ProtoName(uint8(proto))))
	}
	if f.VXLAN != nil && proto >= 0 && proto != 17 {
		msgs = append(msgs, "vxlan is carried over UDP; it cannot match with proto "+filter.ProtoName(uint8(proto)))
	}
	if f.EthType != nil && *f.EthType != 0x0800 && (f.IP.IsValid() || f.SrcIP.IsValid() || f.DstIP.IsValid() || f.Proto != nil) {
		msgs = append(msgs, fmt.Sprintf("IPv4 fields with ethtype 0x%04x match nothing", *f.EthType))
	}
	return msgs
}

// choice reads one of a fixed set of words (case does not matter).
func choice[T any](d *decoder, v *yaml.Node, path string, options map[string]T, want string) (T, bool) {
	var zero T
	s, ok := d.text(v, path)
	if !ok {
		return zero, false
	}
	if x, ok := options[strings.ToLower(s)]; ok {
		return x, true
	}
	d.errf(v, path, "%s %q: want %s", path[strings.LastIndexByte(path, '.')+1:], s, want)
	return zero, false
}
