//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

func benchESXiHosts() int {
	if n, err := strconv.Atoi(os.Getenv("CASECAP_BENCH_ESXI_HOSTS")); err == nil && n > 0 {
		return n
	}
	return 16
}

// esxiPlanFor captures each ESXi host's uplink vmnic0, where the numbered
// broadcasts come in (UDP only: a native pktcap-uw flag, no --rcf).
func esxiPlanFor(b *testing.B, l *lab.Lab, caseID string, d time.Duration) *plans.Plan {
	var sb strings.Builder
	fmt.Fprintf(&sb, "case: %s\ndatastore: %s\nduration: %s\nssh: { user: root, identity_file: %s, known_hosts: %s }\nhosts:\n", caseID, lab.ESXiDatastore, d, l.ClientKey, l.KnownHosts)
	for _, h := range l.Hosts {
		fmt.Fprintf(&sb, "  - { name: %s, kind: esxi, address: %s, captures: [ { uplink: vmnic0, points: [UplinkRcvKernel], filter: { proto: udp } } ] }\n", h.Name, h.Addr)
	}
	p, err := plans.Parse("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkESXi measures start and stop skew, and run's overhead
// beyond the window, on lab ESXi hosts (16 by default): casecap in agent
// mode, casecap in ssh mode (datastore noexec, as under execInstalledOnly),
// and the KB runbook by hand with parallel-ssh (pktcap-uw started in the
// background on every host, later killed), in the same run.
func BenchmarkESXi(b *testing.B) {
	labtest.Require(b)
	if _, err := exec.LookPath("parallel-ssh"); err != nil {
		b.Fatal("parallel-ssh is not installed (apt-get install pssh)")
	}
	bin := agenttest.Binary(b)
	const window = 3 * time.Second
	for _, mode := range []string{"agent", "ssh"} {
		b.Run(mode, func(b *testing.B) {
			n := benchESXiHosts()
			l := labtest.StartWith(b, lab.Options{Hosts: n, ESXi: n, ESXiNoExec: mode == "ssh"})
			labtest.Stream(b, l, 11, 500*time.Microsecond)
			b.Run("casecap", func(b *testing.B) {
				benchRuns++
				p := esxiPlanFor(b, l, fmt.Sprintf("ESXBENCH-%d", benchRuns), window)
				out := b.TempDir()
				o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: out, Version: "bench",
					AgentBinary: func(string) ([]byte, error) { return os.ReadFile(bin) }})
				start := time.Now()
				m, err := o.Run(context.Background())
				took := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				var files []string
				for _, c := range m.Captures {
					files = append(files, filepath.Join(out, p.CaseDir(), c.File))
				}
				for _, h := range m.Hosts {
					if string(h.Mode) != mode {
						b.Fatalf("%s captured in %s mode, want %s", h.Name, h.Mode, mode)
					}
				}
				ss, ps := skews(b, files, 11)
				b.ReportMetric(float64(ss.Microseconds())/1000, "start-skew-ms")
				b.ReportMetric(float64(ps.Microseconds())/1000, "stop-skew-ms")
				b.ReportMetric((took - window).Seconds(), "overhead-s")
				if mode == "agent" {
					// When each agent had its pktcap-uw running (the lab's
					// hosts share one clock): casecap's part of the start
					// skew, the rest being pktcap-uw's own start-up.
					var spawned []time.Time
					for _, c := range m.Captures {
						spawned = append(spawned, c.Start)
					}
					b.ReportMetric(float64(seqcast.Spread(spawned).Microseconds())/1000, "spawn-skew-ms")
				}
				b.ReportMetric(0, "ns/op")
			})
			if mode != "agent" {
				return
			}
			b.Run("parallel-ssh+pktcap-uw", func(b *testing.B) {
				benchRuns++
				dir := fmt.Sprintf("%s/peer-%d", lab.ESXiDatastore, benchRuns)
				os.MkdirAll(filepath.Join(l.Datastore, filepath.Base(dir)), 0o755)
				// The KB's way, on every host at once with parallel-ssh.
				startCmd := fmt.Sprintf("pktcap-uw --uplink vmnic0 --capture UplinkRcvKernel --proto 0x11 --ng -o %s/$(hostname).pcapng >/dev/null 2>&1 </dev/null & echo $! > %s/$(hostname).pid", dir, dir)
				stopCmd := fmt.Sprintf("kill $(cat %s/$(hostname).pid); while kill -0 $(cat %s/$(hostname).pid) 2>/dev/null; do sleep 0.05; done", dir, dir)
				began := time.Now()
				tStart, _ := pssh(b, l, startCmd)
				time.Sleep(window)
				tStop, _ := pssh(b, l, stopCmd)
				took := time.Since(began)
				var files []string
				for _, h := range l.Hosts {
					files = append(files, filepath.Join(l.Datastore, filepath.Base(dir), h.Name+".pcapng"))
				}
				ss, ps := skews(b, files, 11)
				b.ReportMetric(float64(ss.Microseconds())/1000, "start-skew-ms")
				b.ReportMetric(float64(ps.Microseconds())/1000, "stop-skew-ms")
				b.ReportMetric((took - window).Seconds(), "overhead-s")
				b.ReportMetric(tStart.Seconds(), "pssh-start-s")
				b.ReportMetric(tStop.Seconds(), "pssh-stop-s")
				b.ReportMetric(0, "ns/op")
			})
		})
	}
}
