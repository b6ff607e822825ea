package seqcast

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// SendOptions say what stream to send.
type SendOptions struct {
	From     netip.Addr     // local address to send from (the lab's gateway)
	To       netip.AddrPort // a broadcast address and port
	Stream   uint32         // tells this stream from others in one file
	Interval time.Duration  // time between packets; the resolution of skew figures
	Count    uint64         // packets to send; 0 sends until ctx ends
	// OnSend, if set, is told when each packet left (for tests that must
	// know the send time of packets a capture did not keep).
	OnSend func(seq uint64, at time.Time)
}

// Sent says what a Send did.
type Sent struct {
	Packets     uint64
	First, Last time.Time
}

// Send sends numbered packets, one every Interval, numbered from 0. When it
// falls behind it sends the late packets at once rather than skipping
// numbers, so numbers stay contiguous; each payload carries its real send
// time, which is what skew figures use.
func Send(ctx context.Context, opt SendOptions) (Sent, error) {
	if opt.Interval <= 0 {
		return Sent{}, fmt.Errorf("seqcast: interval must be positive, got %v", opt.Interval)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
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
	conn := pc.(*net.UDPConn)
	dst := net.UDPAddrFromAddrPort(opt.To)

	var s Sent
	buf := make([]byte, 0, PayloadLen)
	start := time.Now()
	for seq := uint64(0); opt.Count == 0 || seq < opt.Count; seq++ {
		due := start.Add(time.Duration(seq) * opt.Interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return s, nil
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return s, nil
		}
		now := time.Now()
		buf = Packet{Stream: opt.Stream, Seq: seq, Sent: now}.Marshal(buf[:0])
		if _, err := conn.WriteToUDP(buf, dst); err != nil {
			return s, fmt.Errorf("seqcast: send #%d to %s: %w", seq, opt.To, err)
		}
		if opt.OnSend != nil {
			opt.OnSend(seq, now)
		}
		if s.Packets == 0 {
			s.First = now
		}
		s.Last = now
		s.Packets++
	}
	return s, nil
}
