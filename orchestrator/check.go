package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/casecap/casecap/plans"
)

// clockProbes is how many round trips measure a host's clock; the fastest
// one gives the offset (NTP's minimum-delay filter).
const clockProbes = 8

// check asks the agent what it can do on the host (interfaces, tcpdump,
// root) and measures the host's clock offset and the round trip.
func (o *Orchestrator) check(ctx context.Context) {
	o.each(ctx, "check", func(ctx context.Context, h *hostRun) error {
		start := time.Now()
		out, err := h.conn.Run(ctx, append(slices.Clone(h.agent), "check"), nil)
		if err != nil {
			return err
		}
		h.execLat = time.Since(start)
		if err := json.Unmarshal(out, &h.facts); err != nil {
			return fmt.Errorf("the agent's check: %w", err)
		}
		var errs []error
		if h.facts.UID != 0 {
			errs = append(errs, fmt.Errorf("capturing needs root; casecap runs as uid %d there (set ssh.user: root)", h.facts.UID))
		}
		names := map[string]bool{"any": true}
		var all []string
		for _, i := range h.facts.Interfaces {
			names[i.Name] = true
			all = append(all, i.Name)
		}
		for _, c := range h.plan.Captures {
			if c.Target.Kind == plans.TargetInterface && !names[c.Target.Name] {
				errs = append(errs, fmt.Errorf("%s: no interface %q on this host; it has %s", c.File, c.Target.Name, strings.Join(all, ", ")))
			}
			if c.Filter.Expr != "" && h.facts.Tcpdump == "" {
				errs = append(errs, fmt.Errorf("%s: the filter's expr needs tcpdump on the host to compile it, and there is none; install tcpdump or use structured filter keys", c.File))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if h.offset, h.rtt, err = measureClock(ctx, h); err != nil {
			return fmt.Errorf("measure the clock: %w", err)
		}
		o.disp.HostPhase(h.name(), fmt.Sprintf("clock offset %v, rtt %v", h.offset.Round(time.Microsecond), h.rtt.Round(time.Microsecond)))
		return nil
	})
}

// measureClock runs the agent's clock responder and keeps the sample with
// the shortest round trip: offset = host time - (t0 + t1)/2.
func measureClock(ctx context.Context, h *hostRun) (offset, rtt time.Duration, err error) {
	p, err := h.conn.Start(ctx, append(slices.Clone(h.agent), "clock"))
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		p.Stdin().Close()
		if werr := p.Wait(); err == nil && werr != nil {
			err = werr
		}
	}()
	r := bufio.NewReader(p.Stdout())
	rtt = time.Hour
	for range clockProbes {
		t0 := time.Now()
		if _, err := p.Stdin().Write([]byte("t\n")); err != nil {
			return 0, 0, err
		}
		line, err := r.ReadString('\n')
		t1 := time.Now()
		if err != nil {
			return 0, 0, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bad clock answer %q", line)
		}
		if d := t1.Sub(t0); d < rtt {
			rtt = d
			offset = time.Unix(0, ns).Sub(t0.Add(d / 2))
		}
	}
	return offset, rtt, nil
}
