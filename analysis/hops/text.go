package hops

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// Worst is the hop that lost most packets (nil if none lost any).
func (r *Report) Worst() *Hop {
	var w *Hop
	for i := range r.Hops {
		h := &r.Hops[i]
		if h.Lost > 0 && (w == nil || h.Lost > w.Lost) {
			w = h
		}
	}
	return w
}

// WriteText writes the report for people: the worst hop in one line, then
// every hop in path order, the flows that lost most, and the seconds in
// which packets were lost.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("%d capture points, %s frames (%s IP packets)", len(r.Points), humanize.Comma(int64(r.Frames)), humanize.Comma(int64(r.Packets)))
	if r.Window != nil {
		p.f(", counted from %s to %s (casecap's clock)", r.Window.Start.Format("15:04:05.000"), r.Window.Stop.Format("15:04:05.000"))
	}
	p.f("\n\n")
	switch worst := r.Worst(); {
	case len(r.Hops) == 0:
		p.f("no packet was seen at two capture points: no hop to measure (do the captures see the same traffic?)\n")
		return p.err
	case worst == nil:
		p.f("no packet lost on any hop\n\n")
	default:
		p.f("lost between %s and %s: %s of %s (%s)\n\n", worst.From, worst.To, humanize.Comma(int64(worst.Lost)), humanize.Comma(int64(worst.Packets)), percent(worst.Loss))
	}
	for _, name := range r.Points {
		if n := r.CaptureDrops[name]; n > 0 {
			p.f("%s lost %s packets itself (its capture buffer was full): loss on the hops to it may be the capture's, not the network's\n", name, humanize.Comma(int64(n)))
		}
	}
	if len(r.CaptureDrops) > 0 {
		p.f("\n")
	}
	for _, path := range r.Paths {
		p.f("path (%s packets): %s\n", humanize.Comma(int64(path.Packets)), strings.Join(path.Points, " > "))
	}
	p.f("\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOP\tPACKETS\tLOST\tLOSS\tDUP\tREORDERED\tLATENCY p50 / p99 / max\tCLOCKS ±\t")
	for _, h := range r.Hops {
		lat := "-"
		if h.Latency != nil {
			lat = fmt.Sprintf("%.3f / %.3f / %.3f ms", h.Latency.P50, h.Latency.P99, h.Latency.Max)
		}
		fmt.Fprintf(tw, "%s > %s\t%s\t%s\t%s\t%d\t%d\t%s\t%.3f ms\t\n", h.From, h.To, humanize.Comma(int64(h.Packets)), humanize.Comma(int64(h.Lost)), percent(h.Loss), h.Duplicates, h.Reordered, lat, h.UncertaintyMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Flows) > 0 {
		p.f("\nflows that lost most:\n")
		for _, f := range r.Flows {
			p.f("  %s, %s > %s: %s of %s\n", f.Flow, f.From, f.To, humanize.Comma(int64(f.Lost)), humanize.Comma(int64(f.Packets)))
		}
	}
	first := true
	for _, h := range r.Hops {
		for _, s := range h.PerSecond {
			if s.Lost == 0 {
				continue
			}
			if first {
				p.f("\nseconds with loss:\n")
				first = false
			}
			p.f("  %s  %s > %s: %s of %s\n", s.At.Format("15:04:05"), h.From, h.To, humanize.Comma(int64(s.Lost)), humanize.Comma(int64(s.Packets)))
		}
	}
	return p.err
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}
