//go:build linux

package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/frames"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/plans/filter"
	"github.com/casecap/casecap/plans/filter/bpfgen"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := agenttest.Races(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	agenttest.Cleanup()
	os.Exit(code)
}

// env is one lab host running the real agent binary over SSH.
type env struct {
	t   *testing.T
	l   *lab.Lab
	h   *lab.Host
	c   *ssh.Client
	bin string
}

func setup(t *testing.T) *env {
	t.Helper()
	labtest.Require(t)
	l := labtest.Start(t, 1)
	e := &env{t: t, l: l, h: l.Hosts[0], bin: agenttest.CopyTo(t, l.Datastore)}
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if e.c, err = ssh.Dial("tcp", e.h.SSHAddr(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.c.Close() })
	return e
}

// ssh runs a command on the host and returns stdout.
func (e *env) ssh(cmd string) (string, error) {
	s, err := e.c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Run(cmd); err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", cmd, err, errb.String())
	}
	return out.String(), nil
}

// start writes a job with the given captures and starts the agent on it.
func (e *env) start(name string, caps ...agentproto.JobCapture) (stateDir, caseDir string) {
	e.t.Helper()
	j := agentproto.Job{
		Version: agentproto.JobVersion, Case: name, Host: e.h.Name,
		StateDir: filepath.Join(e.l.Datastore, ".casecap", "cases", name, e.h.Name),
		CaseDir:  filepath.Join(e.l.Datastore, "Case_"+name),
		Captures: caps,
	}
	raw, _ := json.Marshal(j)
	path := filepath.Join(e.l.Datastore, name+".job.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if out, err := e.ssh(e.bin + " start " + path); err != nil {
		e.t.Fatalf("agent start: %v", err)
	} else if !strings.Contains(out, `"armed"`) {
		e.t.Fatalf("agent start said %q", out)
	}
	return j.StateDir, j.CaseDir
}

// status asks the agent for its status over SSH (the agent's PID means
// something only inside the host's PID namespace).
func (e *env) status(stateDir string) (agentproto.Status, error) {
	var st agentproto.Status
	out, err := e.ssh(e.bin + " status " + stateDir)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// wait waits for the agent to finish and returns its final status.
func (e *env) wait(stateDir string, timeout time.Duration) agentproto.Status {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := e.status(stateDir)
		if err == nil && (st.State == agentproto.StateDone || st.State == agentproto.StateFailed) && !st.Alive {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent not done after %v: %+v %v", timeout, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readable checks that tshark and capinfos read the file without a word of
// warning.
func readable(t *testing.T, file string) {
	t.Helper()
	out, err := exec.Command("capinfos", "-M", file).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("appears to")) || bytes.Contains(out, []byte("rror")) {
		t.Errorf("capinfos %s: %v\n%s", file, err, out)
	}
	cmd := exec.Command("tshark", "-r", file, "-q")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	msg := strings.TrimSpace(strings.ReplaceAll(stderr.String(), `Running as user "root" and group "root". This could be dangerous.`, ""))
	if err != nil || msg != "" {
		t.Errorf("tshark -r %s: %v: %s", file, err, msg)
	}
}

// send streams numbered packets into the lab, recording send times.
type sender struct {
	mu    sync.Mutex
	sent  map[uint64]time.Time
	total seqcast.Sent
	done  chan error
}

func (e *env) send(ctx context.Context, interval time.Duration, count uint64) *sender {
	s := &sender{sent: map[uint64]time.Time{}, done: make(chan error, 1)}
	go func() {
		var err error
		s.total, err = seqcast.Send(ctx, seqcast.SendOptions{
			From: e.l.Gateway, To: netip.AddrPortFrom(e.l.Broadcast(), 9999), Stream: 1,
			Interval: interval, Count: count,
			OnSend: func(seq uint64, at time.Time) { s.mu.Lock(); s.sent[seq] = at; s.mu.Unlock() },
		})
		s.done <- err
	}()
	return s
}

func (s *sender) at(seq uint64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.sent[seq]
	return t, ok
}

// sentIn counts the packets the sender sent in [from, to).
func (s *sender) sentIn(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.sent {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func u16(v uint16) *uint16 { return &v }
func u8(v uint8) *uint8    { return &v }
func u32(v uint32) *uint32 { return &v }

// TestWindowExact: the stream captured for a 2 s window yields exactly the
// packets stamped in that window: contiguous numbers, the first and last at
// the window's edges.
func TestWindowExact(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const interval = 500 * time.Microsecond
	s := e.send(ctx, interval, 0)
	start := time.Now().Add(1500 * time.Millisecond)
	stop := start.Add(2 * time.Second)
	stateDir, caseDir := e.start("window", agentproto.JobCapture{
		Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
		Filter: filter.Filter{UDPPort: u16(9999)}, ExcludeOwnSSH: true, Start: start, Stop: stop,
	})
	st := e.wait(stateDir, 10*time.Second)
	cancel()
	<-s.done
	c := st.Captures[0]
	if c.StopReason != "window-end" || c.Drops != 0 || st.State != agentproto.StateDone {
		t.Fatalf("status %+v, want a clean window-end with no drops", st)
	}
	file := filepath.Join(caseDir, "h01.eth0.RxTx.pcapng")
	readable(t, file)
	got, err := seqcast.ReadFile(file, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Contiguous() || got.Duplicates != 0 || got.Other != 0 {
		t.Fatalf("file holds %+v, want contiguous numbers and nothing else", got)
	}
	if got.FirstSeen.Before(start) || !got.LastSeen.Before(stop) {
		t.Errorf("packets stamped %v..%v, outside the window %v..%v", got.FirstSeen, got.LastSeen, start, stop)
	}
	// The packet before the first was sent before the window opened, so it
	// was rightly left out; the one after the last was sent as it closed.
	before, ok1 := s.at(got.First - 1)
	after, ok2 := s.at(got.Last + 1)
	if !ok1 || !ok2 {
		t.Fatalf("the stream did not cover the window (first %d, last %d)", got.First, got.Last)
	}
	if !before.Before(start) {
		t.Errorf("packet %d was sent at %v, inside the window (start %v), but is missing", got.First-1, before, start)
	}
	if after.Before(stop.Add(-time.Millisecond)) {
		t.Errorf("packet %d was sent at %v, well inside the window (stop %v), but is missing", got.Last+1, after, stop)
	}
	// The count is held against the sender's own log, not against the
	// nominal rate: a sender that fell behind catches up in a burst, so a
	// 2 s window may rightly hold a few more or fewer than 2 s / interval.
	// Only the packets at the edges may differ (sent and stamped a few
	// microseconds apart); the rate check only shows the stream ran.
	want := s.sentIn(start, stop)
	if d := got.Distinct - want; d < -2 || d > 2 {
		t.Errorf("%d packets in the 2 s window, the sender sent %d in it", got.Distinct, want)
	}
	if nominal := int(2 * time.Second / interval); want < nominal*9/10 {
		t.Errorf("the sender sent only %d packets in the window, want about %d", want, nominal)
	}
	if uint64(got.Packets) != c.Packets {
		t.Errorf("status says %d packets, the file holds %d", c.Packets, got.Packets)
	}
	// The interface block and the closing statistics block say what we wrote.
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var stats []pcapgo.NgInterfaceStatistics
	r, err := pcapgo.NewNgReader(fh, pcapgo.NgReaderOptions{StatisticsCallback: func(_ int, s pcapgo.NgInterfaceStatistics) { stats = append(stats, s) }})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	intf, _ := r.Interface(0)
	if intf.Name != "h01.eth0.RxTx" || !strings.Contains(intf.Filter, "udp port 9999") || !strings.Contains(intf.Description, "host h01, interface eth0") {
		t.Errorf("interface block %+v", intf)
	}
	if len(stats) != 1 || stats[0].PacketsDropped != 0 || stats[0].PacketsReceived < c.Packets || !stats[0].StartTime.Equal(start) || !stats[0].EndTime.Equal(stop) {
		t.Errorf("statistics blocks %+v, want one: no drops, at least %d received, window %v..%v", stats, c.Packets, start, stop)
	}
	t.Logf("window %v..%v: packets %d..%d (%d), stamped %v..%v", start.Format("15:04:05.000000"), stop.Format("15:04:05.000000"),
		got.First, got.Last, got.Distinct, got.FirstSeen.Format("15:04:05.000000"), got.LastSeen.Format("15:04:05.000000"))
}

// inject writes raw frames into the host's cable from the lab's side, so
// that the host receives them exactly as built.
func (e *env) inject(frames [][]byte) {
	e.t.Helper()
	ifi, err := net.InterfaceByName(e.h.Veth)
	if err != nil {
		e.t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, f := range frames {
		if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}); err != nil {
			e.t.Fatalf("inject: %v", err)
		}
	}
}

// oracle says whether a frame, as the host receives it, passes filter f in
// a live Linux capture: the kernel strips VLAN tags before filters run, so
// a tagged frame is judged by its tag and its inner frame, the rest by
// tcpdump's own compilation of the filter's expression.
func oracle(t *testing.T, f filter.Filter, opt bpfgen.Options) func([]byte) bool {
	t.Helper()
	vlan := f.VLAN
	f.VLAN = nil
	args := []string{"-ddd", "-y", "EN10MB"}
	if expr := bpfgen.Expression(f, opt); expr != "" {
		args = append(args, "--", expr)
	}
	out, err := exec.Command("tcpdump", args...).Output()
	if err != nil {
		t.Fatalf("tcpdump %v: %v", args, err)
	}
	raw, err := bpfgen.ParseDDD(out)
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	return func(frame []byte) bool {
		vid, inner, tagged := frames.Untag(frame)
		if vlan != nil && (!tagged || vid != *vlan) {
			return false
		}
		n, err := vm.Run(inner)
		return err == nil && n != 0
	}
}

// readFrames returns the frames in a pcapng file.
func readFrames(t *testing.T, file string) [][]byte {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapgo.NewNgReader(fh, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, data)
	}
}

// TestFiltersKeepExactlyTheirPackets runs one capture per filter at once on
// a host, injects a mixed stream (VLAN-tagged frames included), and checks
// that every file holds exactly the frames its filter passes.
func TestFiltersKeepExactlyTheirPackets(t *testing.T) {
	e := setup(t)
	cases := []struct {
		name string
		f    filter.Filter
	}{
		{"all", filter.Filter{}},
		{"ip", filter.Filter{IP: netip.MustParseAddr("192.0.2.10")}},
		{"srcip", filter.Filter{SrcIP: netip.MustParsePrefix("192.0.2.0/24")}},
		{"dstip", filter.Filter{DstIP: netip.MustParsePrefix("198.51.100.0/24")}},
		{"proto", filter.Filter{Proto: u8(1)}},
		{"port", filter.Filter{Port: u16(443)}},
		{"srcport", filter.Filter{SrcPort: u16(53)}},
		{"dstport", filter.Filter{DstPort: u16(53)}},
		{"tcpport", filter.Filter{TCPPort: u16(443)}},
		{"udpport", filter.Filter{UDPPort: u16(53)}},
		{"vlan", filter.Filter{VLAN: u16(100)}},
		{"vlan-udp", filter.Filter{VLAN: u16(100), UDPPort: u16(53)}},
		{"mac", filter.Filter{MAC: filter.MAC(frames.MACC)}},
		{"srcmac", filter.Filter{SrcMAC: filter.MAC(frames.MACB)}},
		{"dstmac", filter.Filter{DstMAC: filter.MAC(frames.MACA)}},
		{"ethtype", filter.Filter{EthType: u16(0x0806)}},
		{"vxlan", filter.Filter{VXLAN: u32(5001)}},
		{"expr", filter.Filter{Expr: "udp and src port 53"}},
	}
	var caps []agentproto.JobCapture
	start := time.Now()
	for _, c := range cases {
		caps = append(caps, agentproto.JobCapture{
			Name: "h01.eth0." + c.name, File: "h01.eth0." + c.name + ".pcapng", Interface: "eth0",
			Filter: c.f, ExcludeOwnSSH: true, Start: start, Stop: start.Add(time.Minute),
		})
	}
	stateDir, caseDir := e.start("filters", caps...)
	// Frames on a wire are at least 60 bytes: pad them as a NIC would, so
	// that what arrives is byte for byte what was sent.
	corpus := frames.Corpus(true)
	for i := range corpus {
		if n := len(corpus[i].Data); n < 60 {
			corpus[i].Data = append(corpus[i].Data, make([]byte, 60-n)...)
		}
	}
	// The agent leaves out the SSH session it was started over.
	own := bpfgen.Options{Exclude: []bpfgen.Conn{{Client: netip.AddrPortFrom(e.l.Gateway, 0), Server: netip.AddrPortFrom(e.h.Addr, 22)}}}
	const rounds = 3
	var stream [][]byte
	for range rounds {
		for _, f := range corpus {
			stream = append(stream, f.Data)
		}
	}
	e.inject(stream)
	if _, err := e.ssh(e.bin + " stop " + stateDir); err != nil {
		t.Fatal(err)
	}
	st := e.wait(stateDir, 10*time.Second)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := st.Captures[i]
			if cs.StopReason != "stop-request" || cs.Drops != 0 {
				t.Errorf("status %+v, want stop-request and no drops", cs)
			}
			file := filepath.Join(caseDir, caps[i].File)
			readable(t, file)
			seen := map[string]int{}
			for _, fr := range readFrames(t, file) {
				seen[string(fr)]++
			}
			pass := oracle(t, c.f, own)
			kept := 0
			for _, f := range corpus {
				want := 0
				if pass(f.Data) {
					want = rounds
					kept++
				}
				if got := seen[string(f.Data)]; got != want {
					t.Errorf("frame %q: %d in the file, want %d", f.Name, got, want)
				}
			}
			if c.name != "all" && (kept == 0 || kept == len(corpus)) {
				t.Errorf("filter keeps %d of %d corpus frames: the corpus does not test it", kept, len(corpus))
			}
		})
	}
}

// TestSignalLeavesValidFile: SIGINT to the agent mid-stream stops every
// capture at once and leaves valid files that say why they stopped.
func TestSignalLeavesValidFile(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, 200*time.Microsecond, 0)
	start := time.Now()
	stateDir, caseDir := e.start("sigint",
		agentproto.JobCapture{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0", ExcludeOwnSSH: true, Start: start, Stop: start.Add(time.Minute)},
		agentproto.JobCapture{Name: "h01.any.RxTx", File: "h01.any.RxTx.pcapng", Interface: "any", ExcludeOwnSSH: true, Snaplen: 96, Start: start, Stop: start.Add(time.Minute)},
	)
	st, err := e.status(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	// Let packets flow into the files, then interrupt.
	for deadline := time.Now().Add(20 * time.Second); st.Captures[0].Packets < 1000; time.Sleep(20 * time.Millisecond) {
		if st, err = e.status(stateDir); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 1000 packets captured in 20 s: %+v", st.Captures[0])
		}
	}
	if _, err := e.ssh(fmt.Sprintf("kill -INT %d", st.PID)); err != nil {
		t.Fatal(err)
	}
	st = e.wait(stateDir, 10*time.Second)
	cancel()
	<-s.done
	for _, c := range st.Captures {
		file := filepath.Join(caseDir, filepath.Base(c.File))
		raw, _ := os.ReadFile(file)
		crc := fmt.Sprintf("%08x", crc32.Checksum(raw, crc32.MakeTable(crc32.Castagnoli)))
		if c.StopReason != "signal" || c.State != "stopped" || c.CRC32C != crc || c.Size != int64(len(raw)) {
			t.Errorf("%s: %+v, want stopped by signal with the file's size and CRC-32C (%d bytes, %s)", c.Name, c, len(raw), crc)
		}
		readable(t, file)
		got, err := seqcast.ReadFile(file, 1)
		if err != nil || !got.Contiguous() || got.Distinct < 1000 {
			t.Errorf("%s: %+v %v, want a contiguous stream of at least 1000", file, got, err)
		}
		info, _ := os.Stat(file)
		if info.Size() != c.Size {
			t.Errorf("%s: %d bytes on disk, status says %d", file, info.Size(), c.Size)
		}
	}
	// The "any" capture writes Linux cooked frames.
	out, err := exec.Command("tshark", "-r", filepath.Join(caseDir, "h01.any.RxTx.pcapng"), "-c", "1", "-T", "fields", "-e", "sll.pkttype", "-e", "frame.interface_name").Output()
	if err != nil || !strings.Contains(string(out), "h01.any.RxTx") {
		t.Errorf("tshark on the cooked capture: %q %v", out, err)
	}
}

// TestLimitsAndStopReasons: packet count, file size and free space each stop
// a capture cleanly, before the limit is crossed, and say so.
func TestLimitsAndStopReasons(t *testing.T) {
	e := setup(t)
	// A small filesystem inside the host, for the free-space guard.
	small := "/mnt/casecap-small"
	if _, err := e.ssh("mkdir -p " + small + " && mount -t tmpfs -o size=24m tmpfs " + small); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, 20*time.Microsecond, 0)
	start := time.Now()
	stop := start.Add(30 * time.Second)
	stateDir, caseDir := e.start("limits",
		agentproto.JobCapture{Name: "h01.eth0.count", File: "h01.eth0.count.pcapng", Interface: "eth0", ExcludeOwnSSH: true, MaxPackets: 500, Start: start, Stop: stop},
		agentproto.JobCapture{Name: "h01.eth0.bytes", File: "h01.eth0.bytes.pcapng", Interface: "eth0", ExcludeOwnSSH: true, MaxBytes: 256 << 10, Start: start, Stop: stop},
	)
	// The free-space capture writes to the small filesystem.
	j := agentproto.Job{Version: agentproto.JobVersion, Case: "limits2", Host: e.h.Name,
		StateDir: filepath.Join(e.l.Datastore, ".casecap", "cases", "limits2", e.h.Name), CaseDir: small + "/Case_limits2",
		Captures: []agentproto.JobCapture{{Name: "h01.eth0.free", File: "h01.eth0.free.pcapng", Interface: "eth0", ExcludeOwnSSH: true, MinFree: 8 << 20, Start: start, Stop: stop}}}
	raw, _ := json.Marshal(j)
	jobPath := filepath.Join(e.l.Datastore, "limits2.job.json")
	if err := os.WriteFile(jobPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ssh(e.bin + " start " + jobPath); err != nil {
		t.Fatal(err)
	}
	st := e.wait(stateDir, 20*time.Second)
	st2 := e.wait(j.StateDir, 30*time.Second)
	cancel()
	<-s.done

	count, size := st.Captures[0], st.Captures[1]
	if count.StopReason != "packet-count" || count.Packets != 500 {
		t.Errorf("count capture: %+v, want exactly 500 packets, stopped for packet-count", count)
	}
	if size.StopReason != "max-bytes" || size.Size > 256<<10 || size.Size < 200<<10 {
		t.Errorf("size capture: %+v, want stopped for max-bytes just under 256 KiB", size)
	}
	for _, c := range st.Captures {
		file := filepath.Join(caseDir, filepath.Base(c.File))
		readable(t, file)
		// The capture has no filter: besides the stream it may hold the
		// odd ARP or neighbour packet, counted as Other.
		if got, _ := seqcast.ReadFile(file, 1); uint64(got.Packets+got.Other) != c.Packets || !got.Contiguous() {
			t.Errorf("%s holds %+v; status says %d packets", file, got, c.Packets)
		}
	}
	free := st2.Captures[0]
	if free.StopReason != "min-free" || free.State != "stopped" {
		t.Errorf("free-space capture: %+v, want stopped for min-free", free)
	}
	out, err := e.ssh("stat -f -c '%a %S' " + small)
	var blocks, bsize uint64
	if _, serr := fmt.Sscan(out, &blocks, &bsize); err != nil || serr != nil || blocks*bsize < 8<<20 {
		t.Errorf("free space on the small filesystem after the capture: %q (%v), want at least 8 MiB", out, err)
	}
	// The file lives inside the host's own mount: check it there.
	if out, err := e.ssh("capinfos -M -c " + small + "/Case_limits2/h01.eth0.free.pcapng"); err != nil || !strings.Contains(out, fmt.Sprintf(" %d\n", free.Packets)) {
		t.Errorf("capinfos of the free-space capture: %q %v (status: %d packets)", out, err, free.Packets)
	}
}

// TestDirectionsAndOwnSSH: rx and tx captures see one side each, with the
// direction in every packet's flags, and casecap's SSH session is left out
// unless the plan opts out.
func TestDirectionsAndOwnSSH(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	stop := start.Add(time.Minute)
	udp := filter.Filter{Proto: u8(17)}
	stateDir, caseDir := e.start("dirs",
		agentproto.JobCapture{Name: "h01.eth0.Rx", File: "h01.eth0.Rx.pcapng", Interface: "eth0", Direction: bpfgen.In, Filter: udp, Start: start, Stop: stop},
		agentproto.JobCapture{Name: "h01.eth0.Tx", File: "h01.eth0.Tx.pcapng", Interface: "eth0", Direction: bpfgen.Out, Filter: udp, Start: start, Stop: stop},
		agentproto.JobCapture{Name: "h01.eth0.noSSH", File: "h01.eth0.noSSH.pcapng", Interface: "eth0", ExcludeOwnSSH: true, Filter: filter.Filter{TCPPort: u16(22)}, Start: start, Stop: stop},
		agentproto.JobCapture{Name: "h01.eth0.SSH", File: "h01.eth0.SSH.pcapng", Interface: "eth0", ExcludeOwnSSH: false, Filter: filter.Filter{TCPPort: u16(22)}, Start: start, Stop: stop},
	)
	// In: the lab's broadcast stream (port 9999). Out: the host sends to
	// the gateway's discard port (9), with bash's /dev/udp.
	s := e.send(ctx, time.Millisecond, 20)
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
	if _, err := e.ssh("for i in 1 2 3; do echo x > /dev/udp/" + e.l.Gateway.String() + "/9; done"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ssh(e.bin + " stop " + stateDir); err != nil {
		t.Fatal(err)
	}
	st := e.wait(stateDir, 10*time.Second)
	count := func(file string) map[string]int {
		out, err := exec.Command("tshark", "-r", filepath.Join(caseDir, file), "-T", "fields", "-e", "frame.packet_flags_direction", "-e", "udp.dstport").Output()
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			n[strings.Join(strings.Fields(line), " ")]++
		}
		return n
	}
	if got := count("h01.eth0.Rx.pcapng"); len(got) != 1 || got["0x00000001 9999"] != 20 {
		t.Errorf("rx capture: %v, want 20 inbound packets to port 9999 and nothing else", got)
	}
	if got := count("h01.eth0.Tx.pcapng"); len(got) != 1 || got["0x00000002 9"] != 3 {
		t.Errorf("tx capture: %v, want 3 outbound packets to port 9 and nothing else", got)
	}
	if n := st.Captures[2].Packets; n != 0 {
		t.Errorf("capture excluding casecap's SSH holds %d SSH packets, want 0", n)
	}
	if n := st.Captures[3].Packets; n == 0 {
		t.Error("capture not excluding casecap's SSH holds no SSH packets, want some")
	}
	if f := st.Captures[2].Filter; !strings.Contains(f, "not (tcp and ((src host "+e.l.Gateway.String()) {
		t.Errorf("the resolved filter does not show the exclusion: %q", f)
	}
}

// TestStopAtInstant: a stop request for an instant ends every capture's
// window there, exactly.
func TestStopAtInstant(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, 500*time.Microsecond, 0)
	start := time.Now()
	stateDir, caseDir := e.start("stopat", agentproto.JobCapture{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
		ExcludeOwnSSH: true, Filter: filter.Filter{UDPPort: u16(9999)}, Start: start, Stop: start.Add(time.Minute)})
	at := time.Now().Add(time.Second)
	if _, err := e.ssh(e.bin + " stop --at " + at.Format(time.RFC3339Nano) + " " + stateDir); err != nil {
		t.Fatal(err)
	}
	st := e.wait(stateDir, 10*time.Second)
	cancel()
	<-s.done
	got, err := seqcast.ReadFile(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng"), 1)
	if err != nil {
		t.Fatal(err)
	}
	after, ok := s.at(got.Last + 1)
	if st.Captures[0].StopReason != "stop-request" || !got.LastSeen.Before(at) || !ok || after.Before(at.Add(-time.Millisecond)) {
		t.Errorf("stop at %v: reason %s, last packet stamped %v, next sent %v", at, st.Captures[0].StopReason, got.LastSeen, after)
	}
	// Stopping again, or an agent that is gone, is not an error.
	if out, err := e.ssh(e.bin + " stop " + stateDir); err != nil || !strings.Contains(out, `"running": false`) {
		t.Errorf("second stop: %q %v", out, err)
	}
}

// TestBeginPending: captures armed without a start wait for `begin`, then
// keep exactly their duration from the instant begin names.
func TestBeginPending(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, 500*time.Microsecond, 0)
	stateDir, caseDir := e.start("begin", agentproto.JobCapture{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
		ExcludeOwnSSH: true, Filter: filter.Filter{UDPPort: u16(9999)}, Duration: time.Second, Stop: time.Now().Add(time.Minute)})
	st, err := e.status(stateDir)
	if err != nil || st.Captures[0].State != "armed" || !st.Captures[0].Start.IsZero() {
		t.Fatalf("before begin: %+v %v, want armed with no start", st, err)
	}
	at := time.Now().Add(300 * time.Millisecond)
	if _, err := e.ssh(e.bin + " begin --at " + at.Format(time.RFC3339Nano) + " " + stateDir); err != nil {
		t.Fatal(err)
	}
	st = e.wait(stateDir, 10*time.Second)
	cancel()
	<-s.done
	got, err := seqcast.ReadFile(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng"), 1)
	if err != nil {
		t.Fatal(err)
	}
	c := st.Captures[0]
	if c.StopReason != "window-end" || !c.Start.Equal(at) || !c.Stop.Equal(at.Add(time.Second)) {
		t.Errorf("status %+v, want the window [%v, +1s)", c, at)
	}
	if got.FirstSeen.Before(at) || !got.LastSeen.Before(at.Add(time.Second)) || !got.Contiguous() || got.Distinct < 1900 {
		t.Errorf("file %+v, want ~2000 contiguous packets stamped in [%v, +1s)", got, at)
	}
	// A second begin changes nothing.
	if _, err := e.ssh(e.bin + " begin " + stateDir); err == nil {
		t.Error("begin after the agent is gone should say there is no agent")
	}
}

// TestHeldBegin: `start --hold -` takes its job as one line, answers once
// armed, answers pings, and begins on a line of the same session; until
// then its status (rewritten twice a second) says armed. A session that
// ends without a begin disarms the captures: casecap called the start off,
// died or lost the host, and no begin will come; nothing is left armed and
// no file is kept.
func TestHeldBegin(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, 500*time.Microsecond, 0)
	held := func(name string) (stateDir, caseDir string, in io.WriteCloser, out *bufio.Reader, sess *ssh.Session) {
		j := e.streamJob(name, time.Second)
		raw, _ := json.Marshal(j)
		in, out, sess = e.session(t, e.bin+" start --hold -")
		in.Write(append(raw, '\n'))
		line, err := out.ReadString('\n')
		if err != nil || !strings.Contains(line, `"state":"armed"`) {
			t.Fatalf("start --hold answered %q, %v", line, err)
		}
		in.Write([]byte("ping\n"))
		if line, err := out.ReadString('\n'); line != "pong\n" || err != nil {
			t.Fatalf("ping: %q %v", line, err)
		}
		return j.StateDir, j.CaseDir, in, out, sess
	}

	stateDir, caseDir, in, out, sess := held("held")
	// Still armed after the agent's periodic rewrites of its status (not
	// only in the first one, written as it armed).
	first, err := e.status(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := e.status(stateDir)
		if err == nil && st.Updated.After(first.Updated) {
			if st.State != agentproto.StateArmed || !st.Alive {
				t.Errorf("held, before the begin: %+v, want armed and alive", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status not rewritten in 5 s: %+v %v", st, err)
		}
	}
	at := time.Now().Add(200 * time.Millisecond)
	in.Write([]byte("begin " + at.Format(time.RFC3339Nano) + "\n"))
	if line, err := out.ReadString('\n'); err != nil || !strings.Contains(line, `"begun":true`) {
		t.Fatalf("begin on the held session: %q %v", line, err)
	}
	if err := sess.Wait(); err != nil {
		t.Errorf("the held start should end once begun: %v", err)
	}
	st := e.wait(stateDir, 10*time.Second)
	got, err := seqcast.ReadFile(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Captures[0]; c.StopReason != "window-end" || !c.Start.Equal(at) || got.FirstSeen.Before(at) || !got.LastSeen.Before(at.Add(time.Second)) || got.Distinct < 1900 {
		t.Errorf("status %+v, file %+v: want ~2000 packets in [%v, +1s)", c, got, at)
	}

	// The orchestrator went away before the begin: disarmed, no file.
	stateDir, caseDir, in, _, sess = held("orphan")
	in.Close()
	if err := sess.Wait(); err != nil {
		t.Errorf("a held start whose session ends without a begin should exit quietly: %v", err)
	}
	st = e.wait(stateDir, 10*time.Second)
	if c := st.Captures[0]; st.State != agentproto.StateDone || c.StopReason != "disarmed" || c.Packets != 0 {
		t.Errorf("after the held session ended without a begin: %+v, want the agent done, its capture disarmed", st)
	}
	if _, err := os.Stat(filepath.Join(caseDir, "h01.eth0.RxTx.pcapng")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a capture that never began left its file: %v", err)
	}
	cancel()
	<-s.done
}

// TestServeSession: `serve`, the one session casecap holds for a whole run,
// answers the facts, clock probes, the job (once armed), pings and the
// begin, and goes on after the begin: a ping and a stop still work on it,
// and its end then leaves the finished capture as it is. A serve session
// that ends before the begin disarms: nothing armed is left, no file.
func TestServeSession(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.send(ctx, 500*time.Microsecond, 0)
	serve := func(name string) (j agentproto.Job, in io.WriteCloser, out *bufio.Reader, sess *ssh.Session) {
		j = e.streamJob(name, time.Minute)
		in, out, sess = e.session(t, e.bin+" serve")
		ask := func(line string) string {
			t.Helper()
			in.Write([]byte(line))
			ans, err := out.ReadString('\n')
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return ans
		}
		var facts agentproto.Facts
		if line, err := out.ReadString('\n'); err != nil || json.Unmarshal([]byte(line), &facts) != nil || facts.UID != 0 || len(facts.Interfaces) == 0 {
			t.Fatalf("serve's first line %q (%v): want the host's facts", line, err)
		}
		if ns, err := strconv.ParseInt(strings.TrimSpace(ask("t\n")), 10, 64); err != nil || time.Since(time.Unix(0, ns)).Abs() > time.Second {
			t.Fatalf("clock probe: %d %v", ns, err)
		}
		raw, _ := json.Marshal(j)
		var armed agentproto.Armed
		if line := ask(string(agentproto.JobLine(raw))); json.Unmarshal([]byte(line), &armed) != nil || armed.State != agentproto.StateArmed || armed.PID <= 0 {
			t.Fatalf("the job: %q, want armed with the agent's pid", line)
		}
		if line := ask("ping\n"); line != "pong\n" {
			t.Fatalf("ping: %q", line)
		}
		return j, in, out, sess
	}

	j, in, out, sess := serve("served")
	// From the begin on, the agent pushes its status between the answers.
	var pushed []*agentproto.Status
	// one reads a line: a pushed status is kept and "" returned.
	one := func() string {
		line, err := out.ReadString('\n')
		if err != nil {
			for _, p := range pushed {
				t.Logf("pushed: %s %+v", p.State, p.Captures)
			}
			t.Fatalf("the session ended: %v", err)
		}
		st, ok, err := agentproto.ParseStatusLine([]byte(line))
		if !ok {
			return line
		}
		if err != nil {
			t.Fatalf("pushed %q: %v", line, err)
		}
		pushed = append(pushed, st)
		return ""
	}
	next := func() string {
		for {
			if line := one(); line != "" {
				return line
			}
		}
	}
	ask := func(line string) string {
		in.Write([]byte(line))
		return next()
	}
	at := time.Now().Add(200 * time.Millisecond)
	if line := ask(string(agentproto.BeginLine(at))); !strings.Contains(line, `"begun":true`) {
		t.Fatalf("begin: %q", line)
	}
	if line := ask("ping\n"); line != "pong\n" {
		t.Fatalf("ping after the begin: %q: the session should go on", line)
	}
	time.Sleep(time.Second)
	var stopped agentproto.StopAnswer
	if line := ask(string(agentproto.StopLine(time.Time{}))); json.Unmarshal([]byte(line), &stopped) != nil {
		t.Fatalf("stop on the session: %q", line)
	}
	// The pushes go on until the captures are over: the last is the
	// final status, as the file has it.
	done := time.AfterFunc(10*time.Second, func() { in.Close() })
	for len(pushed) == 0 || !pushed[len(pushed)-1].Over() {
		if line := one(); line != "" {
			t.Fatalf("an answer nobody asked for: %q", line)
		}
	}
	done.Stop()
	in.Close()
	if err := sess.Wait(); err != nil {
		t.Errorf("a serve session ended by casecap should exit quietly: %v", err)
	}
	st := e.wait(j.StateDir, 10*time.Second)
	got, err := seqcast.ReadFile(filepath.Join(j.CaseDir, "h01.eth0.RxTx.pcapng"), 1)
	if c := st.Captures[0]; err != nil || c.StopReason != agentproto.StopRequest || got.Distinct < 1000 || got.FirstSeen.Before(at) {
		t.Errorf("status %+v, file %+v (%v): want the capture begun at %v and stopped on request", c, got, err, at)
	}
	running := 0
	for _, p := range pushed {
		if p.State == agentproto.StateRunning {
			running++
		}
	}
	last := pushed[len(pushed)-1]
	if running < 1 || last.Captures[0].Packets != st.Captures[0].Packets || last.Captures[0].CRC32C != st.Captures[0].CRC32C {
		t.Errorf("pushed %d statuses, %d while running, the last %+v; want it running then the file's final %+v", len(pushed), running, last.Captures[0], st.Captures[0])
	}

	// casecap went away before the begin: disarmed, no file.
	j, in, _, sess = serve("served-orphan")
	in.Close()
	if err := sess.Wait(); err != nil {
		t.Errorf("a serve session that ends without a begin should exit quietly: %v", err)
	}
	st = e.wait(j.StateDir, 10*time.Second)
	if c := st.Captures[0]; st.State != agentproto.StateDone || c.StopReason != agentproto.StopDisarmed || c.Packets != 0 {
		t.Errorf("after the serve session ended without a begin: %+v, want the capture disarmed", st)
	}
	if _, err := os.Stat(filepath.Join(j.CaseDir, "h01.eth0.RxTx.pcapng")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a capture that never began left its file: %v", err)
	}
	cancel()
	<-s.done
}

// streamJob is a job of one capture of the stream on eth0 for duration,
// begun by a begin, for the held-session tests.
func (e *env) streamJob(name string, duration time.Duration) agentproto.Job {
	return agentproto.Job{
		Version: agentproto.JobVersion, Case: name, Host: e.h.Name,
		StateDir: filepath.Join(e.l.Datastore, ".casecap", "cases", name, e.h.Name),
		CaseDir:  filepath.Join(e.l.Datastore, "Case_"+name),
		Captures: []agentproto.JobCapture{{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
			ExcludeOwnSSH: true, Filter: filter.Filter{UDPPort: u16(9999)}, Duration: duration, Stop: time.Now().Add(duration + time.Minute)}},
	}
}

// session starts cmd on the host over SSH with its stdin and stdout
// connected: a held session, as casecap opens one.
func (e *env) session(t *testing.T, cmd string) (io.WriteCloser, *bufio.Reader, *ssh.Session) {
	t.Helper()
	sess, err := e.c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	in, _ := sess.StdinPipe()
	o, _ := sess.StdoutPipe()
	if err := sess.Start(cmd); err != nil {
		t.Fatal(err)
	}
	return in, bufio.NewReader(o), sess
}
