// Package progress shows the orchestrator's progress: bars on a terminal
// (github.com/vbauerster/mpb), plain lines otherwise, always on stderr.
package progress

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/casecap/casecap/orchestrator"
)

// New returns a display writing to w; bars when tty is true.
func New(w io.Writer, tty bool) orchestrator.Display {
	if !tty {
		return &plain{w: w, every: 5 * time.Second}
	}
	return &bars{w: w, p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(30), mpb.WithRefreshRate(200*time.Millisecond)), caps: map[string]*capBar{}}
}

// line formats one capture's progress.
func line(c orchestrator.Progress) string {
	state := c.State
	if !c.Reachable {
		state += ", host unreachable"
	}
	s := fmt.Sprintf("%d pkts, %s, %d drops, file %s, %s", c.Packets, humanize.IBytes(c.Bytes), c.Drops, humanize.IBytes(uint64(c.Size)), state)
	if c.StopReason != "" {
		s += " (" + string(c.StopReason) + ")"
	}
	return s
}

func name(c orchestrator.Progress) string {
	n := c.Name
	if i := strings.LastIndexByte(c.File, '/'); i >= 0 {
		n = strings.TrimSuffix(c.File[i+1:], ".pcapng")
	}
	return n
}

// plain prints lines: phases as they happen, captures every few seconds.
type plain struct {
	w     io.Writer
	every time.Duration
	mu    sync.Mutex
	last  time.Time
}

func (p *plain) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func (p *plain) HostPhase(host, msg string) { p.printf("%s: %s", host, msg) }
func (p *plain) HostFailed(host, phase string, err error) {
	p.printf("%s: %s FAILED: %v", host, phase, err)
}

func (p *plain) Captures(window, elapsed time.Duration, caps []orchestrator.Progress) {
	p.mu.Lock()
	due := time.Since(p.last) >= p.every
	if due {
		p.last = time.Now()
	}
	p.mu.Unlock()
	if !due {
		return
	}
	sort.Slice(caps, func(i, j int) bool { return caps[i].File < caps[j].File })
	for _, c := range caps {
		p.printf("%s %s: %s", c.Host, name(c), line(c))
	}
}

func (p *plain) Download(host, file string, total int64) orchestrator.Transfer {
	return &plainTransfer{p: p, host: host, file: file, total: total, start: time.Now()}
}

func (p *plain) Close() {}

type plainTransfer struct {
	p           *plain
	host, file  string
	total, done int64
	start       time.Time
	mu          sync.Mutex
}

func (t *plainTransfer) Add(n int64) { t.mu.Lock(); t.done += n; t.mu.Unlock() }

func (t *plainTransfer) Done(err error) {
	if err != nil {
		t.p.printf("%s: %s: download FAILED: %v", t.host, t.file, err)
		return
	}
	rate := float64(t.total) / max(time.Since(t.start).Seconds(), 1e-3)
	t.p.printf("%s: %s collected, %s verified (%s/s)", t.host, t.file, humanize.IBytes(uint64(t.total)), humanize.IBytes(uint64(rate)))
}

// bars draws one bar per capture (time through its window) and per
// download (bytes, rate).
type bars struct {
	w    io.Writer
	p    *mpb.Progress
	mu   sync.Mutex
	caps map[string]*capBar
}

type capBar struct {
	bar  *mpb.Bar
	text string
}

func (b *bars) HostPhase(host, msg string) {
	fmt.Fprintf(b.p, "%s: %s\n", host, msg)
}

func (b *bars) HostFailed(host, phase string, err error) {
	fmt.Fprintf(b.p, "%s: %s FAILED: %v\n", host, phase, err)
}

func (b *bars) Captures(window, elapsed time.Duration, caps []orchestrator.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sort.Slice(caps, func(i, j int) bool { return caps[i].File < caps[j].File })
	for _, c := range caps {
		key := c.Host + "/" + c.File
		cb := b.caps[key]
		if cb == nil {
			cb = &capBar{}
			label := c.Host + " " + name(c)
			cb.bar = b.p.New(window.Milliseconds(), mpb.BarStyle(),
				mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR)),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
					b.mu.Lock()
					defer b.mu.Unlock()
					return cb.text
				})))
			b.caps[key] = cb
		}
		cb.text = line(c)
		cb.bar.SetCurrent(min(elapsed.Milliseconds(), window.Milliseconds()))
		if c.State == "stopped" || c.State == "failed" {
			cb.bar.SetTotal(-1, true)
		}
	}
}

func (b *bars) Download(host, file string, total int64) orchestrator.Transfer {
	bar := b.p.New(total, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name(host+" "+file, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"), decor.AverageSpeed(decor.SizeB1024(0), " % .1f")))
	return &barTransfer{bar: bar}
}

func (b *bars) Close() {
	b.mu.Lock()
	for _, cb := range b.caps {
		cb.bar.Abort(false)
	}
	b.mu.Unlock()
	b.p.Wait()
}

type barTransfer struct{ bar *mpb.Bar }

func (t *barTransfer) Add(n int64) { t.bar.IncrInt64(n) }
func (t *barTransfer) Done(err error) {
	if err != nil {
		t.bar.Abort(false)
		return
	}
	t.bar.SetTotal(-1, true)
}
