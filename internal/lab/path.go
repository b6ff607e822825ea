//go:build linux

package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Path is a routed path through three lab hosts, off the lab's bridge (so
// SSH is untouched): a sender A, a router R with two interfaces, and a
// receiver B, each joined to the next by a link of its own:
//
//	A p0 ---- r0 R r1 ---- p0 B
//
// R's kernel does not forward; a forwarder in this process does, as a
// router would (next hop's MAC, TTL less one), and can drop and delay what
// goes from A to B, as a bad hop would. This kernel has no netem.
type Path struct {
	A, R, B *Host
	// The hosts' addresses on the path (A's and B's are what a test sends
	// to and from).
	AAddr, BAddr netip.Addr
	fwd          *forwarder
}

// PathOptions say what the router does to packets from A to B.
type PathOptions struct {
	Delay     time.Duration // added to every packet
	DropEvery int           // drop one IPv4 packet in this many, at random (0: none)
}

// Drop is a packet the router dropped.
type Drop struct {
	At  time.Time
	TCP bool
}

// Drops are the packets the router dropped (read it once the path is
// closed).
func (p *Path) Drops() []Drop { return p.fwd.drops }

// PathStats are what the router did.
type PathStats struct {
	Forwarded, Dropped uint64 // A to B
	Back               uint64 // B to A, forwarded
}

// The path's link interfaces.
const (
	PathIf    = "p0" // A's and B's
	RouterIn  = "r0" // R's, towards A
	RouterOut = "r1" // R's, towards B
)

// NewPath joins a, r and b into a routed path.
func (l *Lab) NewPath(ctx context.Context, a, r, b *Host, opt PathOptions) (*Path, error) {
	// Addresses in 198.19.(128+K).0/24: apart from the hosts' (198.18.K)
	// and the ESXi VMs' (198.19.K), inside 198.18.0.0/15 like them.
	id := byte(128 + l.ID)
	mac := func(i int) string { return fmt.Sprintf("02:cd:%02x:00:00:%02x", id, i) }
	addr := func(i byte) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, id, i}) }
	p := &Path{A: a, R: r, B: b, AAddr: addr(1), BAddr: addr(18)}
	// Two links, each made with its ends in their hosts (named there).
	for _, cmd := range []string{
		fmt.Sprintf("link add %s netns %d address %s type veth peer name %s netns %d address %s", PathIf, a.InitPID, mac(1), RouterIn, r.InitPID, mac(2)),
		fmt.Sprintf("link add %s netns %d address %s type veth peer name %s netns %d address %s", RouterOut, r.InitPID, mac(3), PathIf, b.InitPID, mac(4)),
	} {
		if err := ipBatch(cmd); err != nil {
			return nil, err
		}
	}
	quiet := func(ifs ...string) string {
		s := ""
		for _, i := range ifs {
			s += "sysctl -qw net.ipv6.conf." + i + ".disable_ipv6=1 && ip link set " + i + " up && "
		}
		return s
	}
	for _, step := range []struct {
		h      *Host
		script string
	}{
		{a, quiet(PathIf) + fmt.Sprintf("ip addr add %s/28 dev p0 && ip route add 198.19.%d.16/28 via %s && ip neigh replace %s lladdr %s dev p0 nud permanent",
			addr(1), id, addr(2), addr(2), mac(2))},
		{r, quiet(RouterIn, RouterOut) + fmt.Sprintf("sysctl -qw net.ipv4.ip_forward=0 && ip addr add %s/28 dev r0 && ip addr add %s/28 dev r1", addr(2), addr(17))},
		{b, quiet(PathIf) + fmt.Sprintf("ip addr add %s/28 dev p0 && ip route add 198.19.%d.0/28 via %s && ip neigh replace %s lladdr %s dev p0 nud permanent",
			addr(18), id, addr(17), addr(17), mac(3))},
	} {
		if out, err := step.h.Command(ctx, "sh", "-c", step.script).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %s: %v: %s", step.h.Name, step.script, err, out)
		}
	}
	macs := [4]net.HardwareAddr{}
	for i := range macs {
		macs[i], _ = net.ParseMAC(mac(i + 1))
	}
	fwd, err := newForwarder(r, opt, macs)
	if err != nil {
		return nil, err
	}
	p.fwd = fwd
	return p, nil
}

// Overlay is a VXLAN overlay between A and B, over the path: what A sends
// to BOverlay leaves A's p0 encapsulated (UDP 4789) and is taken off at B.
type Overlay struct {
	If                 string // the VXLAN device on A and on B
	AOverlay, BOverlay netip.Addr
}

// AddVXLAN joins A and B by a VXLAN device (vx0, this VNI) over the path.
func (p *Path) AddVXLAN(ctx context.Context, vni int) (*Overlay, error) {
	id := p.AAddr.As4()[2]
	o := &Overlay{If: "vx0", AOverlay: netip.AddrFrom4([4]byte{198, 19, id, 33}), BOverlay: netip.AddrFrom4([4]byte{198, 19, id, 34})}
	for _, side := range []struct {
		h             *Host
		local, remote netip.Addr
		addr          netip.Addr
	}{{p.A, p.AAddr, p.BAddr, o.AOverlay}, {p.B, p.BAddr, p.AAddr, o.BOverlay}} {
		script := fmt.Sprintf("ip link add vx0 type vxlan id %d local %s remote %s dstport 4789 dev %s && sysctl -qw net.ipv6.conf.vx0.disable_ipv6=1 && ip addr add %s/28 dev vx0 && ip link set vx0 up",
			vni, side.local, side.remote, PathIf, side.addr)
		if out, err := side.h.Command(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %s: %v: %s", side.h.Name, script, err, out)
		}
	}
	return o, nil
}

// Stats are the router's counts so far.
func (p *Path) Stats() PathStats {
	return PathStats{Forwarded: p.fwd.forwarded.Load(), Dropped: p.fwd.dropped.Load(), Back: p.fwd.back.Load()}
}

// Close stops the router (the links go with the hosts).
func (p *Path) Close() error { return p.fwd.close() }

// InHost runs fn on a thread inside h's network namespace: sockets it
// makes belong to h (a test's sender and receiver), and stay there. The
// thread goes back to this process's namespace afterwards; if it cannot,
// it stays locked and dies with its goroutine, so that no other goroutine
// runs in h's namespace by chance (and the process is never seen there).
func InHost(h *Host, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer home.Close()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", h.InitPID))
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s's network: %w", h.Name, err)
			return
		}
		err = fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// forwarder moves frames between R's two interfaces.
type forwarder struct {
	in, out                  int // packet sockets on r0 and r1
	inIdx, outIdx            int
	opt                      PathOptions
	macs                     [4]net.HardwareAddr // A p0, R r0, R r1, B p0
	forwarded, dropped, back atomic.Uint64
	n                        uint64 // IPv4 packets from A seen (drop counter)
	drops                    []Drop
	rng                      *rand.Rand
	stop                     atomic.Bool
	wg                       sync.WaitGroup
}

func newForwarder(r *Host, opt PathOptions, macs [4]net.HardwareAddr) (*forwarder, error) {
	f := &forwarder{opt: opt, macs: macs, in: -1, out: -1, rng: rand.New(rand.NewPCG(1, 2))}
	err := InHost(r, func() error {
		var err error
		if f.in, f.inIdx, err = packetSocket(RouterIn); err != nil {
			return err
		}
		f.out, f.outIdx, err = packetSocket(RouterOut)
		return err
	})
	if err != nil {
		f.close()
		return nil, err
	}
	f.wg.Add(2)
	go f.run(f.in, f.out, f.outIdx, macs[2], macs[3], true)
	go f.run(f.out, f.in, f.inIdx, macs[1], macs[0], false)
	return f, nil
}

// packetSocket opens a packet socket on an interface of the current
// network namespace, which hears what arrives there but not what is sent.
func packetSocket(name string) (fd, index int, err error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return -1, 0, err
	}
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, 0, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	// Room for a burst: a drop here would be loss nobody asked for.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000}); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	return fd, ifi.Index, nil
}

// run forwards IPv4 frames read from `from` to `to`: the next hop's MAC,
// TTL less one, and from A to B the drops and the delay asked for.
func (f *forwarder) run(from, to, toIdx int, src, dst net.HardwareAddr, aToB bool) {
	defer f.wg.Done()
	type due struct {
		at    time.Time
		frame []byte
	}
	line := make(chan due, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range line {
			time.Sleep(time.Until(d.at))
			_ = unix.Sendto(to, d.frame, 0, &unix.SockaddrLinklayer{Ifindex: toIdx, Halen: 6})
		}
	}()
	defer func() { close(line); <-done }()
	buf := make([]byte, 128<<10) // a segment before segmentation offload: up to 64 KiB and headers
	for !f.stop.Load() {
		n, _, err := unix.Recvfrom(from, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		frame := buf[:n]
		if n < 34 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 || frame[14+8] <= 1 {
			continue // not IPv4, or its TTL is spent
		}
		out := append([]byte(nil), frame...)
		copy(out[0:6], dst)
		copy(out[6:12], src)
		out[14+8]-- // TTL
		ipChecksum(out[14 : 14+int(out[14]&0x0f)*4])
		// A segment larger than the link (segmentation offload upstream)
		// leaves in MSS-sized pieces, as the NIC would cut it; drops are
		// of packets on the wire.
		for _, piece := range segment(out, linkMTU) {
			if aToB {
				f.n++
				// At random (seeded: the same drops run to run), one in
				// DropEvery: every Nth would fall in step with a flow's
				// bursts and drop one flow more than another.
				if f.opt.DropEvery > 0 && f.rng.IntN(f.opt.DropEvery) == 0 {
					f.dropped.Add(1)
					f.drops = append(f.drops, Drop{At: time.Now(), TCP: piece[14+9] == 6})
					continue
				}
				f.forwarded.Add(1)
				line <- due{time.Now().Add(f.opt.Delay), piece}
			} else {
				f.back.Add(1)
				line <- due{time.Now(), piece}
			}
		}
	}
}

// linkMTU is the path's links' MTU.
const linkMTU = 1500

// segment cuts an IPv4 TCP frame larger than the link into MSS-sized
// frames, as a NIC's segmentation offload does: each with the headers,
// the IP ID counted up, the sequence number moved on, PSH and FIN on the
// last only, both checksums new. Its transport checksum is made whole in
// any case: the sender's kernel left it to the (virtual) NIC, and a
// packet socket hands it over unfinished. (UDP's is set to none, which
// IPv4 allows.)
func segment(frame []byte, mtu int) [][]byte {
	ihl := int(frame[14]&0x0f) * 4
	switch frame[14+9] {
	case 17:
		if len(frame) >= 14+ihl+8 {
			frame[14+ihl+6], frame[14+ihl+7] = 0, 0
		}
		return [][]byte{frame}
	case 6:
		if len(frame) < 14+ihl+20 {
			return [][]byte{frame}
		}
		if len(frame) <= 14+mtu {
			tcpChecksum(frame[14:], ihl)
			return [][]byte{frame}
		}
	default:
		return [][]byte{frame}
	}
	thl := int(frame[14+ihl+12]>>4) * 4
	hdr := 14 + ihl + thl
	end := len(frame)
	if total := int(binary.BigEndian.Uint16(frame[14+2:])); total != 0 {
		end = min(end, 14+total)
	}
	if hdr >= end {
		return [][]byte{frame}
	}
	payload := frame[hdr:end]
	mss := mtu - ihl - thl
	id := binary.BigEndian.Uint16(frame[14+4:])
	seq := binary.BigEndian.Uint32(frame[14+ihl+4:])
	flags := frame[14+ihl+13]
	var out [][]byte
	for off := 0; off < len(payload); off += mss {
		n := min(mss, len(payload)-off)
		f := make([]byte, hdr+n)
		copy(f, frame[:hdr])
		copy(f[hdr:], payload[off:off+n])
		ip := f[14:]
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+thl+n))
		binary.BigEndian.PutUint16(ip[4:], id+uint16(len(out)))
		binary.BigEndian.PutUint32(ip[ihl+4:], seq+uint32(off))
		if off+n < len(payload) {
			ip[ihl+13] = flags &^ (0x01 | 0x08) // FIN and PSH: the last piece's
		}
		ipChecksum(ip[:ihl])
		tcpChecksum(ip, ihl)
		out = append(out, f)
	}
	return out
}

// tcpChecksum sets the TCP checksum of an IPv4 packet (header length ihl).
func tcpChecksum(ip []byte, ihl int) {
	seg := ip[ihl:]
	seg[16], seg[17] = 0, 0
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[12:20]) // source and destination
	sum += 6 + uint32(len(seg))
	add(seg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(seg[16:], ^uint16(sum))
}

// ipChecksum sets an IPv4 header's checksum.
func ipChecksum(h []byte) {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}

func (f *forwarder) close() error {
	f.stop.Store(true)
	f.wg.Wait()
	for _, fd := range []int{f.in, f.out} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	return nil
}
