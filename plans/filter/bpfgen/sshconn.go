package bpfgen

import (
	"net/netip"
	"strconv"
	"strings"
)

// ParseSSHConnection reads SSH_CONNECTION ("client port server port") into every
// connection from that client to the server's SSH port, over IPv4 or IPv6
// (IPv4 addresses mapped into IPv6 read as IPv4; zones are dropped).
func ParseSSHConnection(env string) (Conn, bool) {
	f := strings.Fields(env)
	if len(f) != 4 {
		return Conn{}, false
	}
	cl, err1 := netip.ParseAddr(f[0])
	sv, err2 := netip.ParseAddr(f[2])
	port, err3 := strconv.ParseUint(f[3], 10, 16)
	cl, sv = cl.Unmap().WithZone(""), sv.Unmap().WithZone("")
	if err1 != nil || err2 != nil || err3 != nil || cl.Is4() != sv.Is4() {
		return Conn{}, false
	}
	return Conn{Client: netip.AddrPortFrom(cl, 0), Server: netip.AddrPortFrom(sv, uint16(port))}, true
}
