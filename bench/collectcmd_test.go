//go:build linux

package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
)

// BenchmarkCollectCommand times `casecap collect` as a user runs it: a
// process started cold, which reads the plan, connects, reads each host's
// record and status, downloads every file verified (CRC-32C against the
// agent's, SHA-256 for the manifest) and writes the case folder; beside
// the peer command on the same files: scp for one 450 MB capture,
// parallel-slurp for 50 hosts x 20 MiB. Five runs of each, alternating
// which goes first; every run's figure is logged (-v) and the medians
// reported. The case is a real one (casecap start on the lab), whose
// capture files are then replaced by large valid pcapng files, their
// status made to match, as a long capture would have left them.
//
// CASECAP_BENCH_PROFILE=DIR writes a CPU profile of one more casecap
// collect of each case there (not timed).
func BenchmarkCollectCommand(b *testing.B) {
	labtest.Require(b)
	n := benchHosts()
	l := labtest.Start(b, n)
	bin := filepath.Join(b.TempDir(), "casecap")
	agenttest.BuildCasecap(b, bin)
	hostsFile := psshHosts(b, l)
	const runs = 5

	b.Run("450MB", func(b *testing.B) {
		benchRuns++
		plan := collectCase(b, l, bin, fmt.Sprintf("COLLECT-%d", benchRuns), l.Hosts[:1], 450_000_000)
		remote := capturePath(l, plan, l.Hosts[0])
		out := b.TempDir()
		tools := map[string]func() time.Duration{
			"casecap": func() time.Duration { return casecapCollect(b, bin, plan, out, "") },
			"scp": func() time.Duration {
				dst := filepath.Join(out, "scp.pcapng")
				defer os.Remove(dst)
				start := time.Now()
				args := append(scpArgs(l), "root@"+l.Hosts[0].Addr.String()+":"+remote, dst)
				if o, err := exec.Command("scp", args...).CombinedOutput(); err != nil {
					b.Fatalf("scp: %v %s", err, o)
				}
				return time.Since(start)
			},
		}
		got := alternate(b, runs, tools, "casecap", "scp")
		b.ReportMetric(median(got["casecap"]).Seconds(), "casecap-s")
		b.ReportMetric(median(got["scp"]).Seconds(), "scp-s")
		b.ReportMetric(median(got["scp"]).Seconds()/median(got["casecap"]).Seconds(), "speed-vs-scp")
		b.ReportMetric(450/median(got["casecap"]).Seconds(), "casecap-MB/s")
		b.ReportMetric(0, "ns/op")
		profile(b, bin, plan, out, "collect-450MB")
	})

	b.Run(fmt.Sprintf("%dx20MiB", n), func(b *testing.B) {
		benchRuns++
		plan := collectCase(b, l, bin, fmt.Sprintf("COLLECT-%d", benchRuns), l.Hosts, 20<<20)
		// parallel-slurp fetches one remote path from every host: point
		// each host's private /tmp/mine.pcapng at its own file.
		pssh(b, l, fmt.Sprintf("ln -sf %s/Case_%s/$(hostname).eth0.RxTx.pcapng /tmp/mine.pcapng", l.Datastore, strings.TrimSuffix(filepath.Base(plan), ".yaml")))
		out := b.TempDir()
		tools := map[string]func() time.Duration{
			"casecap": func() time.Duration { return casecapCollect(b, bin, plan, out, "") },
			"parallel-slurp": func() time.Duration {
				dst := filepath.Join(out, "slurp")
				os.MkdirAll(dst, 0o755)
				defer os.RemoveAll(dst)
				start := time.Now()
				args := []string{"-h", hostsFile, "-l", "root", "-p", strconv.Itoa(n), "-L", dst,
					"-O", "IdentityFile=" + l.ClientKey, "-O", "UserKnownHostsFile=" + l.KnownHosts, "-O", "StrictHostKeyChecking=yes", "-O", "BatchMode=yes",
					"/tmp/mine.pcapng", "f.pcapng"}
				if o, err := exec.Command("parallel-slurp", args...).CombinedOutput(); err != nil {
					b.Fatalf("parallel-slurp: %v %s", err, o)
				}
				return time.Since(start)
			},
		}
		got := alternate(b, runs, tools, "casecap", "parallel-slurp")
		b.ReportMetric(median(got["casecap"]).Seconds(), "casecap-s")
		b.ReportMetric(median(got["parallel-slurp"]).Seconds(), "parallel-slurp-s")
		b.ReportMetric(median(got["parallel-slurp"]).Seconds()/median(got["casecap"]).Seconds(), "speed-vs-slurp")
		b.ReportMetric(0, "ns/op")
		profile(b, bin, plan, out, fmt.Sprintf("collect-%dx20MiB", n))
	})
}

// alternate runs each of the two tools runs times, a then b, then b then
// a..., and returns every run's time, logged.
func alternate(b *testing.B, runs int, tools map[string]func() time.Duration, first, second string) map[string][]time.Duration {
	got := map[string][]time.Duration{}
	for i := range runs {
		order := []string{first, second}
		if i%2 == 1 {
			order = []string{second, first}
		}
		for _, t := range order {
			got[t] = append(got[t], tools[t]())
		}
	}
	for _, t := range []string{first, second} {
		var s []string
		for _, d := range got[t] {
			s = append(s, fmt.Sprintf("%.3f", d.Seconds()))
		}
		b.Logf("%s: %s s (median %.3f s)", t, strings.Join(s, " "), median(got[t]).Seconds())
	}
	return got
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// casecapCollect runs casecap collect into a fresh case folder under out
// and returns how long the command took.
func casecapCollect(b *testing.B, bin, plan, out, cpuProfile string) time.Duration {
	dir := filepath.Join(out, "casecap")
	defer os.RemoveAll(dir)
	args := []string{"collect", plan, "--out", dir}
	if cpuProfile != "" {
		args = append([]string{"--cpuprofile", cpuProfile}, args...)
	}
	start := time.Now()
	if o, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		b.Fatalf("casecap collect: %v\n%s", err, o)
	}
	return time.Since(start)
}

// profile writes a CPU profile of one more casecap collect, where
// CASECAP_BENCH_PROFILE asks for one.
func profile(b *testing.B, bin, plan, out, name string) {
	dir := os.Getenv("CASECAP_BENCH_PROFILE")
	if dir == "" {
		return
	}
	p := filepath.Join(dir, name+".prof")
	casecapCollect(b, bin, plan, out, p)
	b.Logf("profile: %s (go tool pprof -top %s %s)", p, bin, p)
}

// collectCase starts a real case on the hosts (one capture of eth0 each,
// one second), waits for its end, then replaces every capture file with a
// valid pcapng of size bytes and its status with what an agent would have
// written for that file. It returns the plan's path.
func collectCase(b *testing.B, l *lab.Lab, bin, caseID string, hs []*lab.Host, size int64) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "case: %s\ndatastore: %s\nduration: 1s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", caseID, l.Datastore, l.ClientKey, l.KnownHosts)
	for _, h := range hs {
		fmt.Fprintf(&sb, "  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0, filter: { udpport: 9999 } } ] }\n", h.Name, h.Addr)
	}
	plan := filepath.Join(b.TempDir(), caseID+".yaml")
	if err := os.WriteFile(plan, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if o, err := exec.Command(bin, "start", plan).CombinedOutput(); err != nil {
		b.Fatalf("casecap start: %v\n%s", err, o)
	}
	for _, h := range hs {
		statusFile := filepath.Join(l.Datastore, ".casecap", "cases", caseID, h.Name, agentproto.StatusFile)
		st := waitDone(b, statusFile)
		c := &st.Captures[0]
		c.Packets, c.Bytes, c.Size, c.CRC32C = writePcapng(b, c.File, size)
		raw, _ := json.Marshal(st)
		if err := os.WriteFile(statusFile, raw, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return plan
}

// capturePath is where the plan's capture of h is on the datastore.
func capturePath(l *lab.Lab, plan string, h *lab.Host) string {
	caseID := strings.TrimSuffix(filepath.Base(plan), ".yaml")
	return filepath.Join(l.Datastore, "Case_"+caseID, h.Name+".eth0.RxTx.pcapng")
}

// waitDone waits for an agent's status to say every capture has ended.
func waitDone(b *testing.B, statusFile string) agentproto.Status {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st agentproto.Status
		if raw, err := os.ReadFile(statusFile); err == nil && json.Unmarshal(raw, &st) == nil && st.Over() {
			return st
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: the captures did not end", statusFile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writePcapng writes a valid pcapng of about size bytes of 1514-byte
// Ethernet frames (random bytes: their content does not matter to a
// download), and returns its packets, captured bytes, size and CRC-32C.
func writePcapng(b *testing.B, file string, size int64) (packets, bytes uint64, n int64, crc string) {
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sum := agentproto.NewCRC32C()
	cw := &countingWriter{w: io.MultiWriter(f, sum)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	w, err := pcapgo.NewNgWriter(bw, layers.LinkTypeEthernet)
	if err != nil {
		b.Fatal(err)
	}
	noise := make([]byte, 1<<20+1514)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(noise)
	ts := time.Now().Add(-time.Hour)
	for i := 0; cw.n+int64(bw.Buffered()) < size; i++ {
		off := (i * 1514) % (1 << 20)
		frame := noise[off : off+1514]
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Microsecond), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			b.Fatal(err)
		}
		packets++
		bytes += uint64(len(frame))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	return packets, bytes, cw.n, agentproto.CRC32CHex(sum)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
