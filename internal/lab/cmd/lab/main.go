// Command lab brings casecap's test lab up and down by hand, injects faults,
// sends the numbered broadcast stream and reads it back from capture files.
//
//	lab up 5            # five hosts; prints how to reach them
//	lab ls
//	lab link h03 down   # pull h03's cable; "up" plugs it back
//	lab sshd h03 kill   # kill h03's sshd and its sessions; "start" restarts it
//	lab exec h03 -- ps  # a command inside h03, as root, without SSH
//	lab send --count 1000 --interval 1ms
//	lab seq FILE...     # first/last/missing sequence numbers in capture files
//	lab down            # or: lab down 3, lab down --all
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/seqcast"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	labFlag := &cli.IntFlag{Name: "lab", Value: -1, Usage: "lab number (default: the only lab running)"}
	app := &cli.App{
		Name:  "lab",
		Usage: "casecap's multi-host test lab",
		Commands: []*cli.Command{
			{
				Name: "up", Usage: "start a lab of N hosts", ArgsUsage: "N",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "esxi", Usage: "make the first `M` hosts ESXi-flavoured (simulated pktcap-uw, net-stats, esxcli, vsish; VMs)"},
					&cli.BoolFlag{Name: "noexec", Usage: "mount the datastore noexec on ESXi hosts, as execInstalledOnly refuses uploaded binaries"},
				},
				Action: func(c *cli.Context) error {
					n, err := strconv.Atoi(c.Args().First())
					if err != nil {
						return cli.Exit("usage: lab up N", 2)
					}
					l, err := lab.Start(c.Context, lab.Options{Hosts: n, Detach: true, ESXi: c.Int("esxi"), ESXiNoExec: c.Bool("noexec")})
					if err != nil {
						return err
					}
					printLab(l)
					return nil
				},
			},
			{
				Name: "down", Usage: "remove a lab (all labs with --all)", ArgsUsage: "[ID]",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "all"}},
				Action: func(c *cli.Context) error {
					labs, err := lab.List("")
					if err != nil {
						return err
					}
					var errs []error
					for _, l := range labs {
						if c.Bool("all") || c.Args().First() == strconv.Itoa(l.ID) || (c.NArg() == 0 && len(labs) == 1) {
							errs = append(errs, l.Close())
							fmt.Printf("lab %d removed\n", l.ID)
						}
					}
					return errors.Join(errs...)
				},
			},
			{
				Name: "ls", Usage: "list labs and their hosts",
				Action: func(*cli.Context) error {
					labs, err := lab.List("")
					for _, l := range labs {
						printLab(l)
					}
					return err
				},
			},
			{
				Name: "link", Usage: "cut (down) or restore (up) a host's link", ArgsUsage: "HOST up|down", Flags: []cli.Flag{labFlag},
				Action: func(c *cli.Context) error {
					h, err := pickHost(c)
					if err != nil {
						return err
					}
					switch c.Args().Get(1) {
					case "up":
						return h.LinkUp()
					case "down":
						return h.LinkDown()
					}
					return cli.Exit("usage: lab link HOST up|down", 2)
				},
			},
			{
				Name: "sshd", Usage: "kill or start a host's sshd", ArgsUsage: "HOST kill|start", Flags: []cli.Flag{labFlag},
				Action: func(c *cli.Context) error {
					h, err := pickHost(c)
					if err != nil {
						return err
					}
					switch c.Args().Get(1) {
					case "kill":
						return h.KillSSHD()
					case "start":
						return h.StartSSHD()
					}
					return cli.Exit("usage: lab sshd HOST kill|start", 2)
				},
			},
			{
				Name: "exec", Usage: "run a command inside a host as root, without SSH", ArgsUsage: "HOST -- COMMAND...", Flags: []cli.Flag{labFlag},
				Action: func(c *cli.Context) error {
					h, err := pickHost(c)
					if err != nil {
						return err
					}
					argv := c.Args().Slice()[1:]
					if len(argv) > 0 && argv[0] == "--" {
						argv = argv[1:]
					}
					if len(argv) == 0 {
						return cli.Exit("usage: lab exec HOST -- COMMAND...", 2)
					}
					cmd := h.Command(c.Context, argv...)
					cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
					return cmd.Run()
				},
			},
			{
				Name: "send", Usage: "send the numbered broadcast stream to every host", Flags: []cli.Flag{
					labFlag,
					&cli.Uint64Flag{Name: "count", Usage: "packets to send (0: until Ctrl-C)"},
					&cli.DurationFlag{Name: "interval", Value: time.Millisecond},
					&cli.UintFlag{Name: "port", Value: 9999},
					&cli.UintFlag{Name: "stream", Value: 1},
				},
				Action: func(c *cli.Context) error {
					l, err := pickLab(c.Int("lab"))
					if err != nil {
						return err
					}
					sent, err := seqcast.Send(c.Context, seqcast.SendOptions{
						From: l.Gateway, To: netip.AddrPortFrom(l.Broadcast(), uint16(c.Uint("port"))),
						Stream: uint32(c.Uint("stream")), Interval: c.Duration("interval"), Count: c.Uint64("count"),
					})
					fmt.Printf("sent %d packets from %s to %s\n", sent.Packets, sent.First.Format(time.RFC3339Nano), sent.Last.Format(time.RFC3339Nano))
					return err
				},
			},
			{
				Name: "seq", Usage: "summarise the numbered stream in pcap/pcapng files", ArgsUsage: "FILE...",
				Flags: []cli.Flag{&cli.UintFlag{Name: "stream", Usage: "only this stream (0: any)"}},
				Action: func(c *cli.Context) error {
					w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(w, "FILE\tPACKETS\tFIRST\tLAST\tMISSING\tDUPS\tFIRST SENT\tLAST SENT")
					var errs []error
					for _, f := range c.Args().Slice() {
						s, err := seqcast.ReadFile(f, uint32(c.Uint("stream")))
						if err != nil {
							errs = append(errs, err)
							continue
						}
						fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", f, s.Packets, s.First, s.Last, s.Missing, s.Duplicates,
							s.FirstSent.Format("15:04:05.000000"), s.LastSent.Format("15:04:05.000000"))
					}
					w.Flush()
					return errors.Join(errs...)
				},
			},
		},
	}
	if err := app.RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func pickLab(id int) (*lab.Lab, error) {
	labs, err := lab.List("")
	if err != nil {
		return nil, err
	}
	for _, l := range labs {
		if l.ID == id || (id < 0 && len(labs) == 1) {
			return l, nil
		}
	}
	if id < 0 && len(labs) > 1 {
		return nil, fmt.Errorf("%d labs are running; say which with --lab", len(labs))
	}
	return nil, errors.New("no such lab is running (lab up N starts one)")
}

func pickHost(c *cli.Context) (*lab.Host, error) {
	l, err := pickLab(c.Int("lab"))
	if err != nil {
		return nil, err
	}
	if h := l.Host(c.Args().First()); h != nil {
		return h, nil
	}
	return nil, fmt.Errorf("lab %d has no host %q", l.ID, c.Args().First())
}

func printLab(l *lab.Lab) {
	fmt.Printf("lab %d: bridge %s, gateway %s, datastore %s\n", l.ID, l.Bridge, l.Gateway, l.Datastore)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  HOST\tADDRESS\tMAC\tINIT PID")
	for _, h := range l.Hosts {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%d\n", h.Name, h.Addr, h.MAC, h.InitPID)
		for _, vm := range h.VMs {
			fmt.Fprintf(w, "    vm %q %s\t%s\t%s\tswitchport %d\n", vm.Name, vm.VNIC, vm.Addr, vm.MAC, vm.Switchport)
		}
	}
	w.Flush()
	fmt.Printf("  ssh -i %s -o UserKnownHostsFile=%s root@%s\n", l.ClientKey, l.KnownHosts, l.Hosts[0].Addr)
}
