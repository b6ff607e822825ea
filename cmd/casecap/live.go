package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/internal/agentproto"
	"github.com/casecap/casecap/live"
	"github.com/casecap/casecap/orchestrator"
)

// liveCommand: casecap live PLAN [--pcapng FILE|-].
func liveCommand() *cli.Command {
	cmd := planCommand("live", "run the plan's captures and show their packets as they come, every point in one time order; Ctrl-C stops them all",
		"Nothing is written on the hosts. Each line: casecap's time, the capture's name, the direction, then\n"+
			"what tcpdump -enn would say. Packets are held "+live.DefaultDelay.String()+" so that every host's are shown in order.\n"+
			"With --pcapng FILE (- for stdout), one live pcapng stream instead, an interface per capture point,\n"+
			"which wireshark -k -i - and tshark -r - read as it grows.",
		func(c *cli.Context, _ string) error {
			p, err := loadPlan(c)
			if err != nil {
				return err
			}
			if c.Bool("install-extcap") {
				said, err := installExtcap(p.File)
				if err != nil {
					return runtimeError{fmt.Errorf("install the extcap: %w", err)}
				}
				fmt.Fprintln(c.App.Writer, said)
				return nil
			}
			ctx, cancel := cancelOnSignal(c.Context)
			defer cancel()
			s, err := newSession(c, p, false, orchestrator.Signals{})
			if err != nil {
				return err
			}
			defer s.close()
			v := &liveView{out: c.App.Writer, errW: c.App.ErrWriter}
			if f := c.String("pcapng"); f != "" {
				w := c.App.Writer
				if f != "-" {
					file, err := os.OpenFile(f, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
					if err != nil {
						return usageError{fmt.Sprintf("--pcapng: %v", err)}
					}
					defer file.Close()
					w = file
				}
				v.ng = w
			}
			m, err := s.orch.Live(ctx, v)
			v.close()
			if err != nil {
				for _, e := range m.Errors {
					fmt.Fprintln(c.App.ErrWriter, "error:", e)
				}
				return runtimeError{err}
			}
			return nil
		}, append(orchestrateFlags(false)[1:],
			&cli.StringFlag{Name: "pcapng", Usage: "write one live pcapng stream to `FILE` (- for stdout) instead of lines"},
			&cli.BoolFlag{Name: "install-extcap", Usage: "make the plan a capture interface in Wireshark (casecap-<case>): link casecap into Wireshark's extcap folder and register the plan, then return"})...)
	cmd.Flags = cmd.Flags[1:] // no --json: stdout is the packets
	return cmd
}

// liveView is what casecap live shows: lines, or a pcapng stream.
type liveView struct {
	out, errW io.Writer
	ng        io.Writer // --pcapng

	mu      sync.Mutex
	caps    []live.Capture
	feed    *live.Feed
	printer *live.Printer
	bw      *bufio.Writer
	ngw     *pcapgo.NgWriter
	dropped []uint64
	ended   []*agentproto.CaptureStatus
	shown   []uint64
	stop    chan struct{}
}

func (v *liveView) Captures(caps []live.Capture) {
	v.caps = caps
	v.dropped, v.ended, v.shown = make([]uint64, len(caps)), make([]*agentproto.CaptureStatus, len(caps)), make([]uint64, len(caps))
	v.bw = bufio.NewWriterSize(v.out, 64<<10)
	out := v.show
	if v.ng != nil {
		v.bw = bufio.NewWriterSize(v.ng, 64<<10)
		out = v.writePcapng
	} else {
		v.printer = &live.Printer{W: v.bw, Captures: caps}
	}
	v.feed = &live.Feed{Captures: caps, Out: out}
	v.feed.Start()
	// What is shown goes out at least every 100 ms.
	v.stop = make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-v.stop:
				return
			case <-t.C:
			}
			v.mu.Lock()
			v.bw.Flush()
			v.mu.Unlock()
		}
	}()
}

func (v *liveView) show(p live.Packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.shown[p.Capture]++
	v.printer.Print(p)
}

// writePcapng writes p to the stream, whose interfaces (one per capture,
// named like its file) are written with its first packet.
func (v *liveView) writePcapng(p live.Packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ngw == nil {
		// Each capture's link type, from its stream's first piece (sent
		// within 100 ms of its start, long before the first packet is
		// shown); Ethernet for one not heard from yet.
		link := func(i int) layers.LinkType {
			if lt := v.feed.LinkType(i); lt != 0 {
				return layers.LinkType(lt)
			}
			return layers.LinkTypeEthernet
		}
		w, err := pcapgo.NewNgWriterInterface(v.bw, pcapgo.NgInterface{Name: v.caps[0].Name, LinkType: link(0), TimestampResolution: 9},
			pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "casecap live"}})
		if err != nil {
			fmt.Fprintln(v.errW, "casecap live:", err)
			return
		}
		for i, c := range v.caps[1:] {
			if _, err := w.AddInterface(pcapgo.NgInterface{Name: c.Name, LinkType: link(i + 1), TimestampResolution: 9}); err != nil {
				fmt.Fprintln(v.errW, "casecap live:", err)
				return
			}
		}
		v.ngw = w
	}
	v.shown[p.Capture]++
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: max(p.Length, len(p.Data)), InterfaceIndex: p.Capture}
	if err := v.ngw.WritePacket(ci, p.Data); err == nil {
		v.ngw.Flush()
	}
}

func (v *liveView) Piece(i int, b []byte) {
	if err := v.feed.Piece(i, b); err != nil {
		fmt.Fprintf(v.errW, "casecap live: %s: %v\n", v.caps[i].Name, err)
	}
}

func (v *liveView) Dropped(i int, n uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if n > v.dropped[i] {
		fmt.Fprintf(v.errW, "casecap live: %s: the stream dropped %d packets so far (casecap reads too slowly; the capture itself lost none of them)\n", v.caps[i].Name, n)
		v.dropped[i] = n
	}
}

func (v *liveView) Ended(i int, st agentproto.CaptureStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ended[i] = &st
}

// close shows what is left and says, per capture, what was captured,
// shown, and lost where.
func (v *liveView) close() {
	if v.feed == nil {
		return
	}
	v.feed.Close()
	close(v.stop)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.bw.Flush()
	for i, c := range v.caps {
		st := v.ended[i]
		if st == nil {
			fmt.Fprintf(v.errW, "%s: shown %d packets; no final word from its agent\n", c.Name, v.shown[i])
			continue
		}
		fmt.Fprintf(v.errW, "%s: captured %d packets, shown %d; dropped by the stream %d, by the kernel %d; stopped: %s\n",
			c.Name, st.Packets, v.shown[i], v.dropped[i], st.Drops, st.StopReason)
		if late := v.feed.Late(i); late > 0 {
			fmt.Fprintf(v.errW, "%s: %d packets came after the %v reordering delay and were shown out of order\n", c.Name, late, live.DefaultDelay)
		}
	}
}
