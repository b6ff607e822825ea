//go:build linux

package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/agent/hostclock"
)

// Options say what to capture and how big the ring is.
type Options struct {
	Interface string // "" or "any": every interface (cooked packets)
	Program   []bpf.RawInstruction
	// BlockSize and Blocks size the ring (default 1 MiB x 4, twice
	// tcpdump's default buffer; a plan's buffer says otherwise). A bigger ring rides out longer bursts before
	// the kernel drops, and costs kernel memory on every capture.
	BlockSize int
	Blocks    int
	// BlockTimeout is how long the kernel holds a partly filled block before
	// handing it over (default 50 ms): the latency of a quiet capture.
	BlockTimeout time.Duration
	NoPromisc    bool
}

// Ring is an open capture socket with its ring. It is not safe for
// concurrent use: one goroutine reads, then closes.
type Ring struct {
	fd        int
	mem       []byte
	blockSize int
	blocks    int
	cooked    bool
	ifindex   int

	cur      int    // block being read
	blk      []byte // that block, while inBlock
	inBlock  bool
	left     int // packets left in the current block
	off      int // offset of the next packet in the block
	received uint64
	dropped  uint64
	closed   atomic.Bool
	skew     int64 // added to the kernel's timestamps: the agent's clock (hostclock)
}

// Packet is one captured packet. Data points into the ring and is valid
// only until the next call to Next.
type Packet struct {
	Data     []byte
	Length   int   // length on the wire
	Nanos    int64 // kernel timestamp, Unix nanoseconds
	Ifindex  int
	Type     uint8  // PACKET_HOST, _BROADCAST, _MULTICAST, _OTHERHOST, _OUTGOING
	Protocol uint16 // EtherType
	HAType   uint16 // ARPHRD_*
	Addr     []byte // link-layer source address
	VLAN     bool   // VLANTCI holds a tag the kernel took off the frame
	VLANTCI  uint16
	VLANTPID uint16
}

// PacketOutgoing is the kernel's packet type for packets this host sent.
const PacketOutgoing = 4

// PacketUnknown marks a packet whose direction its source does not say
// (pktcap-uw's stream of a session in both directions).
const PacketUnknown = 255

// Time is the kernel's timestamp.
func (p *Packet) Time() time.Time { return time.Unix(0, p.Nanos) }

// Outgoing reports whether the host sent the packet (else it received it).
func (p *Packet) Outgoing() bool { return p.Type == PacketOutgoing }

// ErrTimeout is returned by Next when no packet arrived in time.
var ErrTimeout = errors.New("ring: no packet before the timeout")

// ErrInterfaceGone is returned by Next once the interface the ring is bound
// to has been removed from the host: no packet can ever come again.
var ErrInterfaceGone = errors.New("ring: the interface is gone")

const (
	ethPAll         = 0x0003
	blockStatusOff  = 8  // tpacket_hdr_v1.block_status, after version and offset_to_priv
	blockNumPktsOff = 12 // tpacket_hdr_v1.num_pkts
	tpStatusVLAN    = 1 << 4
	tpStatusTPID    = 1 << 6
	tpHdrLen        = 48 // TPACKET_ALIGN(sizeof(struct tpacket3_hdr))
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Cooked reports whether iface carries no Ethernet header (or is "any"), so
// that the socket must be SOCK_DGRAM and packets start at the network layer.
func Cooked(iface string) (bool, error) {
	if iface == "" || iface == "any" {
		return true, nil
	}
	raw, err := os.ReadFile("/sys/class/net/" + iface + "/type")
	if err != nil {
		if _, ierr := net.InterfaceByName(iface); ierr != nil {
			return false, fmt.Errorf("no interface %q on this host", iface)
		}
		return false, err
	}
	t, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return t != unix.ARPHRD_ETHER && t != unix.ARPHRD_LOOPBACK, nil
}

// Open creates the socket, attaches the filter, maps the ring and only then
// binds to the interface, so that no packet arrives before the filter.
func Open(opt Options) (r *Ring, err error) {
	if opt.BlockSize == 0 {
		opt.BlockSize = 1 << 20
	}
	if opt.Blocks == 0 {
		opt.Blocks = 4
	}
	if opt.BlockTimeout == 0 {
		opt.BlockTimeout = 50 * time.Millisecond
	}
	if len(opt.Program) == 0 {
		return nil, errors.New("ring: a filter program is required (it sets the snap length)")
	}
	cooked, err := Cooked(opt.Interface)
	if err != nil {
		return nil, err
	}
	ifindex := 0
	if opt.Interface != "" && opt.Interface != "any" {
		ifi, err := net.InterfaceByName(opt.Interface)
		if err != nil {
			return nil, fmt.Errorf("no interface %q on this host", opt.Interface)
		}
		ifindex = ifi.Index
	}
	typ := unix.SOCK_RAW
	if cooked {
		typ = unix.SOCK_DGRAM
	}
	// Protocol 0: the socket receives nothing until bind names a protocol.
	fd, err := unix.Socket(unix.AF_PACKET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w (capturing needs root or CAP_NET_RAW)", err)
	}
	r = &Ring{fd: fd, blockSize: opt.BlockSize, blocks: opt.Blocks, cooked: cooked, ifindex: ifindex, skew: hostclock.Skew().Nanoseconds()}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("TPACKET_V3: %w", err)
	}
	prog := make([]unix.SockFilter, len(opt.Program))
	for i, ins := range opt.Program {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		return nil, fmt.Errorf("attach filter: %w", err)
	}
	const frameSize = 2048
	req := unix.TpacketReq3{
		Block_size:     uint32(opt.BlockSize),
		Block_nr:       uint32(opt.Blocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(opt.BlockSize / frameSize * opt.Blocks),
		Retire_blk_tov: uint32(max(1, opt.BlockTimeout.Milliseconds())),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("set up a %d x %d ring: %w", opt.Blocks, opt.BlockSize, err)
	}
	if r.mem, err = unix.Mmap(fd, 0, opt.BlockSize*opt.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("map the ring: %w", err)
	}
	if ifindex != 0 && !opt.NoPromisc {
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return nil, fmt.Errorf("promiscuous mode on %s: %w", opt.Interface, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("bind to %s: %w", opt.Interface, err)
	}
	return r, nil
}

// IsCooked reports whether packets start at the network header (SOCK_DGRAM).
func (r *Ring) IsCooked() bool { return r.cooked }

func (r *Ring) block(i int) []byte { return r.mem[i*r.blockSize : (i+1)*r.blockSize] }

func (r *Ring) status(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[i*r.blockSize+blockStatusOff]))
}

func (r *Ring) numPkts(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[i*r.blockSize+blockNumPktsOff]))
}

// Pending reports whether the ring holds packets Next has not returned,
// including those in the block the kernel is filling and will hand over
// only at the block timeout. A reader that saw no packet for a while can
// so tell "nothing more" from "more, not handed over yet": the kernel
// counts a packet in its block before it copies it in, and opens every
// block with a count of zero (Next zeroes the count of a block it gives
// back, so that a block the kernel has not reopened reads as empty).
func (r *Ring) Pending() bool {
	if r.inBlock && r.left > 0 {
		return true
	}
	i := r.cur
	if r.inBlock { // read to its end, not given back yet
		i = (r.cur + 1) % r.blocks
	}
	return atomic.LoadUint32(r.status(i))&unix.TP_STATUS_USER != 0 || atomic.LoadUint32(r.numPkts(i)) > 0
}

// Next returns the next packet, waiting at most timeout for one. It polls
// at most once: whatever woke the poll without a packet (a timeout, a
// signal, an error on the socket) returns to the caller, whose loop keeps
// its clock, its stops and its signals. An interface that goes down raises
// ENETDOWN on the socket, which poll reports at once and for ever until it
// is read: Next reads it, so that the next poll sleeps until the link is
// back, and returns ErrTimeout; an interface that was removed returns
// ErrInterfaceGone. (Polling again on the spot, as Next once did, spun the
// capture at full CPU, deaf to everything, while a link was down.)
func (r *Ring) Next(timeout time.Duration) (Packet, error) {
	for !r.inBlock || r.left == 0 {
		if r.inBlock { // done with this block: give it back to the kernel
			atomic.StoreUint32(r.numPkts(r.cur), 0)
			atomic.StoreUint32(r.status(r.cur), unix.TP_STATUS_KERNEL)
			r.cur = (r.cur + 1) % r.blocks
			r.inBlock = false
		}
		if atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER == 0 {
			pfd := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
			_, err := unix.Poll(pfd, int(timeout.Milliseconds()))
			if err != nil && !errors.Is(err, unix.EINTR) {
				return Packet{}, fmt.Errorf("poll: %w", err)
			}
			if atomic.LoadUint32(r.status(r.cur))&unix.TP_STATUS_USER == 0 {
				if pfd[0].Revents&unix.POLLERR != 0 {
					if err := r.socketError(); err != nil {
						return Packet{}, err
					}
				}
				return Packet{}, ErrTimeout
			}
		}
		r.blk = r.block(r.cur)
		r.inBlock = true
		r.left = int(binary.NativeEndian.Uint32(r.blk[12:]))
		r.off = int(binary.NativeEndian.Uint32(r.blk[16:]))
	}
	h := r.blk[r.off:]
	next := binary.NativeEndian.Uint32(h[0:])
	snap := int(binary.NativeEndian.Uint32(h[12:]))
	status := binary.NativeEndian.Uint32(h[20:])
	mac := int(binary.NativeEndian.Uint16(h[24:]))
	p := Packet{
		Nanos:    int64(binary.NativeEndian.Uint32(h[4:]))*1e9 + int64(binary.NativeEndian.Uint32(h[8:])) + r.skew,
		Length:   int(binary.NativeEndian.Uint32(h[16:])),
		Data:     h[mac : mac+snap : mac+snap],
		Protocol: binary.BigEndian.Uint16(h[tpHdrLen+2:]),
		Ifindex:  int(int32(binary.NativeEndian.Uint32(h[tpHdrLen+4:]))),
		HAType:   binary.NativeEndian.Uint16(h[tpHdrLen+8:]),
		Type:     h[tpHdrLen+10],
	}
	if halen := int(h[tpHdrLen+11]); halen <= 8 {
		p.Addr = h[tpHdrLen+12 : tpHdrLen+12+halen]
	}
	if status&tpStatusVLAN != 0 {
		p.VLAN = true
		p.VLANTCI = uint16(binary.NativeEndian.Uint32(h[32:]))
		p.VLANTPID = 0x8100
		if status&tpStatusTPID != 0 {
			p.VLANTPID = binary.NativeEndian.Uint16(h[36:])
		}
	}
	r.left--
	r.off += int(next)
	return p, nil
}

// socketError reads (and so clears) the error pending on the socket. The
// kernel sets ENETDOWN when the bound interface goes down and again when it
// is removed; only the removal is an error for the capture.
func (r *Ring) socketError() error {
	errno, err := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("read the socket's error: %w", err)
	}
	switch {
	case errno == 0, unix.Errno(errno) == unix.ENETDOWN && !r.Gone():
		return nil // down, or already cleared: wait for the link
	case unix.Errno(errno) == unix.ENETDOWN:
		return ErrInterfaceGone
	}
	return fmt.Errorf("capture socket: %w", unix.Errno(errno))
}

// Gone reports whether the interface the ring is bound to has been removed.
// The kernel unbinds such a socket (its interface index becomes -1); that
// is the one sure sign, since a removal while the link was already down
// raises no error on the socket. A ring on every interface is never gone.
func (r *Ring) Gone() bool {
	if r.ifindex == 0 {
		return false
	}
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		return false
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	return ok && ll.Ifindex != r.ifindex
}

// Stats returns the kernel's counters since Open: packets the filter passed
// to the socket, and packets dropped because the ring was full.
func (r *Ring) Stats() (received, dropped uint64, err error) {
	s, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return r.received, r.dropped, err
	}
	// Reading the counters resets them: keep the running totals.
	r.received += uint64(s.Packets)
	r.dropped += uint64(s.Drops)
	return r.received, r.dropped, nil
}

// Close releases the ring and the socket (and with it promiscuous mode).
func (r *Ring) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
	return unix.Close(r.fd)
}
