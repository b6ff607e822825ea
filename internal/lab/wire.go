//go:build linux

package lab

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Wire is an extra Ethernet link into a host: its inner end is an
// interface inside the host (a capture target), its outer end is on this
// machine, outside every host, where the test writes frames. The test can
// take the inner end down, bring it up, or delete it, as an admin or a
// failing driver would on a real host.
type Wire struct {
	Host  *Host
	Inner string // the interface inside the host
	Outer string // this machine's end (named after the host's veth, so the lab removes it)
	fd    int
	index int
}

var wires atomic.Int32

// AddWire adds a wire whose inner end is named inner (up, no IPv6 chatter).
func (h *Host) AddWire(ctx context.Context, inner string) (*Wire, error) {
	w := &Wire{Host: h, Inner: inner, Outer: fmt.Sprintf("%sx%d", h.Veth, wires.Add(1)), fd: -1}
	if err := ipBatch(
		fmt.Sprintf("link add %s type veth peer name %s netns %d", w.Outer, inner, h.InitPID),
		sysctlCmd(w.Outer),
		"link set "+w.Outer+" up",
	); err != nil {
		return nil, err
	}
	if err := w.inside(ctx, "sysctl -qw net.ipv6.conf."+inner+".disable_ipv6=1 && ip link set "+inner+" up"); err != nil {
		w.Close()
		return nil, err
	}
	ifi, err := net.InterfaceByName(w.Outer)
	if err != nil {
		w.Close()
		return nil, err
	}
	w.index = ifi.Index
	proto := int(htons(unix.ETH_P_ALL))
	if w.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
		w.Close()
		return nil, fmt.Errorf("wire %s: packet socket: %w", w.Outer, err)
	}
	return w, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// inside runs a shell command in the host's namespaces.
func (w *Wire) inside(ctx context.Context, script string) error {
	out, err := w.Host.Command(ctx, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %s: %v: %s", w.Host.Name, script, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Send writes one Ethernet frame onto the wire; the inner end receives it.
func (w *Wire) Send(frame []byte) error {
	return unix.Sendto(w.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: w.index, Halen: 6})
}

// Down takes the inner end down (ip link set ... down, inside the host).
func (w *Wire) Down(ctx context.Context) error {
	return w.inside(ctx, "ip link set "+w.Inner+" down")
}

// Up brings the inner end up again.
func (w *Wire) Up(ctx context.Context) error {
	return w.inside(ctx, "ip link set "+w.Inner+" up")
}

// Delete removes the interface from the host (and the outer end with it).
func (w *Wire) Delete(ctx context.Context) error {
	return w.inside(ctx, "ip link del "+w.Inner)
}

// Close releases the socket and removes the wire if it is still there.
func (w *Wire) Close() error {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
	if _, err := net.InterfaceByName(w.Outer); err == nil {
		return ipBatch("link del " + w.Outer)
	}
	return nil
}

// String names the wire for messages.
func (w *Wire) String() string {
	return w.Host.Name + ":" + w.Inner + " (" + w.Outer + ", ifindex " + strconv.Itoa(w.index) + ")"
}
