package bpfgen

import "testing"

func TestParseSSHConnection(t *testing.T) {
	c, ok := ParseSSHConnection("198.18.0.1 50522 198.18.0.11 22")
	if !ok || c.Client.String() != "198.18.0.1:0" || c.Server.String() != "198.18.0.11:22" {
		t.Errorf("got %v %v", c, ok)
	}
	if c, ok := ParseSSHConnection("::ffff:198.18.0.1 50522 ::ffff:198.18.0.11 2222"); !ok || c.Server.String() != "198.18.0.11:2222" {
		t.Errorf("v4-mapped: got %v %v", c, ok)
	}
	if c, ok := ParseSSHConnection("2001:db8::1 5 2001:db8::2 22"); !ok || c.Client.String() != "[2001:db8::1]:0" || c.Server.String() != "[2001:db8::2]:22" {
		t.Errorf("IPv6: got %v %v", c, ok)
	}
	if c, ok := ParseSSHConnection("fe80::1%eth0 5 fe80::2%eth0 22"); !ok || c.Server.String() != "[fe80::2]:22" {
		t.Errorf("IPv6 link-local: got %v %v", c, ok)
	}
	for _, bad := range []string{"", "1 2 3", "198.18.0.1 5 2001:db8::2 22", "a b c d", "198.18.0.1 1 198.18.0.11 99999"} {
		if _, ok := ParseSSHConnection(bad); ok {
			t.Errorf("%q: want no exclusion", bad)
		}
	}
}
