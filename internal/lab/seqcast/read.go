package seqcast

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Summary is what one capture file saw of a stream.
type Summary struct {
	Packets    int    // stream packets in the file, duplicates included
	Distinct   int    // distinct sequence numbers
	First      uint64 // lowest sequence number seen
	Last       uint64 // highest sequence number seen
	Missing    uint64 // numbers between First and Last that were not seen
	Duplicates int    // packets whose number was already seen
	// FirstSent and LastSent are the sender's timestamps of packets First and
	// Last: when, on the sender's clock, the capture saw its first and last
	// packet of the stream.
	FirstSent, LastSent time.Time
	// FirstSeen and LastSeen are the capture's own timestamps of the
	// earliest and latest stream packet in the file.
	FirstSeen, LastSeen time.Time
	Other               int // packets in the file that are not of the stream
}

// Contiguous reports whether every number from First to Last was seen.
func (s Summary) Contiguous() bool { return s.Distinct > 0 && s.Missing == 0 }

// ReadFile summarises stream in a pcap or pcapng file; stream 0 accepts any.
func ReadFile(path string, stream uint32) (Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Summary{}, err
	}
	defer f.Close()
	s, err := Read(f, stream)
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// packetSource is what pcapgo's two readers have in common.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Read summarises stream in a pcap or pcapng stream; stream 0 accepts any.
func Read(r io.Reader, stream uint32) (Summary, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(4)
	if err != nil {
		return Summary{}, fmt.Errorf("read file header: %w", err)
	}
	var src packetSource
	linkOf := func(gopacket.CaptureInfo) layers.LinkType { return 0 }
	if binary.LittleEndian.Uint32(head) == 0x0A0D0D0A {
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return Summary{}, fmt.Errorf("pcapng: %w", err)
		}
		src = ng
		linkOf = func(ci gopacket.CaptureInfo) layers.LinkType {
			if len(ci.AncillaryData) > 0 {
				if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
					return lt
				}
			}
			return ng.LinkType()
		}
	} else {
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return Summary{}, fmt.Errorf("pcap: %w", err)
		}
		src = pr
		lt := pr.LinkType()
		linkOf = func(gopacket.CaptureInfo) layers.LinkType { return lt }
	}

	var (
		sum  Summary
		seqs []uint64
		sent = map[uint64]time.Time{}
	)
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A file cut short (capture killed) still counts up to its last
			// whole packet.
			break
		}
		if err != nil {
			return sum, fmt.Errorf("packet %d: %w", sum.Packets+sum.Other+1, err)
		}
		payload, ok := UDPPayload(linkOf(ci), data)
		p, isSeq := ParsePayload(payload)
		if !ok || !isSeq || (stream != 0 && p.Stream != stream) {
			sum.Other++
			continue
		}
		sum.Packets++
		if sum.FirstSeen.IsZero() || ci.Timestamp.Before(sum.FirstSeen) {
			sum.FirstSeen = ci.Timestamp
		}
		if ci.Timestamp.After(sum.LastSeen) {
			sum.LastSeen = ci.Timestamp
		}
		seqs = append(seqs, p.Seq)
		if _, dup := sent[p.Seq]; !dup {
			sent[p.Seq] = p.Sent
		}
	}
	if len(seqs) == 0 {
		return sum, nil
	}
	slices.Sort(seqs)
	uniq := slices.Compact(seqs)
	sum.Distinct = len(uniq)
	sum.Duplicates = sum.Packets - sum.Distinct
	sum.First, sum.Last = uniq[0], uniq[len(uniq)-1]
	sum.Missing = sum.Last - sum.First + 1 - uint64(sum.Distinct)
	sum.FirstSent, sum.LastSent = sent[sum.First], sent[sum.Last]
	return sum, nil
}

// UDPPayload finds the payload of an IPv4 UDP packet captured with the given
// link type; ok is false for anything else (other protocols, fragments,
// truncated headers).
func UDPPayload(lt layers.LinkType, b []byte) ([]byte, bool) {
	var ethertype uint16
	switch lt {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return nil, false
		}
		ethertype, b = binary.BigEndian.Uint16(b[12:]), b[14:]
		for ethertype == 0x8100 || ethertype == 0x88a8 { // VLAN tags
			if len(b) < 4 {
				return nil, false
			}
			ethertype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		}
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return nil, false
		}
		ethertype, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return nil, false
		}
		ethertype, b = binary.BigEndian.Uint16(b), b[20:]
	case layers.LinkTypeRaw, layers.LinkTypeIPv4:
		ethertype = 0x0800
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) < 4 {
			return nil, false
		}
		family := binary.LittleEndian.Uint32(b)
		if lt == layers.LinkTypeLoop {
			family = binary.BigEndian.Uint32(b)
		}
		if family != 2 {
			return nil, false
		}
		ethertype, b = 0x0800, b[4:]
	default:
		return nil, false
	}
	if ethertype != 0x0800 || len(b) < 20 || b[0]>>4 != 4 {
		return nil, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || len(b) < ihl+8 || b[9] != 17 || binary.BigEndian.Uint16(b[6:])&0x3fff != 0 {
		return nil, false
	}
	udp := b[ihl:]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if ulen < 8 {
		return nil, false
	}
	end := min(ulen, len(udp))
	if total >= ihl+8 {
		end = min(end, total-ihl)
	}
	return udp[8:end], true
}

// Spread is how far apart instants are: the latest less the earliest (the
// start or stop skew of captures, from their first or last packets' send
// times). Zero for fewer than two.
func Spread(ts []time.Time) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	lo, hi := ts[0], ts[0]
	for _, x := range ts {
		if x.Before(lo) {
			lo = x
		}
		if x.After(hi) {
			hi = x
		}
	}
	return hi.Sub(lo)
}
