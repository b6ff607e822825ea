package seqcast_test

import (
	"bufio"
	"context"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
)

// waitFor reads r until a line contains want, or fails the test. It is how
// the test knows a capture tool is ready before traffic starts.
func waitFor(t *testing.T, r io.Reader, want string) {
	t.Helper()
	found := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				found <- true
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatalf("tool exited before printing %q", want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q within 20s", want)
	}
}

// TestReadToolFiles captures the stream with tcpdump (pcap) on one host and
// tshark (pcapng) on another, and checks the reader finds exactly the
// packets sent.
func TestReadToolFiles(t *testing.T) {
	labtest.Require(t)
	for _, tool := range []string{"tcpdump", "tshark"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; the README's test command installs it", tool)
		}
	}
	l := labtest.Start(t, 2)
	const n = 500
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	files := map[string]string{
		"tcpdump": filepath.Join(l.Datastore, "tcpdump.pcap"),
		"tshark":  filepath.Join(l.Datastore, "tshark.pcapng"),
	}
	cmds := map[string]*exec.Cmd{
		"tcpdump": l.Hosts[0].Command(ctx, "tcpdump", "-i", "eth0", "-n", "-U", "-c", "500", "-w", files["tcpdump"], "udp", "port", "9999"),
		"tshark":  l.Hosts[1].Command(ctx, "tshark", "-i", "eth0", "-n", "-c", "500", "-F", "pcapng", "-w", files["tshark"], "-f", "udp port 9999"),
	}
	ready := map[string]string{"tcpdump": "listening on eth0", "tshark": "Capture started"}
	for name, cmd := range cmds {
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		waitFor(t, stderr, ready[name])
	}
	sent, err := seqcast.Send(ctx, seqcast.SendOptions{
		From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999),
		Stream: 77, Interval: 200 * time.Microsecond, Count: n,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sent.Packets != n {
		t.Fatalf("sent %d, want %d", sent.Packets, n)
	}
	for name, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			got, rerr := seqcast.ReadFile(files[name], 77)
			t.Fatalf("%s: %v; its file holds %+v (%v)", name, err, got, rerr)
		}
		got, err := seqcast.ReadFile(files[name], 77)
		if err != nil {
			t.Fatal(err)
		}
		if got.First != 0 || got.Last != n-1 || got.Packets != n || !got.Contiguous() || got.Duplicates != 0 {
			t.Errorf("%s file: got %+v, want 0..%d, %d packets, contiguous", name, got, n-1, n)
		}
		if got.FirstSent.Before(sent.First) || got.LastSent.After(sent.Last) {
			t.Errorf("%s file: sender times %v..%v outside the send window %v..%v", name, got.FirstSent, got.LastSent, sent.First, sent.Last)
		}
	}
}
