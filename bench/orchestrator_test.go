//go:build linux

package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/sync/errgroup"

	"github.com/casecap/casecap/agent/agenttest"
	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/lab"
	"github.com/casecap/casecap/lab/labtest"
	"github.com/casecap/casecap/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

func benchHosts() int {
	if n, err := strconv.Atoi(os.Getenv("CASECAP_BENCH_HOSTS")); err == nil && n > 0 {
		return n
	}
	return 50
}

func spread(ts []time.Time) time.Duration {
	lo, hi := ts[0], ts[0]
	for _, x := range ts {
		if x.Before(lo) {
			lo = x
		}
		if x.After(hi) {
			hi = x
		}
	}
	return hi.Sub(lo)
}

// skews reads each file's first and last stream packet (sender timestamps).
func skews(b *testing.B, files []string, stream uint32) (start, stop time.Duration) {
	var firsts, lasts []time.Time
	for _, f := range files {
		s, err := seqcast.ReadFile(f, stream)
		if err != nil || s.Distinct == 0 {
			b.Fatalf("%s: %+v %v", f, s, err)
		}
		firsts, lasts = append(firsts, s.FirstSent), append(lasts, s.LastSent)
	}
	return spread(firsts), spread(lasts)
}

func planFor(b *testing.B, l *lab.Lab, caseID string, d time.Duration) *plans.Plan {
	var sb strings.Builder
	fmt.Fprintf(&sb, "case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", caseID, l.Datastore, d, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&sb, "  - { name: %s, kind: linux, address: %s, captures: [ { interface: eth0, filter: { udpport: 9999 }%s } ] }\n", h.Name, h.Addr, os.Getenv("CASECAP_BENCH_CAPTURE_EXTRA"))
	}
	p, err := plans.Parse("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// pssh runs a command on every lab host with parallel-ssh, as a person
// would, and returns how long it took.
func pssh(b *testing.B, l *lab.Lab, hostsFile, cmd string) time.Duration {
	start := time.Now()
	c := exec.Command("parallel-ssh", "-h", hostsFile, "-l", "root", "-p", strconv.Itoa(len(l.Hosts)), "-t", "60",
		"-O", "IdentityFile="+l.ClientKey, "-O", "UserKnownHostsFile="+l.KnownHosts, "-O", "StrictHostKeyChecking=yes", "-O", "BatchMode=yes", cmd)
	if out, err := c.CombinedOutput(); err != nil {
		b.Fatalf("parallel-ssh %q: %v\n%s", cmd, err, out)
	}
	return time.Since(start)
}

// BenchmarkTogether measures start and stop skew, and run's overhead beyond
// the capture window, on 50 lab hosts: casecap run, then the same by hand
// with parallel-ssh and tcpdump, in the same run.
func BenchmarkTogether(b *testing.B) {
	labtest.Require(b)
	if _, err := exec.LookPath("parallel-ssh"); err != nil {
		b.Fatal("parallel-ssh is not installed (apt-get install pssh)")
	}
	n := benchHosts()
	l := labtest.Start(b, n)
	defer agenttest.Cleanup()
	bin := agenttest.Binary(b)
	const interval = 500 * time.Microsecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go seqcast.Send(ctx, seqcast.SendOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 9, Interval: interval})
	const window = 3 * time.Second

	for i, name := range []string{"casecap-cold", "casecap-warm"} {
		b.Run(name, func(b *testing.B) {
			caseID := fmt.Sprintf("BENCH-%d", i)
			p := planFor(b, l, caseID, window)
			out := b.TempDir()
			opt := orchestrator.Options{Plan: p, OutDir: out, Version: "bench",
				AgentBinary: func(string) ([]byte, error) { return os.ReadFile(bin) }}
			if os.Getenv("CASECAP_BENCH_LOG") != "" {
				opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			o := orchestrator.New(opt)
			start := time.Now()
			m, err := o.Run(context.Background(), nil)
			took := time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			var files []string
			for _, c := range m.Captures {
				files = append(files, filepath.Join(out, p.CaseDir(), c.File))
			}
			ss, ps := skews(b, files, 9)
			b.ReportMetric(float64(ss.Microseconds())/1000, "start-skew-ms")
			b.ReportMetric(float64(ps.Microseconds())/1000, "stop-skew-ms")
			b.ReportMetric((took - window).Seconds(), "overhead-s")
			b.ReportMetric(float64(o.Uploads()), "uploads")
			b.ReportMetric(0, "ns/op")
		})
	}

	b.Run("parallel-ssh+tcpdump", func(b *testing.B) {
		hostsFile := filepath.Join(l.Dir, "pssh-hosts")
		var lines []string
		for _, h := range l.Hosts {
			lines = append(lines, h.Addr.String())
		}
		os.WriteFile(hostsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		dir := filepath.Join(l.Datastore, "peer")
		os.MkdirAll(dir, 0o755)
		// What the runbook does, one host after another in parallel-ssh's
		// order: start tcpdump in the background, and later kill it.
		startCmd := fmt.Sprintf("nohup tcpdump -i eth0 -n --immediate-mode -w %s/$(hostname).pcap udp port 9999 >/dev/null 2>&1 & echo $! > %s/$(hostname).pid", dir, dir)
		stopCmd := fmt.Sprintf("kill $(cat %s/$(hostname).pid); while kill -0 $(cat %s/$(hostname).pid) 2>/dev/null; do sleep 0.05; done", dir, dir)
		began := time.Now()
		tStart := pssh(b, l, hostsFile, startCmd)
		time.Sleep(window)
		tStop := pssh(b, l, hostsFile, stopCmd)
		took := time.Since(began)
		var files []string
		for _, h := range l.Hosts {
			files = append(files, filepath.Join(dir, h.Name+".pcap"))
		}
		ss, ps := skews(b, files, 9)
		b.ReportMetric(float64(ss.Microseconds())/1000, "start-skew-ms")
		b.ReportMetric(float64(ps.Microseconds())/1000, "stop-skew-ms")
		b.ReportMetric((took - window).Seconds(), "overhead-s")
		b.ReportMetric(tStart.Seconds(), "pssh-start-s")
		b.ReportMetric(tStop.Seconds(), "pssh-stop-s")
		b.ReportMetric(0, "ns/op")
	})
}

// conns dials every lab host with casecap's SSH code.
func conns(b *testing.B, l *lab.Lab) []*hosts.SSHConn {
	kh, err := hosts.NewKnownHosts([]string{l.KnownHosts}, false)
	if err != nil {
		b.Fatal(err)
	}
	cs := make([]*hosts.SSHConn, len(l.Hosts))
	var g errgroup.Group
	for i, h := range l.Hosts {
		g.Go(func() (err error) {
			cs[i], err = hosts.DialSSH(context.Background(), hosts.SSHOptions{Name: h.Name, Address: h.Addr.String(), User: "root",
				IdentityFiles: []string{l.ClientKey}, NoAgent: true, KnownHosts: kh, Config: &ssh_config.Config{}})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return cs
}

// download fetches one file as collect does: SFTP with concurrent reads,
// hashed while written.
func download(c *hosts.SSHConn, remote, local string) error {
	f, err := os.Create(local)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	_, err = c.Download(context.Background(), remote, &teeAt{f: f, h: h}, 0, nil)
	return err
}

type teeAt struct {
	f io.WriterAt
	h io.Writer
}

func (t *teeAt) WriteAt(p []byte, off int64) (int, error) {
	n, err := t.f.WriteAt(p, off)
	t.h.Write(p[:n])
	return n, err
}

func randomFile(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
}

func scpArgs(l *lab.Lab) []string {
	return []string{"-q", "-o", "IdentityFile=" + l.ClientKey, "-o", "UserKnownHostsFile=" + l.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"}
}

// BenchmarkCollect: one 512 MiB file, casecap's download against scp; then
// 50 hosts x 20 MiB, casecap's parallel downloads against parallel-slurp.
func BenchmarkCollect(b *testing.B) {
	labtest.Require(b)
	n := benchHosts()
	l := labtest.Start(b, n)
	const big = 512 << 20
	src := filepath.Join(l.Datastore, "big.pcapng")
	randomFile(b, src, big)
	dst := b.TempDir()
	cs := conns(b, l)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	rate := func(bytes int64, d time.Duration) float64 { return float64(bytes) / (1 << 20) / d.Seconds() }
	for _, tool := range []string{"scp", "casecap"} {
		b.Run("512MiB/"+tool, func(b *testing.B) {
			out := filepath.Join(dst, tool+".pcapng")
			start := time.Now()
			if tool == "scp" {
				args := append(scpArgs(l), "root@"+l.Hosts[0].Addr.String()+":"+src, out)
				if o, err := exec.Command("scp", args...).CombinedOutput(); err != nil {
					b.Fatalf("scp: %v %s", err, o)
				}
			} else if err := download(cs[0], src, out); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(rate(big, time.Since(start)), "MiB/s")
			b.ReportMetric(0, "ns/op")
			os.Remove(out)
		})
	}
	os.Remove(src)

	const small = 20 << 20
	for _, h := range l.Hosts {
		randomFile(b, filepath.Join(l.Datastore, h.Name+".pcapng"), small)
	}
	for _, tool := range []string{"parallel-slurp", "casecap"} {
		b.Run(fmt.Sprintf("%dx20MiB/%s", n, tool), func(b *testing.B) {
			out := filepath.Join(dst, tool)
			os.MkdirAll(out, 0o755)
			start := time.Now()
			if tool == "parallel-slurp" {
				hostsFile := filepath.Join(l.Dir, "slurp-hosts")
				var lines []string
				for _, h := range l.Hosts {
					lines = append(lines, h.Addr.String())
				}
				os.WriteFile(hostsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
				// parallel-slurp fetches one remote path from every host: point
				// each host's private /tmp/mine.pcapng at its own file.
				pssh(b, l, hostsFile, fmt.Sprintf("ln -sf %s/$(hostname).pcapng /tmp/mine.pcapng", l.Datastore))
				start = time.Now()
				sargs := []string{"-h", hostsFile, "-l", "root", "-p", strconv.Itoa(n), "-L", out,
					"-O", "IdentityFile=" + l.ClientKey, "-O", "UserKnownHostsFile=" + l.KnownHosts, "-O", "StrictHostKeyChecking=yes", "-O", "BatchMode=yes",
					"/tmp/mine.pcapng", "f.pcapng"}
				if o, err := exec.Command("parallel-slurp", sargs...).CombinedOutput(); err != nil {
					b.Fatalf("parallel-slurp: %v %s", err, o)
				}
			} else {
				var g errgroup.Group
				g.SetLimit(16) // collect's limit on files at once
				for i, h := range l.Hosts {
					g.Go(func() error {
						return download(cs[i], filepath.Join(l.Datastore, h.Name+".pcapng"), filepath.Join(out, h.Name+".pcapng"))
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			d := time.Since(start)
			b.ReportMetric(d.Seconds(), "s")
			b.ReportMetric(rate(int64(n)*small, d), "MiB/s")
			b.ReportMetric(0, "ns/op")
			os.RemoveAll(out)
		})
	}
}
