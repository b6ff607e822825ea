package seqcast

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// frame builds an Ethernet (optionally VLAN-tagged) IPv4 UDP frame.
func frame(t testing.TB, payload []byte, vlan bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 0, 255}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	_ = udp.SetNetworkLayerForChecksum(ip)
	ls := []gopacket.SerializableLayer{eth}
	if vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4})
	}
	ls = append(ls, ip, udp, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var t0 = time.Unix(1_700_000_000, 0)

func seqFrame(t testing.TB, stream uint32, seq uint64, vlan bool) []byte {
	return frame(t, Packet{Stream: stream, Seq: seq, Sent: t0.Add(time.Duration(seq) * time.Millisecond)}.Marshal(nil), vlan)
}

func TestReadPcapAndPcapng(t *testing.T) {
	// Stream 7 with 3..9, 6 missing, 4 twice; noise from stream 8 and a
	// non-stream packet; some frames VLAN-tagged.
	var frames [][]byte
	for _, s := range []uint64{3, 4, 4, 5, 7, 8, 9} {
		frames = append(frames, seqFrame(t, 7, s, s%2 == 0))
	}
	frames = append(frames, seqFrame(t, 8, 1, false), frame(t, []byte("hello, not a stream packet"), false))
	want := Summary{Packets: 7, Distinct: 6, First: 3, Last: 9, Missing: 1, Duplicates: 1,
		FirstSent: t0.Add(3 * time.Millisecond), LastSent: t0.Add(9 * time.Millisecond), Other: 2}

	var pcap bytes.Buffer
	w := pcapgo.NewWriterNanos(&pcap)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	var ng bytes.Buffer
	nw, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
		if err := nw.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := nw.Flush(); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"pcap": pcap.Bytes(), "pcapng": ng.Bytes()} {
		got, err := Read(bytes.NewReader(data), 7)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.FirstSent.Equal(want.FirstSent) || !got.LastSent.Equal(want.LastSent) {
			t.Errorf("%s: sent times %v..%v, want %v..%v", name, got.FirstSent, got.LastSent, want.FirstSent, want.LastSent)
		}
		if !got.FirstSeen.Equal(t0) || !got.LastSeen.Equal(t0.Add(6*time.Millisecond)) {
			t.Errorf("%s: seen %v..%v, want %v..%v", name, got.FirstSeen, got.LastSeen, t0, t0.Add(6*time.Millisecond))
		}
		got.FirstSent, got.LastSent = want.FirstSent, want.LastSent
		got.FirstSeen, got.LastSeen = time.Time{}, time.Time{}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
		if got.Contiguous() {
			t.Errorf("%s: a stream with a gap reports contiguous", name)
		}
	}
}

func TestReadTruncatedFile(t *testing.T) {
	var pcap bytes.Buffer
	w := pcapgo.NewWriter(&pcap)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for s := range uint64(5) {
		f := seqFrame(t, 1, s, false)
		_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(f), Length: len(f)}, f)
	}
	cut := pcap.Bytes()[:pcap.Len()-10] // the last packet is cut short
	got, err := Read(bytes.NewReader(cut), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got.First != 0 || got.Last != 3 || !got.Contiguous() {
		t.Errorf("truncated file: got %+v, want 0..3 contiguous", got)
	}
}

func TestUDPPayloadLinkTypes(t *testing.T) {
	payload := Packet{Stream: 1, Seq: 42}.Marshal(nil)
	eth := frame(t, payload, false)
	ipPkt := eth[14:]
	sll := append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00}, ipPkt...)
	sll2 := append([]byte{0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, ipPkt...)
	null := append([]byte{2, 0, 0, 0}, ipPkt...)
	cases := []struct {
		name string
		lt   layers.LinkType
		data []byte
		ok   bool
	}{
		{"ethernet", layers.LinkTypeEthernet, eth, true},
		{"vlan", layers.LinkTypeEthernet, frame(t, payload, true), true},
		{"sll", layers.LinkTypeLinuxSLL, sll, true},
		{"sll2", layers.LinkTypeLinuxSLL2, sll2, true},
		{"raw", layers.LinkTypeRaw, ipPkt, true},
		{"null", layers.LinkTypeNull, null, true},
		{"truncated ip", layers.LinkTypeEthernet, eth[:30], false},
		{"unknown link", layers.LinkType(147), eth, false},
	}
	for _, c := range cases {
		got, ok := UDPPayload(c.lt, c.data)
		if ok != c.ok {
			t.Errorf("%s: ok=%v, want %v", c.name, ok, c.ok)
			continue
		}
		if p, isSeq := ParsePayload(got); ok && (!isSeq || p.Seq != 42) {
			t.Errorf("%s: payload %x does not parse to seq 42", c.name, got)
		}
	}
}

func FuzzRead(f *testing.F) {
	var pcap bytes.Buffer
	w := pcapgo.NewWriter(&pcap)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	fr := seqFrame(f, 1, 1, true)
	_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(fr), Length: len(fr)}, fr)
	f.Add(pcap.Bytes())
	var ng bytes.Buffer
	nw, _ := pcapgo.NewNgWriter(&ng, layers.LinkTypeLinuxSLL)
	_ = nw.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(fr), Length: len(fr)}, fr)
	_ = nw.Flush()
	f.Add(ng.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Read(bytes.NewReader(data), 0)
		if err == nil && s.Distinct > 0 && s.Last < s.First {
			t.Fatalf("last %d below first %d", s.Last, s.First)
		}
	})
}

func FuzzUDPPayload(f *testing.F) {
	f.Add(uint32(1), seqFrame(f, 1, 1, false))
	f.Add(uint32(113), []byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00, 0x45})
	f.Fuzz(func(t *testing.T, lt uint32, data []byte) {
		if p, ok := UDPPayload(layers.LinkType(lt), data); ok && len(p) > len(data) {
			t.Fatalf("payload longer than the packet")
		}
	})
}
