package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestAnalyzeCommand: casecap analyze names the hop that lost, in text and
// in the JSON shape the issue asks for; a folder that is not a case is bad
// input (exit 2). This manifest gives no windows: each point's is from its
// first to its last packet, so the first datagram (sent before the second
// point's first) and the last (in flight at its end) are not counted.
func TestAnalyzeCommand(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1796000000, 0)
	write := func(name string, delay time.Duration, skip int) {
		f, _ := os.Create(filepath.Join(dir, name+".pcapng"))
		w, _ := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
		for i := range 100 {
			if i == skip {
				continue
			}
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: uint16(i), Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 18, 0, 1}, DstIP: net.IP{198, 18, 0, 2}}
			u := &layers.UDP{SrcPort: 1000, DstPort: 2000}
			u.SetNetworkLayerForChecksum(ip)
			buf := gopacket.NewSerializeBuffer()
			gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
				&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("x"))
			w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i)*10*time.Millisecond + delay), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes())
		}
		w.Flush()
		f.Close()
	}
	write("h1.eth0.Tx", 0, -1)
	write("h2.eth0.Rx", 3*time.Millisecond, 42)
	manifest := `{"case":"A","hosts":[{"name":"h1"},{"name":"h2"}],"captures":[{"file":"h2.eth0.Rx.pcapng","host":"h2","collected":true},{"file":"h1.eth0.Tx.pcapng","host":"h1","collected":true}]}`
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o600)

	code, out, errOut := runCLI(t, "analyze", dir)
	if code != exitOK || !strings.Contains(out, "lost between h1.eth0.Tx and h2.eth0.Rx: 1 of 98 (1.0%)") {
		t.Errorf("analyze: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "analyze", "--json", dir, "--window", "100ms")
	var doc struct {
		Hops []struct {
			From, To      string
			Packets, Lost uint64
			Loss          float64
			Latency       struct{ P50, P99, Max float64 } `json:"latency_ms"`
			Uncertainty   *float64                        `json:"uncertainty_ms"`
		} `json:"hops"`
		Flows  []struct{ Flow string } `json:"flows"`
		Window struct{ Start, Stop time.Time }
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Hops) != 1 || doc.Hops[0].From != "h1.eth0.Tx" || doc.Hops[0].Lost != 1 ||
		doc.Hops[0].Packets != 98 || doc.Hops[0].Loss != 1.0/98 || doc.Hops[0].Latency.P50 < 2.9 || doc.Hops[0].Latency.P50 > 3.1 || doc.Hops[0].Uncertainty == nil ||
		len(doc.Flows) != 1 || doc.Window.Start.IsZero() {
		t.Errorf("analyze --json: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "analyze", t.TempDir()); code != exitUsage || !strings.Contains(errOut, "not a case folder") {
		t.Errorf("a folder with no manifest: exit %d: %s", code, errOut)
	}
}
