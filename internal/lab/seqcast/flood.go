package seqcast

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// FloodOptions say what flood to send: numbered packets at a high rate, in
// batches (sendmmsg), for capture benchmarks.
type FloodOptions struct {
	From   netip.Addr
	To     netip.AddrPort
	Stream uint32
	Rate   int    // packets per second; 0: as fast as possible
	Count  uint64 // packets to send
	Batch  int    // packets per sendmmsg call (default 64)
}

// Flood sends opt.Count numbered packets at opt.Rate and returns what it sent.
func Flood(ctx context.Context, opt FloodOptions) (Sent, error) {
	if opt.Batch <= 0 {
		opt.Batch = 64
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
			if serr == nil {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 8<<20)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(opt.From, 0).String())
	if err != nil {
		return Sent{}, fmt.Errorf("seqcast: listen on %s: %w", opt.From, err)
	}
	defer pc.Close()
	conn := ipv4.NewPacketConn(pc)
	dst := net.UDPAddrFromAddrPort(opt.To)
	msgs := make([]ipv4.Message, opt.Batch)
	bufs := make([][]byte, opt.Batch)
	for i := range msgs {
		bufs[i] = make([]byte, 0, PayloadLen)
		msgs[i] = ipv4.Message{Addr: dst}
	}
	var s Sent
	start := time.Now()
	for seq := uint64(0); seq < opt.Count; {
		if ctx.Err() != nil {
			return s, nil
		}
		if opt.Rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(seq) / float64(opt.Rate) * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		n := int(min(uint64(opt.Batch), opt.Count-seq))
		now := time.Now()
		for i := range n {
			bufs[i] = Packet{Stream: opt.Stream, Seq: seq + uint64(i), Sent: now}.Marshal(bufs[i][:0])
			msgs[i].Buffers = [][]byte{bufs[i]}
		}
		for off := 0; off < n; {
			w, err := conn.WriteBatch(msgs[off:n], 0)
			if err != nil {
				return s, fmt.Errorf("seqcast: flood to %s: %w", opt.To, err)
			}
			off += w
		}
		if s.Packets == 0 {
			s.First = now
		}
		s.Last = now
		s.Packets += uint64(n)
		seq += uint64(n)
	}
	return s, nil
}
