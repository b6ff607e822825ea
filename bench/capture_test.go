//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/agent"
	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/plans/filter"
)

// captureRun is what one tool did with one flood.
type captureRun struct {
	sent, kept, drops uint64
	user, sys         time.Duration
	hashCPU           time.Duration // tcpdump only: sha256sum of its file, the peer's way to a verified file
	syncCPU           time.Duration // tcpdump only: `sync FILE` (fsync) right after it exits, as the agent syncs its file at close
}

func usage(c *exec.Cmd) (user, sys time.Duration) {
	return c.ProcessState.UserTime(), c.ProcessState.SystemTime()
}

// inHost runs argv in the host's network namespace only, so that the
// command is the tool itself (signals reach it, rusage is its own).
func inHost(h *lab.Host, argv ...string) *exec.Cmd {
	if pinned() {
		argv = append([]string{"taskset", "-c", "1"}, argv...)
	}
	return exec.Command("nsenter", append([]string{"--target", strconv.Itoa(h.InitPID), "--net", "--"}, argv...)...)
}

// pinned says whether the capture bench keeps the sender on CPU 0 and the
// tool under test on CPU 1. The kernel here charges softirq time to
// whichever task a tick interrupts (CONFIG_IRQ_TIME_ACCOUNTING is off), so
// unpinned, a tool is billed at random for part of the sender's and the
// network stack's work, more the more often it is on a CPU. Pinned, each
// tool's rusage is its own work: reading the ring, writing and hashing.
func pinned() bool { return runtime.NumCPU() >= 2 && os.Getenv("CASECAP_BENCH_UNPINNED") == "" }

// pinProcess binds every thread of this process (the sender and the test
// itself; threads created later inherit it) to the given CPUs, and returns
// the undo.
func pinProcess(b *testing.B, cpus ...int) func() {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	var all unix.CPUSet
	for c := range runtime.NumCPU() {
		all.Set(c)
	}
	apply := func(s *unix.CPUSet) {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				_ = unix.SchedSetaffinity(tid, s)
			}
		}
	}
	apply(&set)
	return func() { apply(&all) }
}

func waitLine(r io.Reader, want string) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.Contains(sc.Text(), want) {
			go io.Copy(io.Discard, r)
			return nil
		}
	}
	return fmt.Errorf("no %q", want)
}

const (
	snaplen = 128
	ringMiB = 32 // the agent's default ring; tcpdump gets the same with -B
)

func flood(l *lab.Lab, rate int, d time.Duration) (seqcast.Sent, error) {
	return seqcast.Flood(context.Background(), seqcast.FloodOptions{
		From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 7,
		Rate: rate, Count: uint64(rate) * uint64(d/time.Second),
	})
}

var droppedRE = regexp.MustCompile(`(\d+) packets dropped by kernel`)

func runTcpdump(b *testing.B, l *lab.Lab, rate int, d time.Duration, extra ...string) captureRun {
	file := filepath.Join(l.Datastore, fmt.Sprintf("tcpdump-%d.pcap", rate))
	args := append([]string{"tcpdump", "-i", "eth0", "-n", "-s", strconv.Itoa(snaplen), "-B", strconv.Itoa(ringMiB << 10), "-w", file}, extra...)
	cmd := inHost(l.Hosts[0], append(args, "udp", "port", "9999")...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var tail []string
	ready := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening on") {
			ready = true
			break
		}
	}
	if !ready {
		b.Fatal("tcpdump did not start")
	}
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
			tail = append(tail, sc.Text())
		}
		close(done)
	}()
	sent, err := flood(l, rate, d)
	if err != nil {
		b.Fatal(err)
	}
	// libpcap's ring blocks are handed over after a 1 s timeout: stopping
	// sooner would lose the last block and wrongly count it against tcpdump.
	time.Sleep(1500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	<-done
	_ = cmd.Wait()
	r := captureRun{sent: sent.Packets}
	r.user, r.sys = usage(cmd)
	if m := droppedRE.FindStringSubmatch(strings.Join(tail, "\n")); m != nil {
		r.drops, _ = strconv.ParseUint(m[1], 10, 64)
	}
	// The agent fsyncs its file at close (issue 4: flushed, fsynced,
	// closed), which makes it write back the whole file in its own
	// context; tcpdump leaves that to the kernel's flusher. The same
	// writeback for tcpdump's file, measured apart.
	// With -C and -W, tcpdump's files are file0, file1...
	files, _ := filepath.Glob(file + "*")
	for _, f := range files {
		fsync := inHost(l.Hosts[0], "sync", f)
		if err := fsync.Run(); err != nil {
			b.Fatal(err)
		}
		r.syncCPU += fsync.ProcessState.UserTime() + fsync.ProcessState.SystemTime()
		s, err := seqcast.ReadFile(f, 7)
		if err != nil {
			b.Fatal(err)
		}
		r.kept += uint64(s.Distinct)
		sum := inHost(l.Hosts[0], "sha256sum", f)
		if err := sum.Run(); err != nil {
			b.Fatal(err)
		}
		r.hashCPU += sum.ProcessState.UserTime() + sum.ProcessState.SystemTime()
		os.Remove(f)
	}
	settle()
	return r
}

func runAgent(b *testing.B, l *lab.Lab, bin string, rate int, d time.Duration) captureRun {
	return runAgentRing(b, l, bin, rate, d, nil)
}

// runAgentRing is runAgent with a ring capture when ring is set.
func runAgentRing(b *testing.B, l *lab.Lab, bin string, rate int, d time.Duration, ring *agentproto.Ring) captureRun {
	name := fmt.Sprintf("bench%d-%d", rate, benchRuns)
	now := time.Now()
	j := agentproto.Job{Version: agentproto.JobVersion, Case: name, Host: "h01",
		StateDir: filepath.Join(l.Datastore, ".casecap", name), CaseDir: filepath.Join(l.Datastore, "Case_"+name),
		Captures: []agentproto.JobCapture{{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
			Filter: filter.Filter{UDPPort: ptr(uint16(9999))}, Snaplen: snaplen, Start: now, Stop: now.Add(10 * time.Minute), Ring: ring}}}
	raw, _ := json.Marshal(j)
	jobPath := filepath.Join(l.Datastore, name+".json")
	if err := os.WriteFile(jobPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{bin, "run", "--ready-fd", "3", jobPath}
	if prof := os.Getenv("CASECAP_BENCH_CPUPROFILE"); prof != "" {
		args = []string{bin, "run", "--ready-fd", "3", "--cpuprofile", prof, jobPath}
	}
	cmd := inHost(l.Hosts[0], args...)
	rd, wr, _ := os.Pipe()
	cmd.ExtraFiles = []*os.File{wr}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	wr.Close()
	if err := waitLine(rd, "armed"); err != nil {
		b.Fatal("agent did not arm")
	}
	sent, err := flood(l, rate, d)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the same wait as tcpdump's
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	r := captureRun{sent: sent.Packets}
	r.user, r.sys = usage(cmd)
	st, err := agent.ReadStatus(j.StateDir)
	if err != nil {
		b.Fatal(err)
	}
	r.drops = st.Captures[0].Drops
	s, err := seqcast.ReadFile(filepath.Join(j.CaseDir, "h01.eth0.RxTx.pcapng"), 7)
	if err != nil {
		b.Fatal(err)
	}
	r.kept = uint64(s.Distinct)
	os.RemoveAll(j.CaseDir)
	os.RemoveAll(j.StateDir)
	settle()
	return r
}

// settle writes back everything the run left dirty and lets the file system
// finish freeing the deleted file, so that the next tool does not pay for
// this one's writeback in its own system time.
func settle() {
	syscall.Sync()
	time.Sleep(500 * time.Millisecond)
}

func ptr[T any](v T) *T { return &v }

// benchRates are the packet rates a capture bench floods at:
// CASECAP_BENCH_RATES (comma-separated), else the bench's defaults.
func benchRates(b *testing.B, defaults ...int) []int {
	v := os.Getenv("CASECAP_BENCH_RATES")
	if v == "" {
		return defaults
	}
	var rates []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatalf("CASECAP_BENCH_RATES: %v", err)
		}
		rates = append(rates, n)
	}
	return rates
}

// benchRuns counts sub-benchmark runs (go test -count repeats each), to
// alternate the order of the tools and name cases uniquely.
var benchRuns int

// captureOrder counts BenchmarkLinuxCapture's runs per rate.
var captureOrder = map[int]int{}

// BenchmarkLinuxCapture floods a lab host with small numbered UDP packets
// (68-byte frames) and captures them with tcpdump -w and with the agent:
// same filter, snap length and buffer. Every run measures both, in turn,
// in alternating order (the page cache favours the second writer after a
// delete), and reports both; -count=N gives N pairs.
func BenchmarkLinuxCapture(b *testing.B) {
	labtest.Require(b)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		b.Fatal("tcpdump is not installed")
	}
	l := labtest.Start(b, 1)
	bin := agenttest.CopyTo(b, l.Datastore)
	if pinned() {
		defer pinProcess(b, 0)()
	}
	const d = 5 * time.Second
	rates := benchRates(b, 250_000, 500_000)
	for _, rate := range rates {
		b.Run(fmt.Sprintf("%dkpps", rate/1000), func(b *testing.B) {
			benchRuns++
			// The order alternates per rate (go test -count repeats each),
			// not per sub-benchmark: with two rates, a shared counter would
			// put the agent second at one rate every time.
			captureOrder[rate]++
			var td, ag captureRun
			if captureOrder[rate]%2 == 1 {
				td, ag = runTcpdump(b, l, rate, d), runAgent(b, l, bin, rate, d)
			} else {
				ag, td = runAgent(b, l, bin, rate, d), runTcpdump(b, l, rate, d)
			}
			b.ReportMetric(float64(td.sent), "sent")
			for _, r := range []struct {
				tool string
				r    captureRun
			}{{"tcpdump", td}, {"agent", ag}} {
				b.ReportMetric(float64(r.r.kept), r.tool+"-kept")
				b.ReportMetric(float64(r.r.drops), r.tool+"-drops")
				b.ReportMetric((r.r.user + r.r.sys).Seconds(), r.tool+"-cpu-s")
				b.ReportMetric(r.r.sys.Seconds(), r.tool+"-sys-s")
			}
			b.ReportMetric((td.user + td.sys + td.hashCPU).Seconds(), "tcpdump+sha256sum-cpu-s")
			b.ReportMetric((ag.user+ag.sys).Seconds()/(td.user+td.sys).Seconds(), "agent/tcpdump")
			b.ReportMetric((td.user + td.sys + td.syncCPU).Seconds(), "tcpdump+fsync-cpu-s")
			b.ReportMetric((ag.user+ag.sys).Seconds()/(td.user+td.sys+td.syncCPU).Seconds(), "agent/tcpdump+fsync")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// ringOrder counts BenchmarkRingCapture's runs, to rotate the tools' order.
var ringOrder int

// BenchmarkRingCapture is issue 15's cost target: the same flood captured
// by the agent plainly, by the agent with a ring (keep 3 s in 1 s
// segments, trimmed into one file at the end), and by tcpdump -C/-W (five
// files of about a second's traffic each, its ring). The three run in
// turn, the order rotating with -count; CPU is each process's user +
// system time. CASECAP_BENCH_RATES sets the rates (default 100k/s).
func BenchmarkRingCapture(b *testing.B) {
	labtest.Require(b)
	if _, err := exec.LookPath("tcpdump"); err != nil {
		b.Fatal("tcpdump is not installed")
	}
	l := labtest.Start(b, 1)
	bin := agenttest.CopyTo(b, l.Datastore)
	if pinned() {
		defer pinProcess(b, 0)()
	}
	const d = 10 * time.Second
	rates := benchRates(b, 100_000)
	for _, rate := range rates {
		b.Run(fmt.Sprintf("%dkpps", rate/1000), func(b *testing.B) {
			benchRuns++
			ringOrder++
			// A second's traffic in tcpdump's units (millions of bytes):
			// 68-byte frames with a 16-byte record header each.
			perSecond := max(1, rate*(68+16)/1_000_000)
			runs := map[string]func() captureRun{
				"plain": func() captureRun { return runAgent(b, l, bin, rate, d) },
				"ring": func() captureRun {
					return runAgentRing(b, l, bin, rate, d, &agentproto.Ring{Keep: 3 * time.Second, Segment: time.Second})
				},
				"tcpdump-CW": func() captureRun {
					// -Z root: with -C, tcpdump drops to the tcpdump user, who may not
					// write into the lab's datastore.
					return runTcpdump(b, l, rate, d, "-C", strconv.Itoa(perSecond), "-W", "5", "-Z", "root")
				},
			}
			order := []string{"plain", "ring", "tcpdump-CW"}
			k := ringOrder % 3
			order = append(order[k:], order[:k]...)
			got := map[string]captureRun{}
			for _, tool := range order {
				got[tool] = runs[tool]()
			}
			cpu := func(r captureRun) float64 { return (r.user + r.sys).Seconds() }
			b.ReportMetric(float64(got["plain"].sent), "sent")
			for _, tool := range []string{"plain", "ring", "tcpdump-CW"} {
				b.ReportMetric(cpu(got[tool]), tool+"-cpu-s")
				b.ReportMetric(got[tool].sys.Seconds(), tool+"-sys-s")
				b.ReportMetric(float64(got[tool].drops), tool+"-drops")
				b.ReportMetric(float64(got[tool].kept), tool+"-kept")
			}
			b.ReportMetric(cpu(got["ring"])/cpu(got["plain"]), "ring/plain")
			b.ReportMetric(cpu(got["ring"])/cpu(got["tcpdump-CW"]), "ring/tcpdump-CW")
			b.Logf("order %v", order)
			b.ReportMetric(0, "ns/op")
		})
	}
}
