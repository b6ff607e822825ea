//go:build linux

package pktcap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/internal/agent/ring"
)

// fakeStream is the fake pktcap-uw with -o -: classic pcap on stdout, a
// packet every 10 ms stamped 1 s apart from 2026-01-01, its messages on
// stderr. Mode "garbage" writes no pcap at all; "die" exits after 3.
func fakeStream(mode string, sigs chan os.Signal) int {
	fmt.Fprintln(os.Stderr, "pktcap: The output file is -.")
	if mode == "garbage" {
		fmt.Println("The session capture point is UplinkRcvKernel.")
		<-sigs
		return 0
	}
	w := pcapgo.NewWriter(os.Stdout)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := time.NewTicker(10 * time.Millisecond)
	n := 0
	for {
		select {
		case <-sigs:
			fmt.Fprintf(os.Stderr, "Destroying session.\n\nDumped %d packet to file -, dropped 1 packets.\nDone.\n", n)
			return 0
		case <-tick.C:
			if n < 5 {
				data := bytes.Repeat([]byte{byte(n)}, 60+n)
				w.WritePacket(gopacket.CaptureInfo{Timestamp: base.Add(time.Duration(n)*time.Second + 123*time.Microsecond), CaptureLength: len(data), Length: len(data) + 4}, data)
				n++
			}
			if mode == "die" && n == 3 {
				fmt.Fprintln(os.Stderr, "pktcap-uw: lost the port")
				return 3
			}
		}
	}
}

func streamSpec(t *testing.T, mode string) StreamSpec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_PKTCAP", mode)
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	return StreamSpec{Argv: []string{exe, "--uplink", "vmnic0", "-o", "-"}, Dir: "output", Grace: 300 * time.Millisecond}
}

// TestStream: the packets come in order with their timestamps, lengths
// and the session's direction; a quiet stream times out; End stops
// pktcap-uw and reads its counts.
func TestStream(t *testing.T) {
	s, err := OpenStream(streamSpec(t, "normal"))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		p, err := s.Next(2 * time.Second)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		want := base.Add(time.Duration(i)*time.Second + 123*time.Microsecond)
		if !p.Time().Equal(want) || len(p.Data) != 60+i || p.Length != 64+i || !p.Outgoing() {
			t.Fatalf("packet %d: at %v, %d of %d bytes, outgoing %v", i, p.Time(), len(p.Data), p.Length, p.Outgoing())
		}
	}
	if _, err := s.Next(100 * time.Millisecond); !errors.Is(err, ring.ErrTimeout) {
		t.Fatalf("a quiet stream: %v", err)
	}
	if recv, drops := s.End(); recv != 6 || drops != 1 {
		t.Errorf("End: %d received, %d dropped; want pktcap-uw's 5 + 1, 1", recv, drops)
	}
	if _, err := s.Next(10 * time.Millisecond); !errors.Is(err, ring.ErrTimeout) {
		t.Errorf("Next after End: %v", err)
	}
}

// TestStreamNotPcap: a stream that is not pcap fails at arming, with the
// tool's words.
func TestStreamNotPcap(t *testing.T) {
	_, err := OpenStream(streamSpec(t, "garbage"))
	if err == nil || !strings.Contains(err.Error(), "not a little-endian pcap stream") || !strings.Contains(err.Error(), "output file is -") {
		t.Fatalf("OpenStream of a stream that is no pcap: %v", err)
	}
}

// TestStreamEndsByItself: pktcap-uw exiting mid-capture is Next's error,
// with its words.
func TestStreamEndsByItself(t *testing.T) {
	s, err := OpenStream(streamSpec(t, "die"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.End()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, err := s.Next(100 * time.Millisecond)
		if err != nil && !errors.Is(err, ring.ErrTimeout) {
			if !strings.Contains(err.Error(), "stream ended") {
				t.Fatalf("error %v", err)
			}
			return
		}
	}
	t.Fatal("the stream never said it ended")
}
