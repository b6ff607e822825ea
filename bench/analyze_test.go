//go:build linux

package bench

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// BenchmarkAnalyze: casecap analyze of a case of six capture points along
// one path, each with the same CASECAP_BENCH_PACKETS datagrams (default
// 1,000,000), 0.3 ms further down the path at each point, 0.1% lost at
// the fourth hop; beside tshark -r of the same six files, one after
// another, as a person reads them. Each a command from a cold start,
// three runs each alternating, with peak resident memory. No lab.
func BenchmarkAnalyze(b *testing.B) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		b.Skip("tshark is not installed")
	}
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("CASECAP_BENCH_PACKETS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "casecap")
	if o, err := exec.Command("go", "build", "-o", bin, "github.com/casecap/casecap/cmd/casecap").CombinedOutput(); err != nil {
		b.Fatalf("build casecap: %v\n%s", err, o)
	}
	caseDir := filepath.Join(dir, "Case_ANALYZE")
	os.Mkdir(caseDir, 0o755)
	// One datagram, serialized once; each packet patches its IP ID and
	// number (checksums are not looked at by either tool's reading).
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: []byte{198, 18, 0, 11}, DstIP: []byte{198, 18, 0, 12}}
	u := &layers.UDP{SrcPort: 40000, DstPort: 9999}
	u.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(make([]byte, 64)))
	tmpl := buf.Bytes()
	const points = 6
	var files []string
	type capture struct {
		File      string `json:"file"`
		Host      string `json:"host"`
		Collected bool   `json:"collected"`
	}
	var m struct {
		Case     string              `json:"case"`
		Hosts    []map[string]string `json:"hosts"`
		Captures []capture           `json:"captures"`
	}
	m.Case = "ANALYZE"
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for p := range points {
		name := fmt.Sprintf("h%d.eth0.RxTx.pcapng", p)
		m.Hosts = append(m.Hosts, map[string]string{"name": fmt.Sprintf("h%d", p)})
		m.Captures = append(m.Captures, capture{File: name, Host: fmt.Sprintf("h%d", p), Collected: true})
		path := filepath.Join(caseDir, name)
		files = append(files, path)
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		w, _ := pcapgo.NewNgWriter(bw, layers.LinkTypeEthernet)
		frame := append([]byte(nil), tmpl...)
		for i := range n {
			if p >= 4 && i%1000 == 500 {
				continue // lost on the fourth hop
			}
			binary.BigEndian.PutUint16(frame[14+4:], uint16(i))
			binary.BigEndian.PutUint64(frame[14+20+8:], uint64(i))
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i)*10*time.Microsecond + time.Duration(p)*300*time.Microsecond), CaptureLength: len(frame), Length: len(frame)}
			if err := w.WritePacket(ci, frame); err != nil {
				b.Fatal(err)
			}
		}
		w.Flush()
		bw.Flush()
		f.Close()
	}
	raw, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(caseDir, "manifest.json"), raw, 0o600)

	tools := map[string]func() (time.Duration, float64){
		"casecap": func() (time.Duration, float64) {
			start := time.Now()
			cmd := exec.Command(bin, "analyze", "--json", caseDir)
			out, _ := os.Create(filepath.Join(dir, "analyze.json"))
			defer out.Close()
			cmd.Stdout = out
			peak, err := runPeakRSS(cmd)
			if err != nil {
				b.Fatalf("casecap analyze: %v", err)
			}
			return time.Since(start), peak
		},
		"tshark": func() (time.Duration, float64) {
			start := time.Now()
			var peak float64
			for _, f := range files {
				cmd := exec.Command(tshark, "-r", f)
				p, err := runPeakRSS(cmd)
				if err != nil {
					b.Fatalf("tshark -r: %v", err)
				}
				peak = max(peak, p)
			}
			return time.Since(start), peak
		},
	}
	times, peaks := map[string][]time.Duration{}, map[string]float64{}
	for i := range 3 {
		order := []string{"casecap", "tshark"}
		if i%2 == 1 {
			order = []string{"tshark", "casecap"}
		}
		for _, t := range order {
			d, p := tools[t]()
			times[t] = append(times[t], d)
			peaks[t] = max(peaks[t], p)
		}
	}
	var r struct {
		Hops []struct {
			From, To      string
			Packets, Lost uint64
		}
	}
	raw, _ = os.ReadFile(filepath.Join(dir, "analyze.json"))
	if err := json.Unmarshal(raw, &r); err != nil || len(r.Hops) != points-1 || r.Hops[3].Lost == 0 || r.Hops[0].Lost != 0 {
		b.Fatalf("analyze found %+v (%v)", r.Hops, err)
	}
	for _, t := range []string{"casecap", "tshark"} {
		b.Logf("%s: %v (median %v), peak RSS %.1f MiB", t, times[t], median(times[t]), peaks[t])
	}
	b.ReportMetric(median(times["casecap"]).Seconds(), "casecap-s")
	b.ReportMetric(median(times["tshark"]).Seconds(), "tshark-s")
	b.ReportMetric(median(times["tshark"]).Seconds()/median(times["casecap"]).Seconds(), "speed-vs-tshark")
	b.ReportMetric(peaks["casecap"], "casecap-peak-MiB")
	b.ReportMetric(peaks["tshark"], "tshark-peak-MiB")
	b.ReportMetric(0, "ns/op")
}
