package live

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab/frames"
)

func block(typ uint32, body []byte) []byte {
	n := 12 + (len(body)+3)&^3
	b := le.AppendUint32(nil, typ)
	b = le.AppendUint32(b, uint32(n))
	b = append(b, body...)
	b = append(b, make([]byte, (4-len(body)&3)&3)...)
	return le.AppendUint32(b, uint32(n))
}

func shb() []byte { return block(blockSHB, le.AppendUint32(make([]byte, 0, 12), 0x1A2B3C4D)[:4:4]) }

func idb() []byte { return block(blockIDB, []byte{1, 0, 0, 0, 0, 0, 4, 0}) }

// epb is an enhanced packet block at ns with its epb_flags direction.
func epb(ns int64, data []byte, dir uint32) []byte {
	body := le.AppendUint32(nil, 0)
	body = le.AppendUint32(body, uint32(uint64(ns)>>32))
	body = le.AppendUint32(body, uint32(ns))
	body = le.AppendUint32(body, uint32(len(data)))
	body = le.AppendUint32(body, uint32(len(data)))
	body = append(body, data...)
	body = append(body, make([]byte, (4-len(data)&3)&3)...)
	body = le.AppendUint16(le.AppendUint16(body, 2), 4)
	body = le.AppendUint32(body, dir)
	body = le.AppendUint32(body, 0)
	return block(blockEPB, body)
}

// TestFeedOrders: packets of two captures come in pieces out of order
// and are handed out in time order on casecap's clock (each host's
// correction applied), with their direction and a tcpdump-like line.
func TestFeedOrders(t *testing.T) {
	udp := frames.UDP("198.18.0.1", "198.18.0.11", 40000, 9999, []byte("hello"))
	base := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC).UnixNano()
	var mu sync.Mutex
	var got []Packet
	f := &Feed{Captures: []Capture{{Name: "a.eth0.RxTx"}, {Name: "b.eth0.RxTx", Correction: time.Second}}, Delay: 50 * time.Millisecond,
		Out: func(p Packet) { mu.Lock(); got = append(got, p); mu.Unlock() }}
	f.Start()
	// b's clock is 1 s ahead: its packet stamped base+1.5s is at base+0.5s.
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Piece(0, append(append(shb(), idb()...), epb(base+time.Second.Nanoseconds(), udp, 1)...)))
	must(f.Piece(1, append(append(shb(), idb()...), epb(base+1500*time.Millisecond.Nanoseconds(), udp, 2)...)))
	must(f.Piece(0, epb(base, udp, 1)))
	f.Close()
	if len(got) != 3 || got[0].Capture != 0 || got[1].Capture != 1 || got[2].Capture != 0 {
		t.Fatalf("order %+v", got)
	}
	if !got[1].Time.Equal(time.Unix(0, base+500*time.Millisecond.Nanoseconds())) || got[1].Dir != 'O' || got[0].Dir != 'I' {
		t.Fatalf("b's packet at %v, dir %c", got[1].Time, got[1].Dir)
	}
	var b strings.Builder
	pr := &Printer{W: &b, Captures: f.Captures}
	pr.Print(got[0])
	if line := b.String(); !strings.Contains(line, "a.eth0.RxTx In  ") || !strings.Contains(line, "198.18.0.1.40000 > 198.18.0.11.9999: UDP, length 5") {
		t.Fatalf("line %q", line)
	}
	if err := f.Piece(0, []byte{1, 2, 3}); err == nil {
		t.Error("a broken piece was read")
	}
}
