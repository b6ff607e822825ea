//go:build linux

package pktcap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The test binary doubles as a fake pktcap-uw (FAKE_PKTCAP=mode): it
// writes packets to -o's file, one every 10 ms, until SIGINT, then says
// what the real tool says. Modes: "normal"; "deaf" ignores SIGINT and
// SIGTERM; "die" exits with an error after 3 packets; "count" stops by
// itself after -c packets.
func TestMain(m *testing.M) {
	if mode := os.Getenv("FAKE_PKTCAP"); mode != "" {
		os.Exit(fake(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fake(mode string, args []string) int {
	var out string
	count := 0
	for i := 0; i < len(args)-1; i++ {
		switch args[i] {
		case "-o":
			out = args[i+1]
		case "-c":
			count, _ = strconv.Atoi(args[i+1])
		}
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if mode == "deaf" {
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	}
	if out == "-" {
		return fakeStream(mode, sigs)
	}
	f, err := os.Create(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, _ := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	fmt.Printf("pktcap: The output file is %s.\npktcap: Accept...\n", out)
	n := 0
	tick := time.NewTicker(10 * time.Millisecond)
loop:
	for {
		select {
		case <-sigs:
			break loop
		case <-tick.C:
			data := bytes.Repeat([]byte{byte(n)}, 60+n%40)
			w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(data), Length: len(data)}, data)
			w.Flush()
			n++
			if mode == "die" && n == 3 {
				fmt.Fprintln(os.Stderr, "pktcap-uw: lost the port")
				return 3
			}
			if count > 0 && n >= count {
				break loop
			}
		}
	}
	w.Flush()
	f.Close()
	fmt.Printf("Destroying session.\n\nDumped %d packet to file %s, dropped 2 packets.\nDone.\n", n, out)
	return 0
}

func spec(t *testing.T, mode string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_PKTCAP", mode)
	t.Setenv("GORACE", "atexit_sleep_ms=0") // a race-built fake would linger 1 s on exit
	file := filepath.Join(t.TempDir(), "h.p.Rx.pcapng")
	return Spec{Name: "h.p.Rx", File: file, Argv: []string{exe, "--switchport", "5", "--ng", "-o", file},
		Stop: time.Now().Add(time.Minute), Host: "h", Case: "c", Version: "test", Grace: 300 * time.Millisecond}
}

func fileSum(t *testing.T, path string) (string, int64) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%08x", crc32.Checksum(raw, crc32.MakeTable(crc32.Castagnoli))), int64(len(raw))
}

func packets(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			return n
		}
		n++
	}
}

func TestRunToWindowEnd(t *testing.T) {
	s := spec(t, "normal")
	s.Start = time.Now().Add(100 * time.Millisecond)
	s.Stop = s.Start.Add(400 * time.Millisecond)
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.State != agentproto.CaptureArmed || !strings.Contains(st.Command, "--switchport 5") {
		t.Fatalf("armed status %+v", st)
	}
	st := c.Run(context.Background())
	if st.State != agentproto.CaptureStopped || st.StopReason != agentproto.StopWindowEnd || st.Error != "" {
		t.Fatalf("status %+v", st)
	}
	if st.Start.Before(s.Start) || st.Start.Sub(s.Start) > 50*time.Millisecond {
		t.Errorf("started at %v, asked %v", st.Start, s.Start)
	}
	if st.StoppedAt.Sub(s.Stop) > 300*time.Millisecond {
		t.Errorf("stopped %v after its end", st.StoppedAt.Sub(s.Stop))
	}
	sum, size := fileSum(t, s.File)
	n := packets(t, s.File)
	if st.CRC32C != sum || st.Size != size || int(st.Packets) != n || n < 10 {
		t.Errorf("status says %d packets, %d bytes, %s; file has %d, %d, %s", st.Packets, st.Size, st.CRC32C, n, size, sum)
	}
	if st.Drops != 2 || st.Received != uint64(n)+2 {
		t.Errorf("drops %d received %d, want 2 and %d (from pktcap-uw's summary)", st.Drops, st.Received, n+2)
	}
}

func TestPendingBeginAndStopRequest(t *testing.T) {
	s := spec(t, "normal")
	s.Pending = true
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan agentproto.CaptureStatus)
	go func() { done <- c.Run(context.Background()) }()
	time.Sleep(150 * time.Millisecond)
	if _, err := os.Stat(s.File); err == nil {
		t.Fatal("pktcap-uw started before Begin")
	}
	c.Begin(time.Now().Add(50*time.Millisecond), time.Minute)
	time.Sleep(400 * time.Millisecond)
	if st := c.Status(); st.State != agentproto.CaptureCapturing || st.Packets == 0 {
		t.Errorf("running status %+v", st)
	}
	c.RequestStop(time.Time{}, agentproto.StopRequest)
	st := <-done
	if st.StopReason != agentproto.StopRequest || st.State != agentproto.CaptureStopped || int(st.Packets) != packets(t, s.File) {
		t.Fatalf("status %+v", st)
	}
}

// TestNeverBegun: a session stopped before its begin runs no pktcap-uw
// and leaves no file (it would block the next start of the case).
func TestNeverBegun(t *testing.T) {
	s := spec(t, "normal")
	s.Pending = true
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	c.RequestStop(time.Now(), agentproto.StopRequest)
	st := c.Run(context.Background())
	if st.State != agentproto.CaptureStopped || st.StopReason != agentproto.StopDisarmed || st.Packets != 0 || st.Size != 0 || st.CRC32C != "" {
		t.Fatalf("status %+v, want stopped, disarmed, nothing", st)
	}
	if _, err := os.Lstat(s.File); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a session that never began left %s (%v)", s.File, err)
	}
}

func TestDeafToolIsKilled(t *testing.T) {
	s := spec(t, "deaf")
	s.Stop = time.Now().Add(200 * time.Millisecond)
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	st := c.Run(context.Background())
	if st.State != agentproto.CaptureFailed || !strings.Contains(st.Error, "killed") {
		t.Fatalf("status %+v", st)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %v to kill (grace 300 ms twice)", d)
	}
	if st.Packets == 0 || int(st.Packets) != packets(t, s.File) {
		t.Errorf("packets %d, file %d", st.Packets, packets(t, s.File))
	}
}

func TestToolDiesEarly(t *testing.T) {
	s := spec(t, "die")
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Run(context.Background())
	if st.State != agentproto.CaptureFailed || !strings.Contains(st.Error, "lost the port") || !strings.Contains(st.Error, "exit status 3") {
		t.Fatalf("status %+v", st)
	}
	if st.Packets != 3 {
		t.Errorf("packets %d, want the 3 written", st.Packets)
	}
}

func TestCountEndsIt(t *testing.T) {
	s := spec(t, "count")
	s.Argv = append(s.Argv[:len(s.Argv)-2], "-c", "5", "-o", s.File)
	s.MaxPackets = 5
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Run(context.Background())
	if st.State != agentproto.CaptureStopped || st.StopReason != agentproto.StopPacketCount || st.Packets != 5 {
		t.Fatalf("status %+v", st)
	}
}

func TestMaxBytes(t *testing.T) {
	s := spec(t, "normal")
	s.MaxBytes = 70 << 10 // the 64 KiB margin stops it after a few polls
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Run(context.Background())
	if st.StopReason != agentproto.StopMaxBytes || st.Size > int64(s.MaxBytes) {
		t.Fatalf("status %+v", st)
	}
}

func TestContextCancelStops(t *testing.T) {
	s := spec(t, "normal")
	c, err := Arm(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st := c.Run(ctx)
	if st.StopReason != agentproto.StopSignal || st.State != agentproto.CaptureStopped {
		t.Fatalf("status %+v", st)
	}
}

func TestArmRefuses(t *testing.T) {
	s := spec(t, "normal")
	os.WriteFile(s.File, []byte("x"), 0o600)
	if _, err := Arm(s); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Errorf("existing file: %v", err)
	}
	s = spec(t, "normal")
	s.Argv[0] = "no-such-pktcap-uw"
	if _, err := Arm(s); err == nil || !strings.Contains(err.Error(), "no-such-pktcap-uw") {
		t.Errorf("missing tool: %v", err)
	}
}

func TestParseSummary(t *testing.T) {
	d, x, ok := parseSummary("Destroying session.\n\nDumped 1 packet to file /vmfs/volumes/ds/a b.pcapng, dropped 0 packets.\nDone.\n")
	if !ok || d != 1 || x != 0 {
		t.Errorf("%d %d %v", d, x, ok)
	}
	if _, _, ok := parseSummary("pktcap-uw: bad port\n"); ok {
		t.Error("summary found in an error")
	}
}

// TestPublicLastWords: pktcap-uw's last words as published
// (testdata/public/SOURCES.md): the summary after a write error, and a run
// that ended with none (no drop count then, not an error).
func TestPublicLastWords(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "public", "pktcap-uw.last-words.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if d, x, ok := parseSummary(string(raw)); !ok || d != 10241 || x != 0 {
		t.Errorf("last words: dumped %d, dropped %d, %v; want 10241, 0", d, x, ok)
	}
	raw, err = os.ReadFile(filepath.Join("testdata", "public", "pktcap-uw.no-summary.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := parseSummary(string(raw)); ok {
		t.Error("no summary line, yet a summary was read")
	}
}
