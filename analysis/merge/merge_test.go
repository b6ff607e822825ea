package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

// source is one synthetic capture: its host clock's offset, and its
// packets' times on casecap's clock.
type fakeCapture struct {
	file      string
	host      string
	offset    time.Duration
	unc       time.Duration
	corrected bool
	at        []time.Duration // after t0, casecap's clock
	inbound   bool
}

// writeCase writes a case folder of the captures (each file as the agent
// writes one: an interface with its name, description and filter; the
// packets, each with its direction; a statistics block at the end) and
// its manifest, with one more capture that was not collected.
func writeCase(t testing.TB, dir string, caps []fakeCapture) {
	t.Helper()
	type host struct {
		Name        string        `json:"name"`
		Offset      time.Duration `json:"clock_offset_ns"`
		Uncertainty time.Duration `json:"clock_uncertainty_ns"`
		Corrected   bool          `json:"clock_corrected"`
	}
	type capture struct {
		File      string `json:"file"`
		Host      string `json:"host"`
		Collected bool   `json:"collected"`
		Error     string `json:"error,omitempty"`
	}
	var m struct {
		Case     string    `json:"case"`
		Hosts    []host    `json:"hosts"`
		Captures []capture `json:"captures"`
	}
	m.Case = "MERGE"
	for _, c := range caps {
		m.Hosts = append(m.Hosts, host{c.host, c.offset, c.unc, c.corrected})
		m.Captures = append(m.Captures, capture{File: c.file, Host: c.host, Collected: true})
		f, err := os.Create(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		w, err := pcapgo.NewNgWriterInterface(f, pcapgo.NgInterface{Name: strings.TrimSuffix(c.file, ".pcapng"),
			Description: "casecap capture on host " + c.host, Filter: "udp port 9999", OS: "Linux", LinkType: layers.LinkTypeEthernet,
			SnapLength: 262144, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
		if err != nil {
			t.Fatal(err)
		}
		dir := pcapgo.NgEpbFlagDirectionOutbound
		if c.inbound {
			dir = pcapgo.NgEpbFlagDirectionInbound
		}
		for i, at := range c.at {
			data := fmt.Appendf(nil, "%s packet %d....", c.host, i)
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(at + c.offset), CaptureLength: len(data), Length: len(data)}
			if err := w.WritePacketWithOptions(ci, data, pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{LastUpdate: t0.Add(time.Minute + c.offset),
			StartTime: t0.Add(c.offset), EndTime: t0.Add(time.Minute + c.offset), PacketsReceived: uint64(len(c.at)) + 2, PacketsDropped: 2}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	m.Captures = append(m.Captures, capture{File: "lost.eth0.RxTx.pcapng", Host: "lost", Error: "unreachable"})
	raw, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, casedir.ManifestFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMerge: two hosts' captures merge in time order on casecap's clock:
// the host whose offset the run applied is moved by it, the one whose
// offset was inside its uncertainty is not; each capture is an interface
// named after its file, with its description, filter, statistics (their
// times moved too) and packet directions, and a comment that says how its
// times were moved. A capture that was not collected is named, not read.
func TestMerge(t *testing.T) {
	dir := t.TempDir()
	ms := time.Millisecond
	writeCase(t, dir, []fakeCapture{
		{file: "ha.eth0.RxTx.pcapng", host: "ha", offset: 80 * ms, unc: ms, corrected: true, at: []time.Duration{0, 10 * ms, 20 * ms}},
		{file: "hb.eth0.RxTx.pcapng", host: "hb", offset: 300 * time.Microsecond, unc: 2 * ms, at: []time.Duration{5 * ms, 15 * ms, 25 * ms}, inbound: true},
	})
	c, err := casedir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Skipped) != 1 || c.Skipped[0].File != "lost.eth0.RxTx.pcapng" || !strings.Contains(c.Skipped[0].Why, "unreachable") {
		t.Errorf("skipped: %+v", c.Skipped)
	}
	var out bytes.Buffer
	st, err := Merge(c, &out)
	if err != nil {
		t.Fatal(err)
	}
	if st != (Stats{Sources: 2, Interfaces: 2, Packets: 6}) {
		t.Errorf("stats %+v", st)
	}
	var isbs []pcapgo.NgInterfaceStatistics
	r, err := pcapgo.NewNgReader(bytes.NewReader(out.Bytes()), pcapgo.NgReaderOptions{StatisticsCallback: func(_ int, s pcapgo.NgInterfaceStatistics) { isbs = append(isbs, s) }})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		intf, _ := r.Interface(ci.InterfaceIndex)
		dir := "?"
		if opts.Flags != nil {
			dir = map[pcapgo.NgEpbFlag]string{pcapgo.NgEpbFlagDirectionInbound: "in", pcapgo.NgEpbFlagDirectionOutbound: "out"}[opts.Flags.Direction]
		}
		got = append(got, fmt.Sprintf("%v %s %s %s", ci.Timestamp.Sub(t0), intf.Name, dir, strings.Fields(string(data))[2]))
	}
	want := []string{
		"0s ha.eth0.RxTx out 0....", "5.3ms hb.eth0.RxTx in 0....", "10ms ha.eth0.RxTx out 1....",
		"15.3ms hb.eth0.RxTx in 1....", "20ms ha.eth0.RxTx out 2....", "25.3ms hb.eth0.RxTx in 2....",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("merged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	a, _ := r.Interface(0)
	b, _ := r.Interface(1)
	if a.Description != "casecap capture on host ha" || a.Filter != "udp port 9999" || !strings.Contains(a.Comment, "moved by -80ms") ||
		!strings.Contains(b.Comment, "not moved") || !strings.Contains(b.Comment, "± 2ms") {
		t.Errorf("interfaces:\n%+v\n%+v", a, b)
	}
	if len(isbs) != 2 || !isbs[0].StartTime.Equal(t0) || isbs[0].PacketsDropped != 2 || !isbs[1].StartTime.Equal(t0.Add(300*time.Microsecond)) {
		t.Errorf("statistics: %+v", isbs)
	}
	// Wireshark's own reader agrees.
	if tshark, err := exec.LookPath("tshark"); err == nil {
		f := filepath.Join(dir, "merged.pcapng")
		os.WriteFile(f, out.Bytes(), 0o600)
		o, err := exec.Command(tshark, "-r", f, "-T", "fields", "-e", "frame.interface_name", "-e", "frame.p2p_dir").CombinedOutput()
		if err != nil || strings.Count(string(o), "ha.eth0.RxTx") != 3 || strings.Count(string(o), "hb.eth0.RxTx") != 3 {
			t.Errorf("tshark -r: %v\n%s", err, o)
		}
	}
}

// TestMergeStreams: memory does not grow with the case. The heap in use,
// sampled through the merge, peaks no higher for 4 x 100,000 packets a
// capture than for 100,000 (give or take the collector's slack).
func TestMergeStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 60 MB")
	}
	small, large := peakHeap(t, 100_000), peakHeap(t, 400_000)
	t.Logf("heap in use peaked at %.1f MiB for 2 x 100,000 packets, %.1f MiB for 2 x 400,000", float64(small)/(1<<20), float64(large)/(1<<20))
	if large > small+small/2+(2<<20) {
		t.Errorf("the heap grew with the case: %d MiB for 2 x 400,000 packets against %d MiB for 2 x 100,000", large>>20, small>>20)
	}
}

// peakHeap merges a two-capture case of n packets each and returns the
// heap in use at its peak during the merge.
func peakHeap(t *testing.T, n int) uint64 {
	dir := t.TempDir()
	a, b := make([]time.Duration, n), make([]time.Duration, n)
	for i := range n {
		a[i], b[i] = time.Duration(i)*time.Microsecond*10, time.Duration(i)*time.Microsecond*10+5*time.Microsecond
	}
	writeCaseBig(t, dir, a, b)
	c, err := casedir.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "merged.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	runtime.GC()
	var peak atomic.Uint64
	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	st, err := Merge(c, out)
	close(done)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != uint64(2*n) {
		t.Errorf("%+v, want %d packets", st, 2*n)
	}
	return peak.Load()
}

// writeCaseBig writes a two-capture case of the packets' times.
func writeCaseBig(t testing.TB, dir string, a, b []time.Duration) {
	t.Helper()
	writeCase(t, dir, []fakeCapture{
		{file: "ha.eth0.RxTx.pcapng", host: "ha", offset: 80 * time.Millisecond, unc: time.Millisecond, corrected: true, at: a},
		{file: "hb.eth0.RxTx.pcapng", host: "hb", at: b},
	})
}
