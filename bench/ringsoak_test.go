//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent"
	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/agent/segments"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/plans/filter"
)

// BenchmarkRingSoak is issue 15's disk target: a ring capture (keep 20 s
// in 5 s segments) of a steady stream for CASECAP_BENCH_SOAK (10m), its
// segment folder measured on disk every second. It reports the largest
// size and time span the ring held, beside keep + grace + one segment, and
// checks the file at the end holds the last keep. CASECAP_BENCH_SOAK_RATE
// sets the packets per second (20000).
func BenchmarkRingSoak(b *testing.B) {
	labtest.Require(b)
	soak := 10 * time.Minute
	if v := os.Getenv("CASECAP_BENCH_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		soak = d
	}
	rate := 20_000
	if v := os.Getenv("CASECAP_BENCH_SOAK_RATE"); v != "" {
		if err := json.Unmarshal([]byte(v), &rate); err != nil {
			b.Fatal(err)
		}
	}
	l := labtest.Start(b, 1)
	bin := agenttest.CopyTo(b, l.Datastore)
	keep, segment := 20*time.Second, 5*time.Second
	now := time.Now()
	name := "soak"
	j := agentproto.Job{Version: agentproto.JobVersion, Case: name, Host: "h01",
		StateDir: filepath.Join(l.Datastore, ".casecap", name), CaseDir: filepath.Join(l.Datastore, "Case_"+name),
		Captures: []agentproto.JobCapture{{Name: "h01.eth0.RxTx", File: "h01.eth0.RxTx.pcapng", Interface: "eth0",
			Filter: filter.Filter{UDPPort: ptr(uint16(9999))}, Snaplen: snaplen, Start: now, Stop: now.Add(soak + time.Hour),
			Ring: &agentproto.Ring{Keep: keep, Segment: segment}}}}
	raw, _ := json.Marshal(j)
	jobPath := filepath.Join(l.Datastore, name+".json")
	if err := os.WriteFile(jobPath, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := inHost(l.Hosts[0], bin, "run", "--ready-fd", "3", jobPath)
	rd, wr, _ := os.Pipe()
	cmd.ExtraFiles = []*os.File{wr}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	wr.Close()
	if err := waitLine(rd, "armed"); err != nil {
		b.Fatal("agent did not arm")
	}
	ctx, cancel := context.WithTimeout(context.Background(), soak)
	defer cancel()
	go seqcast.Flood(ctx, seqcast.FloodOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 9, Rate: rate, Count: uint64(rate) * uint64(soak/time.Second)})
	dir := filepath.Join(j.StateDir, agentproto.RingDir, "h01.eth0.RxTx")
	var maxBytes int64
	var maxSpan time.Duration
	var bytesPerSec float64
	tick := time.NewTicker(time.Second)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.pcapng"))
		var size int64
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				size += fi.Size()
			}
		}
		st, err := agent.ReadStatus(j.StateDir)
		if err != nil || len(st.Captures) == 0 || st.Captures[0].Ring == nil || st.Captures[0].Ring.Oldest.IsZero() {
			continue
		}
		span := time.Since(st.Captures[0].Ring.Oldest)
		if span > 5*time.Second && st.Captures[0].Bytes > 0 {
			bytesPerSec = float64(size) / span.Seconds()
		}
		maxBytes, maxSpan = max(maxBytes, size), max(maxSpan, span)
	}
	tick.Stop()
	stopAt := time.Now()
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = cmd.Wait()
	bound := keep + segments.DefaultGrace + segment
	b.ReportMetric(float64(maxBytes)/(1<<20), "max-ring-MiB")
	b.ReportMetric(maxSpan.Seconds(), "max-span-s")
	b.ReportMetric(bound.Seconds(), "keep+grace+segment-s")
	b.ReportMetric(bytesPerSec*bound.Seconds()/(1<<20), "bound-MiB")
	b.ReportMetric(0, "ns/op")
	s, err := seqcast.ReadFile(filepath.Join(j.CaseDir, "h01.eth0.RxTx.pcapng"), 9)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("soak %v at %d/s: ring at most %.1f MiB over %.1f s (keep + grace + segment: %v, %.1f MiB at the measured rate); the file holds %d packets from %v before the stop, contiguous %v",
		soak, rate, float64(maxBytes)/(1<<20), maxSpan.Seconds(), bound, bytesPerSec*bound.Seconds()/(1<<20), s.Distinct, stopAt.Sub(s.FirstSeen).Round(time.Millisecond), s.Contiguous())
	if maxSpan > bound+time.Second {
		b.Errorf("the ring spanned %v, more than keep + grace + segment (%v)", maxSpan, bound)
	}
	os.RemoveAll(j.CaseDir)
	os.RemoveAll(j.StateDir)
}
