//go:build linux

package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/internal/agent/ring"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

// roundTrip writes packets and reads them back with pcapgo's reader.
func roundTrip(t *testing.T, cooked bool, pkts []ring.Packet) {
	t.Helper()
	var buf bytes.Buffer
	w, err := newFileWriter(&buf, header{Name: "h01.eth0.RxTx", Host: "h01", Case: "1", Interface: "eth0", Filter: "udp", Version: "test"}, cooked)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := range pkts {
		data, length := w.frame(&pkts[i])
		want = append(want, append([]byte(nil), data...))
		if err := w.writeFrame(&pkts[i], data, length); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	sizeBeforeClose := buf.Len()
	if err := w.close(time.Unix(1, 0), time.Unix(2, 0), 7, 3); err != nil {
		t.Fatal(err)
	}
	if n := buf.Len() - sizeBeforeClose; n != statsSize {
		t.Errorf("the statistics block took %d bytes, statsSize says %d", n, statsSize)
	}
	if int64(buf.Len()) != w.out.n.Load() {
		t.Fatalf("counted %d bytes, wrote %d", w.out.n.Load(), buf.Len())
	}
	if sum := fmt.Sprintf("%08x", crc32.Checksum(buf.Bytes(), crc32.MakeTable(crc32.Castagnoli))); sum != w.sum() {
		t.Fatalf("crc32c %s does not match the bytes' %s", w.sum(), sum)
	}
	var stats []pcapgo.NgInterfaceStatistics
	r, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.NgReaderOptions{
		StatisticsCallback: func(_ int, s pcapgo.NgInterfaceStatistics) { stats = append(stats, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	wantLT := layers.LinkTypeEthernet
	if cooked {
		wantLT = layers.LinkTypeLinuxSLL
	}
	if r.LinkType() != wantLT {
		t.Errorf("link type %v, want %v", r.LinkType(), wantLT)
	}
	if intf, _ := r.Interface(0); intf.Name != "h01.eth0.RxTx" || intf.Filter != "udp" || intf.TimestampResolution != 9 || intf.SnapLength != 262144 {
		t.Errorf("interface %+v", intf)
	}
	if si := r.SectionInfo(); si.Application != "casecap-agent test" || si.Comment != "case 1, host h01, written by casecap-agent" || si.OS == "" {
		t.Errorf("section %+v", si)
	}
	for i := 0; ; i++ {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			if i != len(pkts) {
				t.Fatalf("read %d packets, wrote %d", i, len(pkts))
			}
			break
		}
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if !bytes.Equal(data, want[i]) {
			t.Errorf("packet %d: read %x, want %x", i, data, want[i])
		}
		if !ci.Timestamp.Equal(pkts[i].Time()) {
			t.Errorf("packet %d: time %v, want %v", i, ci.Timestamp, pkts[i].Time())
		}
		dir := pcapgo.NgEpbFlagDirectionInbound
		if pkts[i].Outgoing() {
			dir = pcapgo.NgEpbFlagDirectionOutbound
		}
		if opts.Flags == nil || opts.Flags.Direction != dir {
			t.Errorf("packet %d: flags %+v, want direction %v", i, opts.Flags, dir)
		}
	}
	if len(stats) != 1 || stats[0].PacketsReceived != 7 || stats[0].PacketsDropped != 3 || !stats[0].StartTime.Equal(time.Unix(1, 0)) || !stats[0].EndTime.Equal(time.Unix(2, 0)) {
		t.Errorf("statistics blocks %+v, want one with 7 received, 3 dropped", stats)
	}
}

func TestWriterRoundTrip(t *testing.T) {
	frame := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 20}
	t0 := time.Unix(1_700_000_000, 123456789)
	roundTrip(t, false, []ring.Packet{
		{Data: frame, Length: len(frame), Nanos: t0.UnixNano(), Type: 1},
		{Data: frame, Length: 1500, Nanos: t0.Add(time.Millisecond).UnixNano(), Type: ring.PacketOutgoing, VLAN: true, VLANTCI: 100, VLANTPID: 0x8100},
	})
	// A packet as long as the snap length allows takes more than the
	// write buffer holds.
	big := make([]byte, bpfgen.WholePacket)
	copy(big, frame)
	roundTrip(t, false, []ring.Packet{
		{Data: frame, Length: len(frame), Nanos: t0.UnixNano(), Type: 1},
		{Data: big, Length: len(big), Nanos: t0.UnixNano(), Type: 1},
		{Data: frame, Length: len(frame), Nanos: t0.UnixNano(), Type: 1},
	})
	roundTrip(t, true, []ring.Packet{
		{Data: frame[14:], Length: 4, Nanos: t0.UnixNano(), Type: 0, Protocol: 0x0800, HAType: 1, Addr: []byte{2, 0, 0, 0, 0, 1}},
	})
	// The VLAN tag lands after the MAC addresses.
	w, _ := newFileWriter(io.Discard, header{}, false)
	got, n := w.frame(&ring.Packet{Data: frame, Length: len(frame), VLAN: true, VLANTCI: 0x2064, VLANTPID: 0x8100})
	if binary.BigEndian.Uint16(got[12:]) != 0x8100 || binary.BigEndian.Uint16(got[14:]) != 0x2064 || n != len(frame)+4 || !bytes.Equal(got[16:], frame[12:]) {
		t.Errorf("VLAN frame %x (len %d)", got, n)
	}
}

func FuzzWriter(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, uint8(0), false, uint16(0), false, []byte{1, 2})
	f.Add([]byte{}, uint8(4), true, uint16(4095), false, []byte{})
	f.Add([]byte{0x45}, uint8(3), false, uint16(0), true, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, data []byte, typ uint8, vlan bool, tci uint16, cooked bool, addr []byte) {
		if len(addr) > 8 {
			addr = addr[:8]
		}
		p := ring.Packet{Data: data, Length: len(data) + int(typ), Nanos: time.Unix(int64(tci), int64(typ)).UnixNano(), Type: typ % 5,
			VLAN: vlan, VLANTCI: tci, VLANTPID: 0x8100, Protocol: tci, Addr: addr}
		roundTrip(t, cooked, []ring.Packet{p, p})
	})
}

// BenchmarkWriteFrame is the per-packet cost of the file side (frame,
// encode, buffer, hash) without the kernel: 68-byte frames, as the flood.
func BenchmarkWriteFrame(b *testing.B) {
	w, err := newFileWriter(io.Discard, header{}, false)
	if err != nil {
		b.Fatal(err)
	}
	p := ring.Packet{Data: make([]byte, 68), Length: 68, Nanos: 1_700_000_000e9, Type: 1}
	b.SetBytes(int64(recordSize(68)))
	for b.Loop() {
		data, n := w.frame(&p)
		if err := w.writeFrame(&p, data, n); err != nil {
			b.Fatal(err)
		}
	}
}
