package seqcast

import (
	"encoding/binary"
	"time"
)

// Magic opens every payload.
var Magic = []byte("CCSEQ\x01")

// PayloadLen is the length of a payload.
const PayloadLen = 6 + 4 + 8 + 8

// Packet is one numbered broadcast.
type Packet struct {
	Stream uint32
	Seq    uint64
	Sent   time.Time
}

// Marshal appends the payload of p to b.
func (p Packet) Marshal(b []byte) []byte {
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, p.Stream)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	return binary.BigEndian.AppendUint64(b, uint64(p.Sent.UnixNano()))
}

// ParsePayload decodes a UDP payload; ok is false for anything else.
func ParsePayload(b []byte) (p Packet, ok bool) {
	if len(b) < PayloadLen || string(b[:len(Magic)]) != string(Magic) {
		return Packet{}, false
	}
	b = b[len(Magic):]
	p.Stream = binary.BigEndian.Uint32(b)
	p.Seq = binary.BigEndian.Uint64(b[4:])
	p.Sent = time.Unix(0, int64(binary.BigEndian.Uint64(b[12:])))
	return p, true
}
