package plans

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/casecap/casecap/internal/suggest"
	"github.com/casecap/casecap/plans/filter"
)

// ethTypes are the EtherType names a plan may use (ethtype: arp).
var ethTypes = map[string]uint16{
	"ipv4": 0x0800, "ip": 0x0800, "arp": 0x0806, "rarp": 0x8035, "vlan": 0x8100,
	"ipv6": 0x86dd, "lldp": 0x88cc, "lacp": 0x8809,
}

// MaxExprLen bounds a raw pcap-filter expression.
const MaxExprLen = 1024

// filter reads a filter mapping. A filter replaces the inherited one whole
// (a capture's `filter: {port: 443}` does not keep the plan's proto: icmp);
// `filter: {}` or `filter: null` captures everything.
func (d *decoder) filter(n *yaml.Node, path string) Filter {
	var f Filter
	if isNull(n) {
		return f
	}
	port := func(dst **uint16) field {
		return func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p, 1, 65535); ok {
				u := uint16(x)
				*dst = &u
			}
		}
	}
	mac := func(dst *MAC) field {
		return func(v *yaml.Node, p string) { *dst, _ = d.mac(v, p) }
	}
	prefix := func(dst *netip.Prefix) field {
		return func(v *yaml.Node, p string) { *dst, _ = d.ipv4Prefix(v, p) }
	}
	d.fields(n, path, map[string]field{
		"ip":     func(v *yaml.Node, p string) { f.IP, _ = d.ipv4(v, p) },
		"srcip":  prefix(&f.SrcIP),
		"dstip":  prefix(&f.DstIP),
		"mac":    mac(&f.MAC),
		"srcmac": mac(&f.SrcMAC),
		"dstmac": mac(&f.DstMAC),
		"ethtype": func(v *yaml.Node, p string) {
			if x, ok := named(d, v, p, ethTypes, 0xffff, "an EtherType such as 0x0806 or arp"); ok {
				u := uint16(x)
				f.EthType = &u
			}
		},
		"vlan": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p, 0, 4095); ok {
				u := uint16(x)
				f.VLAN = &u
			}
		},
		"proto": func(v *yaml.Node, p string) {
			if x, ok := named(d, v, p, filter.Protocols, 255, "an IP protocol such as icmp, tcp, udp or 0x01"); ok {
				u := uint8(x)
				f.Proto = &u
			}
		},
		"port":    port(&f.Port),
		"srcport": port(&f.SrcPort),
		"dstport": port(&f.DstPort),
		"tcpport": port(&f.TCPPort),
		"udpport": port(&f.UDPPort),
		"vxlan": func(v *yaml.Node, p string) {
			if x, ok := d.integer(v, p, 0, 1<<24-1); ok {
				u := uint32(x)
				f.VXLAN = &u
			}
		},
		"expr": func(v *yaml.Node, p string) {
			s, ok := d.text(v, p)
			switch {
			case !ok:
			case strings.TrimSpace(s) == "":
				d.errf(v, p, "an empty expression; drop the key to capture everything")
			case len(s) > MaxExprLen:
				d.errf(v, p, "expression is %d characters long; the limit is %d", len(s), MaxExprLen)
			case strings.IndexFunc(s, unicode.IsControl) >= 0:
				d.errf(v, p, "expression holds a control character (newline, tab...); write it on one line")
			default:
				f.Expr = strings.TrimSpace(s)
			}
		},
	})
	return f
}

func (d *decoder) ipv4(n *yaml.Node, path string) (netip.Addr, bool) {
	s, ok := d.text(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	if strings.Contains(s, "/") {
		d.errf(n, path, "ip takes one address (pktcap-uw --ip has no range); use srcip or dstip for a subnet")
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		d.errf(n, path, "want an IPv4 address such as 192.0.2.10, got %q", s)
		return netip.Addr{}, false
	}
	return a, true
}

// ipv4Prefix reads an address or a CIDR subnet; host bits are cleared.
func (d *decoder) ipv4Prefix(n *yaml.Node, path string) (netip.Prefix, bool) {
	s, ok := d.text(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		d.errf(n, path, "want an IPv4 address or subnet such as 192.0.2.0/24, got %q", strings.TrimSuffix(s, "/32"))
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

func (d *decoder) mac(n *yaml.Node, path string) (MAC, bool) {
	s, ok := d.text(n, path)
	if !ok {
		return MAC{}, false
	}
	m, err := filter.ParseMAC(s)
	if err != nil {
		d.errf(n, path, "%v", err)
		return MAC{}, false
	}
	return m, true
}

// named reads a number (decimal or 0x hex) up to hi, or one of names.
func named[T ~uint16 | ~uint8](d *decoder, n *yaml.Node, path string, names map[string]T, hi int64, want string) (int64, bool) {
	n = deref(n)
	if n != nil && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		if v, ok := names[strings.ToLower(n.Value)]; ok {
			return int64(v), true
		}
		if _, err := strconv.ParseInt(n.Value, 0, 64); err != nil {
			keys := make([]string, 0, len(names))
			for k := range names {
				keys = append(keys, k)
			}
			d.errf(n, path, "want %s, got %q%s", want, n.Value, suggest.DidYouMean(n.Value, keys))
			return 0, false
		}
	}
	return d.integer(n, path, 0, hi)
}
