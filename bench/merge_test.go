//go:build linux

package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// BenchmarkMerge: casecap merge of a case folder (six captures of 200,000
// packets of 60 to 1514 bytes, their times interleaved, one host's clock
// corrected) beside mergecap of the same six files, each a command from a
// cold start, five runs each alternating, with each one's peak resident
// memory. No lab: the files are written here.
func BenchmarkMerge(b *testing.B) {
	mergecap, err := exec.LookPath("mergecap")
	if err != nil {
		b.Skip("mergecap is not installed (apt-get install tshark)")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "casecap")
	if o, err := exec.Command("go", "build", "-o", bin, "github.com/casecap/casecap/cmd/casecap").CombinedOutput(); err != nil {
		b.Fatalf("build casecap: %v\n%s", err, o)
	}
	caseDir := filepath.Join(dir, "Case_MERGE")
	os.Mkdir(caseDir, 0o755)
	const files, packets = 6, 200_000
	var inputs []string
	type host struct {
		Name      string        `json:"name"`
		Offset    time.Duration `json:"clock_offset_ns"`
		Unc       time.Duration `json:"clock_uncertainty_ns"`
		Corrected bool          `json:"clock_corrected"`
	}
	type capture struct {
		File      string `json:"file"`
		Host      string `json:"host"`
		Collected bool   `json:"collected"`
	}
	var m struct {
		Case     string    `json:"case"`
		Hosts    []host    `json:"hosts"`
		Captures []capture `json:"captures"`
	}
	m.Case = "MERGE"
	var total int64
	for i := range files {
		name := fmt.Sprintf("h%d.eth0.RxTx.pcapng", i)
		offset := time.Duration(0)
		if i == 1 {
			offset = 80 * time.Millisecond
		}
		m.Hosts = append(m.Hosts, host{Name: fmt.Sprintf("h%d", i), Offset: offset, Unc: time.Millisecond, Corrected: offset != 0})
		m.Captures = append(m.Captures, capture{File: name, Host: fmt.Sprintf("h%d", i), Collected: true})
		p := filepath.Join(caseDir, name)
		total += writeInterleaved(b, p, i, packets, offset)
		inputs = append(inputs, p)
	}
	raw, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(caseDir, "manifest.json"), raw, 0o600)
	out := filepath.Join(dir, "out.pcapng")
	tools := map[string][]string{
		"casecap":  {bin, "merge", caseDir, "-o", out},
		"mergecap": append([]string{mergecap, "-F", "pcapng", "-w", out}, inputs...),
	}
	times, peaks := map[string][]time.Duration{}, map[string]float64{}
	for i := range 5 {
		order := []string{"casecap", "mergecap"}
		if i%2 == 1 {
			order = []string{"mergecap", "casecap"}
		}
		for _, t := range order {
			start := time.Now()
			cmd := exec.Command(tools[t][0], tools[t][1:]...)
			peak, err := runPeakRSS(cmd)
			if err != nil {
				b.Fatalf("%s: %v", t, err)
			}
			times[t] = append(times[t], time.Since(start))
			peaks[t] = max(peaks[t], peak)
			os.Remove(out)
		}
	}
	for _, t := range []string{"casecap", "mergecap"} {
		b.Logf("%s: %v (median %v), peak RSS %.1f MiB", t, times[t], median(times[t]), peaks[t])
	}
	b.ReportMetric(median(times["casecap"]).Seconds(), "casecap-s")
	b.ReportMetric(median(times["mergecap"]).Seconds(), "mergecap-s")
	b.ReportMetric(median(times["mergecap"]).Seconds()/median(times["casecap"]).Seconds(), "speed-vs-mergecap")
	b.ReportMetric(peaks["casecap"], "casecap-peak-MiB")
	b.ReportMetric(peaks["mergecap"], "mergecap-peak-MiB")
	b.ReportMetric(float64(total)/(1<<20), "input-MiB")
	b.ReportMetric(0, "ns/op")
}

// writeInterleaved writes capture i of a case: packets 10 µs apart, each
// file's starting i µs later (so the merge interleaves them all), with
// the host's clock offset in its timestamps, and sizes from 60 to 1514
// bytes; it returns the file's size.
func writeInterleaved(b *testing.B, path string, i, n int, offset time.Duration) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := pcapgo.NewNgWriterInterface(bw, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 262144, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(i), 1))
	data := make([]byte, 1514)
	for j := range data {
		data[j] = byte(r.Uint32())
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC).Add(offset + time.Duration(i)*time.Microsecond)
	for k := range n {
		size := 60 + r.IntN(1455)
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(k) * 10 * time.Microsecond), CaptureLength: size, Length: size}
		if err := w.WritePacketWithOptions(ci, data[:size], pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: pcapgo.NgEpbFlagDirectionInbound}}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	fi, _ := f.Stat()
	return fi.Size()
}
