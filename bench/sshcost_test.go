//go:build linux

package bench

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kevinburke/ssh_config"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/lab/labtest"
)

// BenchmarkSSHCosts is the price list behind casecap's overhead against its
// floor (BenchmarkTogether): what one step costs on every lab host at once,
// in wall time and in the machine's CPU (the lab's sshds and programs run
// on this machine, so on a CPU-bound lab the CPU is the time): connecting,
// an exec session of `true`, of `sh -c true`, of the agent (a Go program
// starting), opening SFTP, one SFTP stat, and an idle second (the
// background: the lab's traffic). Each step runs on all hosts at once, one
// step after another.
func BenchmarkSSHCosts(b *testing.B) {
	labtest.Require(b)
	l := labtest.Start(b, benchHosts())
	labtest.Stream(b, l, 9, 500*time.Microsecond)
	agent := agenttest.CopyTo(b, l.Datastore)
	kh, err := hosts.NewKnownHosts([]string{l.KnownHosts}, false)
	if err != nil {
		b.Fatal(err)
	}
	cs := make([]*hosts.SSHConn, len(l.Hosts))
	defer func() { closeAll(cs) }()
	ctx := context.Background()
	n := float64(len(l.Hosts))
	step := func(name string, f func(i int) error) {
		cpu, began := busyCPU(), time.Now()
		var wg sync.WaitGroup
		for i := range l.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(i); err != nil {
					b.Errorf("%s on %s: %v", name, l.Hosts[i].Name, err)
				}
			}()
		}
		wg.Wait()
		wall, used := time.Since(began), busyCPU()-cpu
		b.Logf("%-14s %6.3f s wall %6.3f CPU-s (%5.2f ms a host)", name, wall.Seconds(), used.Seconds(), used.Seconds()*1000/n)
		b.ReportMetric(used.Seconds()*1000/n, name+"-cpu-ms/host")
	}
	step("connect", func(i int) error {
		h := l.Hosts[i]
		c, err := hosts.DialSSH(ctx, hosts.SSHOptions{Name: h.Name, Address: h.Addr.String(), User: "root",
			IdentityFiles: []string{l.ClientKey}, NoAgent: true, KnownHosts: kh, Config: &ssh_config.Config{}})
		cs[i] = c
		return err
	})
	run := func(argv ...string) func(int) error {
		return func(i int) error { _, err := cs[i].Run(ctx, argv, nil); return err }
	}
	step("exec-true", run("true"))
	step("exec-sh", run("sh", "-c", "true"))
	step("exec-agent", run(agent, "version"))
	step("sftp-open", func(i int) error { _, err := cs[i].SFTP(); return err })
	step("sftp-stat", func(i int) error { _, err := cs[i].Stat(l.Datastore); return err })
	step("idle-1s", func(int) error { time.Sleep(time.Second); return nil })
	b.ReportMetric(0, "ns/op")
}
