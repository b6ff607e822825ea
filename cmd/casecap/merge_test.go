package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestMergeCommand: casecap merge writes CASE_DIR/merged.pcapng (or -o
// FILE, or - for stdout) and says what it merged; a folder that is not a
// case is bad input (exit 2); a capture that was not collected is named
// on stderr and the command exits 1, the others merged all the same.
func TestMergeCommand(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "h1.eth0.RxTx.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		data := make([]byte, 60)
		w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1796000000, int64(i)), CaptureLength: 60, Length: 60}, data)
	}
	w.Flush()
	f.Close()
	manifest := `{"case":"M","hosts":[{"name":"h1","clock_offset_ns":0}],"captures":[{"file":"h1.eth0.RxTx.pcapng","host":"h1","collected":true}]}`
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o600)

	code, out, errOut := runCLI(t, "merge", dir, "--json")
	var doc struct {
		File    string `json:"file"`
		Packets int    `json:"packets"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || doc.Packets != 3 || doc.File != filepath.Join(dir, "merged.pcapng") {
		t.Errorf("merge --json: exit %d\n%s%s", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "merged.pcapng")); err != nil || !bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		t.Errorf("merged.pcapng: %v", err)
	}
	code, out, _ = runCLI(t, "merge", "-o", "-", dir)
	if code != exitOK || !strings.HasPrefix(out, "\x0a\x0d\x0d\x0a") {
		t.Errorf("merge -o -: exit %d, %d bytes on stdout", code, len(out))
	}
	other := filepath.Join(t.TempDir(), "m.pcapng")
	if code, _, errOut := runCLI(t, "merge", dir, "-o", other); code != exitOK || !strings.Contains(errOut, "merged 1 capture, 3 packets, into "+other) {
		t.Errorf("merge -o FILE: exit %d: %s", code, errOut)
	}

	if code, _, errOut := runCLI(t, "merge", t.TempDir()); code != exitUsage || !strings.Contains(errOut, "not a case folder") {
		t.Errorf("merge of a folder with no manifest: exit %d: %s", code, errOut)
	}
	manifest = `{"case":"M","hosts":[{"name":"h1"}],"captures":[{"file":"h1.eth0.RxTx.pcapng","host":"h1","collected":true},{"file":"h2.eth0.RxTx.pcapng","host":"h2","collected":false,"error":"unreachable"}]}`
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o600)
	if code, _, errOut := runCLI(t, "merge", dir); code != exitFailure || !strings.Contains(errOut, "left out h2.eth0.RxTx.pcapng (h2): not collected: unreachable") || !strings.Contains(errOut, "merged 1 capture,") {
		t.Errorf("merge with a capture not collected: exit %d: %s", code, errOut)
	}
}
