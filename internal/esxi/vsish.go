package esxi

import (
	"fmt"
	"regexp"
	"strings"
)

// uplinkName is how ESXi names physical adapters (vmnic0, vusb0...).
var uplinkName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,31}$`)

// TeamUplinkPath is the vsish node that holds a port's active uplink.
func TeamUplinkPath(vswitch string, port uint32) string {
	return fmt.Sprintf("/net/portsets/%s/ports/%d/teamUplink", vswitch, port)
}

// ParseTeamUplink reads `vsish -e get .../teamUplink`: the uplink's name on
// a line of its own. A port with no active uplink prints an empty value
// (or "void"); that is an error here, with what the host said.
func ParseTeamUplink(out string) (string, error) {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if l == "void" || !uplinkName.MatchString(l) {
			break
		}
		return l, nil
	}
	return "", fmt.Errorf("vsish teamUplink: no active uplink in %q", firstLine(out))
}
