//go:build linux

package bench

import (
	"context"
	"io"
	"net/netip"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agent/agenttest"
	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/internal/lab/labtest"
	"github.com/casecap/casecap/internal/lab/seqcast"
	"github.com/casecap/casecap/live"
	"github.com/casecap/casecap/orchestrator"
)

// liveCounter is casecap live's own view (Feed + Printer to nowhere), with
// its counts.
type liveCounter struct {
	mu      sync.Mutex
	feed    *live.Feed
	pr      *live.Printer
	shown   uint64
	dropped map[int]uint64
	ended   map[int]agentproto.CaptureStatus
}

func (c *liveCounter) Captures(caps []live.Capture) {
	c.dropped, c.ended = map[int]uint64{}, map[int]agentproto.CaptureStatus{}
	c.pr = &live.Printer{W: io.Discard, Captures: caps}
	c.feed = &live.Feed{Captures: caps, Out: func(p live.Packet) {
		c.mu.Lock()
		c.shown++
		c.pr.Print(p)
		c.mu.Unlock()
	}}
	c.feed.Start()
}
func (c *liveCounter) Piece(i int, b []byte) { c.feed.Piece(i, b) }
func (c *liveCounter) Dropped(i int, n uint64) {
	c.mu.Lock()
	c.dropped[i] = n
	c.mu.Unlock()
}
func (c *liveCounter) Ended(i int, st agentproto.CaptureStatus) {
	c.mu.Lock()
	c.ended[i] = st
	c.mu.Unlock()
}

// BenchmarkLive is issue 16's cost target: CASECAP_BENCH_HOSTS lab hosts
// (16) each receiving a steady CASECAP_BENCH_RATE (10000) packets a
// second for 10 s, all streamed live to this process, which decodes,
// orders and formats every packet (the lines go to io.Discard). It
// reports this process's CPU, its peak heap, the packets shown, and those
// the streams dropped (this side too slow) or the kernels dropped.
func BenchmarkLive(b *testing.B) {
	labtest.Require(b)
	n := 16
	if v, err := strconv.Atoi(os.Getenv("CASECAP_BENCH_HOSTS")); err == nil && v > 0 {
		n = v
	}
	rate := 10_000
	if v, err := strconv.Atoi(os.Getenv("CASECAP_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	l := labtest.Start(b, n)
	bin := agenttest.Binary(b)
	const d = 10 * time.Second
	flood := func() (seqcast.Sent, time.Duration) {
		var before, after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		sent, err := seqcast.Flood(context.Background(), seqcast.FloodOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 80, Rate: rate, Count: uint64(rate) * uint64(d/time.Second)})
		if err != nil {
			b.Fatal(err)
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		return sent, time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	}
	// The sender runs in this process: its own CPU, measured alone first,
	// is taken off casecap's.
	_, senderCPU := flood()
	p := planFor(b, l, "LIVE-BENCH", time.Minute)
	o := orchestrator.New(orchestrator.Options{Plan: p, OutDir: b.TempDir(), AgentBinary: func(string) ([]byte, error) { return os.ReadFile(bin) }, Version: "bench"})
	ctx, cancel := context.WithCancel(context.Background())
	sink := &liveCounter{}
	done := make(chan error, 1)
	go func() { _, err := o.Live(ctx, sink); done <- err }()
	for sink.feed == nil {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // every host streaming
	// The live heap's peak in the first and the second half: bounded, it
	// does not grow with the time streamed.
	var peak [2]uint64
	began := time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		// The live heap as the last garbage collection found it: what
		// casecap holds, not the garbage it has yet to collect.
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			metrics.Read(sample)
			half := min(int(time.Since(began)/(d/2)), 1)
			peak[half] = max(peak[half], sample[0].Value.Uint64())
		}
	}()
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	sent, _ := flood()
	time.Sleep(time.Second) // the last ones shown
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	took := time.Since(began)
	close(stopSampling)
	<-sampled
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	sink.feed.Close()
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) - senderCPU
	var streamDrops, kernelDrops, captured uint64
	for i := range len(l.Hosts) {
		streamDrops += sink.dropped[i]
		kernelDrops += sink.ended[i].Drops
		captured += sink.ended[i].Packets
	}
	b.ReportMetric(float64(sent.Packets), "sent-per-host")
	b.ReportMetric(float64(captured), "captured")
	b.ReportMetric(float64(sink.shown), "shown")
	b.ReportMetric(float64(streamDrops), "stream-drops")
	b.ReportMetric(float64(kernelDrops), "kernel-drops")
	b.ReportMetric(cpu.Seconds()/took.Seconds(), "casecap-cpus")
	b.ReportMetric(float64(peak[0])/(1<<20), "peak-live-heap-MiB-first-half")
	b.ReportMetric(float64(peak[1])/(1<<20), "peak-live-heap-MiB-second-half")
	b.ReportMetric(senderCPU.Seconds()/d.Seconds(), "sender-cpus")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d hosts x %d pkt/s for %v: captured %d, shown %d, stream drops %d, kernel drops %d; casecap used %.2f CPUs (this process less the sender's %.2f, measured alone), peak live heap %.1f then %.1f MiB",
		n, rate, d, captured, sink.shown, streamDrops, kernelDrops, cpu.Seconds()/took.Seconds(), senderCPU.Seconds()/d.Seconds(), float64(peak[0])/(1<<20), float64(peak[1])/(1<<20))
}
