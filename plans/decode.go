package plans

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"

	"github.com/casecap/casecap/internal/suggest"
)

// decoder walks a YAML node tree, collecting every problem with its place.
type decoder struct {
	file  string
	diags []Diag
	warns []Diag
	// visits bounds the walk: aliases are expanded here, and nested aliases
	// could otherwise make a small file take forever ("billion laughs").
	visits int
	// known, when set, collects the keys each level of the plan takes, as
	// the walk meets the levels (Keys).
	known map[string][]string
}

// maxVisits is far above real plans: a capture costs 2-3 visits, so this
// allows some 6,000 hosts with 4 captures each.
const maxVisits = 100_000

// spend counts one visit; false once the budget is gone (reported once).
func (d *decoder) spend(n *yaml.Node) bool {
	d.visits++
	if d.visits == maxVisits {
		d.errf(n, "", "the plan expands to more than %d mappings and lists (nested YAML aliases?)", maxVisits)
	}
	return d.visits < maxVisits
}

func (d *decoder) errf(n *yaml.Node, path, format string, args ...any) {
	d.diags = append(d.diags, d.diag(n, path, format, args...))
}

func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	d.warns = append(d.warns, d.diag(n, path, format, args...))
}

func (d *decoder) diag(n *yaml.Node, path, format string, args ...any) Diag {
	dg := Diag{File: d.file, Path: path, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		dg.Line, dg.Col = n.Line, n.Column
	}
	return dg
}

// deref follows YAML aliases (*anchor) to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names a node's type for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "nothing (null)"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!bool":
		return "the boolean " + n.Value
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "the number " + n.Value
	}
	return strconv.Quote(n.Value)
}

// joinPath extends a YAML path with a key.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// field handles the value of one known key.
type field func(v *yaml.Node, path string)

// secretKeys are keys people reach for to put a secret in the plan.
var secretKeys = []string{"password", "passphrase", "secret", "token"}

// fields walks a mapping, calling the handler of each known key, and reports
// non-mappings, duplicate keys and unknown keys (with a "did you mean").
func (d *decoder) fields(n *yaml.Node, path string, fs map[string]field) bool {
	if d.known != nil {
		level := levelOf(path)
		for k := range fs {
			if !slices.Contains(d.known[level], k) {
				d.known[level] = append(d.known[level], k)
			}
		}
		slices.Sort(d.known[level])
	}
	n = deref(n)
	if !d.spend(n) {
		return false
	}
	if n == nil || n.Kind != yaml.MappingNode {
		d.errf(n, path, "want a mapping (key: value lines), got %s", describe(n))
		return false
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errf(k, path, "keys must be plain names, got %s", describe(k))
			continue
		}
		key, kp := k.Value, joinPath(path, k.Value)
		if first, dup := seen[key]; dup {
			d.errf(k, kp, "duplicate key %q (first at line %d)", key, first.Line)
			continue
		}
		seen[key] = k
		f, ok := fs[key]
		switch {
		case ok:
			f(v, kp)
		case key == "<<":
			d.errf(k, kp, "YAML merge keys (<<) are not supported; repeat the keys, or use an alias (*name) for a whole value")
		case slices.Contains(secretKeys, strings.ToLower(key)):
			d.errf(k, kp, "secrets never live in the plan: put the password in an environment variable and name it with ssh.password_env (or let casecap prompt)")
		default:
			known := make([]string, 0, len(fs))
			for name := range fs {
				known = append(known, name)
			}
			slices.Sort(known)
			d.errf(k, kp, "unknown key %q%s", key, suggest.DidYouMean(key, known))
		}
	}
	return true
}

// text reads a scalar as text (strings, and numbers as written: a case id
// 00123 stays "00123").
func (d *decoder) text(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) || n.Tag == "!!bool" {
		d.errf(n, path, "want a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// integer reads a whole number in [lo, hi]; decimal, 0x hex, or quoted digits.
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		d.errf(n, path, "want a whole number, got %s", describe(n))
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil {
		d.errf(n, path, "want a whole number, got %s", describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		d.errf(n, path, "%d is out of range: want %d to %d", v, lo, hi)
		return 0, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.errf(n, path, "want true or false, got %s", describe(n))
		return false, false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
}

// duration reads a Go duration ("90s", "10m", "1h30m") in [lo, hi].
func (d *decoder) duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
		d.errf(n, path, "want a duration such as 90s or 10m, got %s", describe(n))
		return 0, false
	}
	if n.Tag == "!!int" {
		d.errf(n, path, "a duration needs a unit: write %ss or %sm", n.Value, n.Value)
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errf(n, path, "want a duration such as 90s or 10m, got %s", describe(n))
		return 0, false
	}
	if v < lo || v > hi {
		d.errf(n, path, "%v is out of range: want %v to %v", v, lo, hi)
		return 0, false
	}
	return v, true
}

// size reads a byte count: a number of bytes or "512MiB", "2GB" (MB is 10^6,
// MiB is 2^20).
func (d *decoder) size(n *yaml.Node, path string, lo uint64) (uint64, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) || n.Tag == "!!bool" {
		d.errf(n, path, "want a size such as 512MiB or 2GB, got %s", describe(n))
		return 0, false
	}
	v, err := humanize.ParseBytes(n.Value)
	if err != nil {
		d.errf(n, path, "want a size such as 512MiB or 2GB, got %s", describe(n))
		return 0, false
	}
	if v < lo {
		d.errf(n, path, "%s is too small: want at least %s", n.Value, humanize.IBytes(lo))
		return 0, false
	}
	return v, true
}

// list reads a sequence. A scalar "A,B" is taken as the list [A, B], as
// pktcap-uw writes capture points.
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	n = deref(n)
	if !d.spend(n) {
		return nil, false
	}
	switch {
	case n != nil && n.Kind == yaml.SequenceNode:
		items := make([]*yaml.Node, len(n.Content))
		for i, c := range n.Content {
			items[i] = deref(c)
		}
		return items, true
	case n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value != "":
		var items []*yaml.Node
		for _, part := range strings.Split(n.Value, ",") {
			c := *n
			c.Value = strings.TrimSpace(part)
			items = append(items, &c)
		}
		return items, true
	}
	d.errf(n, path, "want a list, got %s", describe(n))
	return nil, false
}

// itemPath is path[i].
func itemPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// levelOf names the level of a YAML path: "" is the plan, "hosts[2]" a
// host, "hosts[2].captures[0].filter" a capture's filter
// ("capture.filter"); ssh and filter at any level are "ssh" and "filter".
func levelOf(path string) string {
	parts := strings.Split(indexRE.ReplaceAllString(path, ""), ".")
	switch last := parts[len(parts)-1]; {
	case path == "":
		return "plan"
	case last == "ssh" || last == "filter" || last == "ring" || last == "until" || last == "packet" || last == "drops" || last == "log":
		return last
	case last == "hosts":
		return "host"
	case last == "captures":
		return "capture"
	}
	return path
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// Keys lists the keys each level of a plan takes ("plan", "host",
// "capture", "ssh", "filter"), as the decoder knows them: what the README
// documents, and its test holds it to.
func Keys() map[string][]string {
	d := &decoder{file: "keys", known: map[string][]string{}}
	const every = "case: k\ndatastore: /ds\nssh: {}\nfilter: {}\nring: {}\nuntil: [ { packet: {}, drops: {}, log: {} } ]\nhosts:\n  - name: h\n    address: 192.0.2.1\n    ssh: {}\n    filter: {}\n    captures:\n      - interface: eth0\n        filter: {}\n"
	d.parse("keys", []byte(every))
	return d.known
}
