package pcapfile

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The counter is fed files in random pieces, as pktcap-uw writes them.
func TestCounterPieces(t *testing.T) {
	var ng, pc bytes.Buffer
	nw, _ := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	pw := pcapgo.NewWriter(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
	var want uint64
	for i := range 300 {
		data := bytes.Repeat([]byte{byte(i)}, 14+i*7%1500)
		ci := gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(data), Length: len(data)}
		nw.WritePacket(ci, data)
		pw.WritePacket(ci, data)
		want += uint64(len(data))
	}
	nw.Flush()
	for name, raw := range map[string][]byte{"pcapng": ng.Bytes(), "pcap": pc.Bytes()} {
		for seed := range 20 {
			r := rand.New(rand.NewPCG(uint64(seed), 1))
			var c Counter
			for b := raw; len(b) > 0; {
				n := min(len(b), 1+r.IntN(3000))
				c.Feed(b[:n])
				b = b[n:]
			}
			if c.Err() != nil || c.Packets != 300 || c.Bytes != want || c.Pending() != 0 {
				t.Fatalf("%s seed %d: %d packets %d bytes, %v, %d pending", name, seed, c.Packets, c.Bytes, c.Err(), c.Pending())
			}
		}
	}
	var c Counter
	c.Feed([]byte("this is not a capture file at all"))
	if c.Err() == nil {
		t.Error("garbage counted")
	}
}
