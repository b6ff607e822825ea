//go:build linux

package bench

import (
	"context"
	"io"
	"net/netip"
	"os"
	"runtime"
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
	var peak uint64
	stopSampling := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}()
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	began := time.Now()
	const d = 10 * time.Second
	sent, err := seqcast.Flood(context.Background(), seqcast.FloodOptions{From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), 9999), Stream: 80, Rate: rate, Count: uint64(rate) * uint64(d/time.Second)})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second) // the last ones shown
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	took := time.Since(began)
	close(stopSampling)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	sink.feed.Close()
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
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
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d hosts x %d pkt/s for %v: captured %d, shown %d, stream drops %d, kernel drops %d; casecap used %.2f CPUs (this process, which also ran the lab's SSH client side), peak heap %.1f MiB",
		n, rate, d, captured, sink.shown, streamDrops, kernelDrops, cpu.Seconds()/took.Seconds(), float64(peak)/(1<<20))
}
