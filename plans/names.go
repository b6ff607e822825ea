package plans

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

var (
	// Host names and labels go into file names, where "." separates fields.
	hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	labelRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
	// Case ids become a folder name, local and remote.
	caseRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// Names of things on a host, as ESXi and Linux spell them.
	uplinkRE    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,31}$`)
	vmkRE       = regexp.MustCompile(`^vmk[0-9]{1,4}$`)
	vnicRE      = regexp.MustCompile(`^eth[0-9]{1,2}$`)
	ifaceRE     = regexp.MustCompile(`^[^/\s:]{1,15}$`) // "any": every interface, as tcpdump -i any
	userRE      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$`)
	envRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	dnsLabelRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	fileSafeRun = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
)

// fileSafe turns a name from the plan (a VM name may hold spaces, dots or
// slashes) into one file-name field: anything else becomes "_", so no name
// can reach outside the case folder or add a field.
func fileSafe(s string) string {
	s = strings.Trim(fileSafeRun.ReplaceAllString(s, "_"), "_")
	if s == "" {
		return "_"
	}
	return s
}

// camelWords splits a capture point name into its words: "UplinkSndKernel" ->
// Uplink, Snd, Kernel. Digits stay with the word before them (Vmxnet3Tx ->
// Vmxnet3, Tx).
func camelWords(s string) []string {
	var words []string
	start := 0
	for i, r := range s {
		if i > start && unicode.IsUpper(r) {
			words = append(words, s[start:i])
			start = i
		}
	}
	return append(words, s[start:])
}

// CompactPoints joins capture points the KB's way: the words the points share
// at the start and at the end appear once, the differing middles in order:
// VnicTx,VnicRx -> VnicTxRx; UplinkSndKernel,UplinkRcvKernel ->
// UplinkSndRcvKernel; Rx,Tx -> RxTx. When that would lose a point, the
// names are joined as they are.
func CompactPoints(points []string) string {
	switch len(points) {
	case 0:
		return ""
	case 1:
		return points[0]
	}
	words := make([][]string, len(points))
	shortest := -1
	for i, p := range points {
		words[i] = camelWords(p)
		if shortest < 0 || len(words[i]) < shortest {
			shortest = len(words[i])
		}
	}
	prefix := 0
	for prefix < shortest && allEqual(words, func(w []string) string { return w[prefix] }) {
		prefix++
	}
	suffix := 0
	for suffix < shortest-prefix && allEqual(words, func(w []string) string { return w[len(w)-1-suffix] }) {
		suffix++
	}
	// A point whose words all belong to the shared part would vanish
	// (UplinkRcv,UplinkRcvKernel -> UplinkRcvKernel, the name of one point):
	// then the names are simply joined.
	for _, w := range words {
		if len(w) == prefix+suffix {
			return strings.Join(points, "")
		}
	}
	var b strings.Builder
	b.WriteString(strings.Join(words[0][:prefix], ""))
	for _, w := range words {
		b.WriteString(strings.Join(w[prefix:len(w)-suffix], ""))
	}
	b.WriteString(strings.Join(words[0][len(words[0])-suffix:], ""))
	return b.String()
}

func allEqual(words [][]string, at func([]string) string) bool {
	first := at(words[0])
	for _, w := range words[1:] {
		if at(w) != first {
			return false
		}
	}
	return true
}

// pointsPart is the file-name field that says where the capture looked.
func pointsPart(c *Capture) string {
	if c.Dir == DirNone {
		return CompactPoints(c.Points)
	}
	s := map[Direction]string{DirInput: "Input", DirOutput: "Output", DirBoth: "InputOutput"}[c.Dir]
	switch c.Stage {
	case StagePre:
		s += "Pre"
	case StagePost:
		s += "Post"
	}
	return s
}

// FileName is the capture's output file name, docs/design.md section 4:
// HOSTNAME.port.points.pcapng, e.g. esxi01.switchport.67108879.VnicTxRx.pcapng,
// esxi01.app01.eth0.VnicTxRx.pcapng, kvm01.eth0.RxTx.pcapng. A label, when
// set, comes before the extension.
func FileName(c *Capture) string {
	fields := []string{c.Host}
	t := c.Target
	switch t.Kind {
	case TargetSwitchport:
		fields = append(fields, "switchport", strconv.FormatUint(uint64(t.Switchport), 10))
	case TargetUplink, TargetVmk, TargetDVFilter:
		fields = append(fields, string(t.Kind), fileSafe(t.Name))
	case TargetVM:
		fields = append(fields, fileSafe(t.VM), fileSafe(t.VNIC))
	case TargetInterface:
		fields = append(fields, fileSafe(t.Name))
	}
	if p := pointsPart(c); p != "" {
		fields = append(fields, p)
	}
	if c.Label != "" {
		fields = append(fields, c.Label)
	}
	return strings.Join(fields, ".") + ".pcapng"
}
