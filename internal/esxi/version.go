package esxi

import (
	"fmt"
	"regexp"
	"strconv"
)

// Version is an ESXi release, as `vmware -v` prints it.
type Version struct {
	Major, Minor, Update int
	Build                int
	Text                 string // the whole line: "VMware ESXi 8.0.2 build-22380479"
}

var versionRE = regexp.MustCompile(`VMware ESXi (\d+)\.(\d+)(?:\.(\d+))?(?:[^\n]*?build-(\d+))?`)

// ParseVersion reads `vmware -v`.
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("vmware -v: not an ESXi version: %q", firstLine(out))
	}
	v := Version{Text: m[0]}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Update, _ = strconv.Atoi(m[3])
	v.Build, _ = strconv.Atoi(m[4])
	return v, nil
}

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// RawFilters says whether pktcap-uw takes a pcap-filter expression (--rcf):
// since vSphere 7.0.
func (v Version) RawFilters() bool { return v.AtLeast(7, 0) }

// MultiplePoints says whether --capture takes a list of points: since 7.0
// (6.x captures at one point per session).
func (v Version) MultiplePoints() bool { return v.AtLeast(7, 0) }

func (v Version) String() string {
	if v.Text != "" {
		return v.Text
	}
	return fmt.Sprintf("VMware ESXi %d.%d.%d", v.Major, v.Minor, v.Update)
}
