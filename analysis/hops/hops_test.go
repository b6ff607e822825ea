package hops

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/analysis/casedir"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// seen is a frame as one capture point saw it, at a time on casecap's
// clock.
type seen struct {
	at    time.Duration
	frame []byte
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// udp is datagram number i from src to dst; ttl changes on the way.
func udp(t testing.TB, src, dst net.IP, i int, ttl uint8) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: uint16(i), Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	u := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr{0, 1, 2, 3, 4, 5}, DstMAC: net.HardwareAddr{0, 1, 2, 3, 4, 6}, EthernetType: layers.EthernetTypeIPv4},
		ip, u, gopacket.Payload(fmt.Appendf(nil, "datagram %08d", i)))
}

// tcpSeg is a TCP segment carrying n bytes from seq, with its own IP ID.
func tcpSeg(t testing.TB, src, dst net.IP, id uint16, seq uint32, n int) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst, Flags: layers.IPv4DontFragment}
	tc := &layers.TCP{SrcPort: 50000, DstPort: 443, Seq: seq, Ack: 1, ACK: true, Window: 1000}
	tc.SetNetworkLayerForChecksum(ip)
	return serialize(t, &layers.Ethernet{SrcMAC: net.HardwareAddr{0, 1, 2, 3, 4, 5}, DstMAC: net.HardwareAddr{0, 1, 2, 3, 4, 6}, EthernetType: layers.EthernetTypeIPv4},
		ip, tc, gopacket.Payload(make([]byte, n)))
}

type point struct {
	name, host  string
	offset      time.Duration // the host's clock: its file's timestamps are this far ahead
	unc         time.Duration
	start, stop time.Duration // its window (casecap's clock)
	frames      []seen
}

// writeCase writes the points' captures (timestamps on their hosts'
// clocks) and the manifest, as collect leaves a case folder.
func writeCase(t testing.TB, pts []point) *casedir.Case {
	dir := t.TempDir()
	type host struct {
		Name      string        `json:"name"`
		Offset    time.Duration `json:"clock_offset_ns"`
		Unc       time.Duration `json:"clock_uncertainty_ns"`
		Corrected bool          `json:"clock_corrected"`
	}
	type capture struct {
		File      string    `json:"file"`
		Host      string    `json:"host"`
		Start     time.Time `json:"start"`
		Stop      time.Time `json:"stop"`
		Collected bool      `json:"collected"`
	}
	var m struct {
		Case     string    `json:"case"`
		Hosts    []host    `json:"hosts"`
		Captures []capture `json:"captures"`
	}
	m.Case = "HOPS"
	for _, p := range pts {
		m.Hosts = append(m.Hosts, host{p.host, p.offset, p.unc, p.offset != 0})
		m.Captures = append(m.Captures, capture{File: p.name + ".pcapng", Host: p.host, Start: t0.Add(p.start + p.offset), Stop: t0.Add(p.stop + p.offset), Collected: true})
		f, err := os.Create(filepath.Join(dir, p.name+".pcapng"))
		if err != nil {
			t.Fatal(err)
		}
		w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		sort.SliceStable(p.frames, func(i, j int) bool { return p.frames[i].at < p.frames[j].at })
		for _, s := range p.frames {
			if s.at < p.start || s.at >= p.stop {
				continue // outside its window: the capture did not see it
			}
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(s.at + p.offset), CaptureLength: len(s.frame), Length: len(s.frame)}
			if err := w.WritePacket(ci, s.frame); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		f.Close()
	}
	raw, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, casedir.ManifestFile), raw, 0o600)
	c, err := casedir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHopsAgainstTheTruth: a path of three points (a vNIC and its host's
// uplink, then the other host's uplink, whose clock is 40 ms ahead and
// corrected, and whose capture began 300 ms late), 2,000 datagrams 1 ms
// apart one way and replies the other way, a TSO flow (64 KB segments at
// the vNIC, MSS pieces beyond). The truth: the first hop loses nothing in
// 0.1 ms; the second loses datagrams 1000 to 1049 and takes 1.9 ms, with one
// duplicate and one reordering. analyze finds the paths' order from the
// data, each hop's loss and latency, never counts the late capture's
// start or the end of the windows as loss, and names the flow that lost.
func TestHopsAgainstTheTruth(t *testing.T) {
	a, b := net.IP{198, 18, 0, 11}, net.IP{198, 18, 0, 12}
	ms := time.Millisecond
	vnic := point{name: "h1.app.eth0.VnicTxRx", host: "h1", start: 0, stop: 2500 * ms}
	up1 := point{name: "h1.uplink.vmnic2.UplinkSndRcv", host: "h1", start: 0, stop: 2500 * ms}
	up2 := point{name: "h2.uplink.vmnic2.UplinkSndRcv", host: "h2", offset: 40 * ms, unc: ms / 2, start: 300 * ms, stop: 2500 * ms}
	for i := range 2000 {
		at := time.Duration(i) * ms
		vnic.frames = append(vnic.frames, seen{at, udp(t, a, b, i, 64)})
		up1.frames = append(up1.frames, seen{at + 100*time.Microsecond, udp(t, a, b, i, 64)})
		switch {
		case i >= 1000 && i < 1050: // lost between the uplinks
		case i == 1500: // duplicated
			up2.frames = append(up2.frames, seen{at + 2*ms, udp(t, a, b, i, 63)}, seen{at + 2*ms + 10*time.Microsecond, udp(t, a, b, i, 63)})
		case i == 1600: // overtaken by 1601
			up2.frames = append(up2.frames, seen{at + 2*ms + 1500*time.Microsecond, udp(t, a, b, i, 63)})
		default:
			up2.frames = append(up2.frames, seen{at + 2*ms, udp(t, a, b, i, 63)})
		}
		// The reply, the other way, every tenth.
		if i%10 == 0 {
			up2.frames = append(up2.frames, seen{at + 500*time.Microsecond, udp(t, b, a, i, 64)})
			up1.frames = append(up1.frames, seen{at + 2500*time.Microsecond, udp(t, b, a, i, 63)})
			vnic.frames = append(vnic.frames, seen{at + 2600*time.Microsecond, udp(t, b, a, i, 63)})
		}
	}
	// TSO: 64 KB segments at the vNIC, 1448-byte pieces on the uplinks.
	seq := uint32(1)
	for i := range 20 {
		at := time.Duration(400+i*50) * ms
		vnic.frames = append(vnic.frames, seen{at, tcpSeg(t, a, b, uint16(i), seq, 65160)})
		for k := range 45 {
			piece := tcpSeg(t, a, b, uint16(1000+i*45+k), seq+uint32(k*1448), 1448)
			up1.frames = append(up1.frames, seen{at + 200*time.Microsecond, piece})
			up2.frames = append(up2.frames, seen{at + 2200*time.Microsecond, piece})
		}
		seq += 65160
	}
	c := writeCase(t, []point{up2, vnic, up1}) // not in path order: analyze finds it
	r, err := Analyze(c, Options{Window: 500 * ms})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.MarshalIndent(r.Hops, "", " ")
	t.Logf("%s\nflows: %+v\nwindow: %+v", raw, r.Flows, r.Window)
	byName := map[string]Hop{}
	for _, h := range r.Hops {
		byName[h.From+" > "+h.To] = h
	}
	first, second := byName[vnic.name+" > "+up1.name], byName[up1.name+" > "+up2.name]
	back := byName[up2.name+" > "+up1.name]
	// Forward: 2,000 datagrams reach the vNIC from 0 to 2000 ms; the
	// second hop counts from up2's start (300 ms): 1,700. The TSO flow
	// adds its 20 segments to each (a segment is one packet, seen whole
	// where its pieces cover it).
	if first.Packets != 2020 || first.Lost != 0 || first.Latency == nil || math.Abs(first.Latency.P50-0.1) > 0.01 || first.UncertaintyMs != 0 {
		t.Errorf("vNIC > uplink: %+v %+v", first, first.Latency)
	}
	if second.Lost != 50 || second.Duplicates != 1 || second.Reordered != 1 || second.Latency == nil || math.Abs(second.Latency.P50-1.9) > 0.05 || second.UncertaintyMs != 0.5 {
		t.Errorf("uplink > uplink: %+v %+v", second, second.Latency)
	}
	if second.Packets != 1720 {
		t.Errorf("uplink > uplink counted %d packets, want 1,720 (from the late capture's start on)", second.Packets)
	}
	if back.Packets == 0 || back.Lost != 0 || back.Latency == nil || math.Abs(back.Latency.P50-2) > 0.05 {
		t.Errorf("the replies' way: %+v", back)
	}
	if len(r.Flows) != 1 || r.Flows[0].Flow != "udp 198.18.0.11:40000 > 198.18.0.12:9999" || r.Flows[0].Lost != 50 {
		t.Errorf("flows: %+v", r.Flows)
	}
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	if !strings.Contains(text.String(), "lost between h1.uplink.vmnic2.UplinkSndRcv and h2.uplink.vmnic2.UplinkSndRcv: 50 of 1,720 (2.9%)") {
		t.Errorf("the text report does not name the worst hop as asked")
	}
	var lostIn []string
	for _, s := range second.PerSecond {
		if s.Lost > 0 {
			lostIn = append(lostIn, fmt.Sprintf("%s:%d", s.At.Sub(t0), s.Lost))
		}
	}
	if fmt.Sprint(lostIn) != "[1s:50]" {
		t.Errorf("loss per second: %v", lostIn)
	}
}

// TestHistogram: quantiles within 1/64 of the truth, max exact.
func TestHistogram(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100_000; v++ {
		h.add(v * 1000) // 1 µs to 100 ms
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 100_000 * 1000
		if got := float64(h.quantile(q)); math.Abs(got-want)/want > 1.0/64 {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if h.max != 100_000_000 {
		t.Errorf("max %d", h.max)
	}
}

// TestReceiveOffload: MSS pieces on the wire first, then one segment that
// receive offload (GRO/LRO) merged at the receiving vNIC: each piece is
// delivered when the merged segment covers it; a piece the merged one
// misses (a hole the host never got) is lost.
func TestReceiveOffload(t *testing.T) {
	a, b := net.IP{198, 18, 0, 11}, net.IP{198, 18, 0, 12}
	ms := time.Millisecond
	wire := point{name: "h2.uplink.vmnic2.UplinkRcv", host: "h2", start: 0, stop: time.Second}
	vnic := point{name: "h2.app.eth0.VnicRx", host: "h2", start: 0, stop: time.Second}
	seq := uint32(1000)
	for i := range 10 {
		at := time.Duration(10+i*20) * ms
		for k := range 10 {
			wire.frames = append(wire.frames, seen{at + time.Duration(k)*10*time.Microsecond, tcpSeg(t, a, b, uint16(i*10+k), seq+uint32(k*1448), 1448)})
		}
		if i == 5 {
			// The host merged the first nine only: the tenth never made it.
			vnic.frames = append(vnic.frames, seen{at + 300*time.Microsecond, tcpSeg(t, a, b, 9999, seq, 9*1448)})
		} else {
			vnic.frames = append(vnic.frames, seen{at + 300*time.Microsecond, tcpSeg(t, a, b, 9999, seq, 10*1448)})
		}
		seq += 10 * 1448
	}
	r, err := Analyze(writeCase(t, []point{vnic, wire}), Options{Window: 100 * ms})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Hops) != 1 || r.Hops[0].From != wire.name || r.Hops[0].Packets != 100 || r.Hops[0].Lost != 1 {
		t.Errorf("hops: %+v", r.Hops)
	}
}

// TestAnalyzeStreams: memory does not grow with the case: the heap in use
// peaks no higher for a case four times as long at the same rate.
func TestAnalyzeStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50 MB")
	}
	peak := func(n int) uint64 {
		a, b := net.IP{198, 18, 0, 11}, net.IP{198, 18, 0, 12}
		p1 := point{name: "h1.eth0.Tx", host: "h1", stop: time.Hour}
		p2 := point{name: "h2.eth0.Rx", host: "h2", stop: time.Hour}
		for i := range n {
			at := time.Duration(i) * 100 * time.Microsecond
			f := udp(t, a, b, i, 64)
			p1.frames = append(p1.frames, seen{at, f})
			p2.frames = append(p2.frames, seen{at + time.Millisecond, f})
		}
		c := writeCase(t, []point{p1, p2})
		p1.frames, p2.frames = nil, nil
		runtime.GC()
		var top atomic.Uint64
		done, sampled := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sampled)
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapInuse > top.Load() {
					top.Store(m.HeapInuse)
				}
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		r, err := Analyze(c, Options{Window: 50 * time.Millisecond})
		close(done)
		<-sampled
		if err != nil || len(r.Hops) != 1 || r.Hops[0].Lost != 0 {
			t.Fatalf("%+v %v", r, err)
		}
		return top.Load()
	}
	small, large := peak(50_000), peak(200_000)
	t.Logf("heap in use peaked at %.1f MiB for 50,000 packets a point, %.1f MiB for 200,000", float64(small)/(1<<20), float64(large)/(1<<20))
	if large > small+small/2+(4<<20) {
		t.Errorf("the heap grew with the case: %d MiB against %d MiB", large>>20, small>>20)
	}
}

// TestRepeatedPieceIsNoMissingOne: after segmentation offload, a segment
// whose second piece never came is lost, even if its first piece came
// twice (as many bytes as the whole, not the same bytes).
func TestRepeatedPieceIsNoMissingOne(t *testing.T) {
	a, b := net.IP{198, 18, 0, 11}, net.IP{198, 18, 0, 12}
	vnic := point{name: "h1.app.eth0.VnicTx", host: "h1", stop: time.Second}
	wire := point{name: "h1.uplink.vmnic2.UplinkSnd", host: "h1", stop: time.Second}
	for i := range 4 {
		at := time.Duration(100+i*100) * time.Millisecond
		seq := uint32(1 + i*2896)
		vnic.frames = append(vnic.frames, seen{at, tcpSeg(t, a, b, uint16(i), seq, 2896)})
		wire.frames = append(wire.frames, seen{at + 50*time.Microsecond, tcpSeg(t, a, b, uint16(100+i), seq, 1448)})
		second := tcpSeg(t, a, b, uint16(200+i), seq+1448, 1448)
		if i == 2 {
			second = tcpSeg(t, a, b, uint16(200+i), seq, 1448) // the first piece again
		}
		wire.frames = append(wire.frames, seen{at + 60*time.Microsecond, second})
	}
	r, err := Analyze(writeCase(t, []point{vnic, wire}), Options{Window: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Hops) != 1 || r.Hops[0].Packets != 4 || r.Hops[0].Lost != 1 {
		t.Errorf("hops: %+v", r.Hops)
	}
}
