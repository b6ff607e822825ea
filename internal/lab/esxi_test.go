package lab_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/internal/lab"
	"github.com/casecap/casecap/internal/lab/labtest"
)

func dialHost(t *testing.T, l *lab.Lab, h *lab.Host) *ssh.Client {
	t.Helper()
	cfg, err := l.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestESXiTools: a lab ESXi host answers net-stats, esxcli, vsish, vmware
// and uname as a real one does, consistently with its VMs, and casecap's
// parsers read every answer.
func TestESXiTools(t *testing.T) {
	l := labtest.StartWith(t, lab.Options{Hosts: 2, ESXi: 1})
	h := l.Hosts[0]
	if !h.ESXi || h.Name != "esxi01" || l.Hosts[1].ESXi || h.Datastore != lab.ESXiDatastore || len(h.VMs) != 2 {
		t.Fatalf("hosts: %+v %+v", h, l.Hosts[1])
	}
	c := dialHost(t, l, h)
	out, err := run(c, "uname -s; uname -m")
	if err != nil || !strings.HasPrefix(out, "VMkernel\n") {
		t.Errorf("uname: %q %v", out, err)
	}
	if out, err := run(dialHost(t, l, l.Hosts[1]), "uname -s; command -v pktcap-uw || echo none"); out != "Linux\nnone" {
		t.Errorf("a Linux lab host has ESXi tools: %q %v", out, err)
	}
	// Its shell is BusyBox's ash, as on ESXi, wherever this machine has
	// BusyBox (test.sh installs it; CI requires it).
	out, _ = run(c, `sh -c 'readlink /proc/$$/exe; true'`)
	if _, err := exec.LookPath("busybox"); err == nil || os.Getenv("CI") == "true" {
		if !strings.HasSuffix(out, "/busybox") {
			t.Errorf("sh on an ESXi host is %q, want BusyBox", out)
		}
	}
	out, _ = run(c, "vmware -v")
	if v, err := esxi.ParseVersion(out); err != nil || !v.RawFilters() {
		t.Errorf("vmware -v: %q %v", out, err)
	}
	out, err = run(c, "net-stats -l")
	ports, perr := esxi.ParseNetStats(out)
	if err != nil || perr != nil {
		t.Fatalf("net-stats -l: %v %v\n%s", err, perr, out)
	}
	inv := &esxi.Inventory{Host: h.Name, Ports: ports}
	for _, vm := range h.VMs {
		p, err := inv.VNIC(vm.Name, vm.VNIC)
		if err != nil || p.Num != vm.Switchport || p.MAC != vm.MAC {
			t.Errorf("VM %q: %+v %v, want switchport %d", vm.Name, p, err, vm.Switchport)
		}
		out, _ := run(c, hosts.Quote(esxi.TeamUplinkArgv(p.Switch, p.Num)))
		if u, err := esxi.ParseTeamUplink(out); err != nil || u != "vmnic0" {
			t.Errorf("teamUplink of %q: %q %v", vm.Name, out, err)
		}
	}
	if _, err := inv.Uplink("vmnic1"); err != nil {
		t.Error(err)
	}
	if _, err := inv.Vmk("vmk0"); err != nil {
		t.Error(err)
	}
	out, _ = run(c, hosts.Quote(esxi.VMListArgv))
	vms, err := esxi.ParseVMList(out)
	if err != nil || len(vms) != 2 || vms[1].Name != "web 01" {
		t.Fatalf("esxcli network vm list: %+v %v\n%s", vms, err, out)
	}
	out, _ = run(c, hosts.Quote(esxi.VMPortsArgv(vms[1].World)))
	if vp, err := esxi.ParseVMPorts(out); err != nil || len(vp) != 1 || vp[0].Port != h.VMs[1].Switchport || vp[0].TeamUplink != "vmnic0" {
		t.Errorf("esxcli network vm port list: %+v %v\n%s", vp, err, out)
	}
	for _, bad := range []string{"esxcli network vm lst", "vsish -e get /net/portsets/vSwitch0/ports/1/teamUplink", "net-stats -x"} {
		if out, err := run(c, bad); err == nil {
			t.Errorf("%s succeeded: %q", bad, out)
		}
	}
}

// TestPktcapSimulator: the simulated pktcap-uw refuses what a real one
// refuses, writes pcap unless --ng, captures only the receive side unless
// told otherwise, sees the packets that cross each port, and closes its file
// cleanly on SIGINT.
func TestPktcapSimulator(t *testing.T) {
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1})
	h := l.Hosts[0]
	c := dialHost(t, l, h)
	app := h.VMs[0]
	sp := strconv.Itoa(int(app.Switchport))
	ds := h.Datastore

	refused := [][]string{
		{"--bogus", "x"},
		{"--switchport", sp, "--capture", "VnicTxx"},
		{"--uplink", "vmnic0", "--capture", "VnicTx"},
		{"--switchport", sp, "--ip", "300.1.1.1"},
		{"--switchport", sp, "--proto", "1"},
		{"--switchport", sp, "-s", "10"},
		{"--switchport", "1"},
		{"--uplink", "vmnic9"},
		{"--uplink", "vmnic0", "--rcf", "udp port"},
		{"--uplink", "vmnic0", "-G", "60"},
		{"--uplink", "vmnic0", "--capture", "UplinkRcv", "--dir", "0"},
		{"--switchport", sp, "--ng"},
	}
	for i, args := range refused {
		file := fmt.Sprintf("%s/refused%d.pcap", ds, i)
		argv := append([]string{"pktcap-uw"}, args...)
		if !strings.Contains(strings.Join(args, " "), "--ng") || len(args) != 3 {
			argv = append(argv, "-o", file)
		}
		out, err := run(c, hosts.Quote(argv))
		if err == nil || !strings.Contains(out, "pktcap-uw:") {
			t.Errorf("%s: accepted (%q %v)", strings.Join(argv, " "), out, err)
		}
		if _, err := os.Stat(filepath.Join(l.Datastore, filepath.Base(file))); err == nil {
			t.Errorf("%s: refused, yet created its file", strings.Join(argv, " "))
		}
	}

	// The gateway learns app01's MAC first: packets waiting for ARP can be
	// dropped, and would not be the simulator's doing.
	send := func(port int, n int) {
		// Unconnected: app01's ICMP port-unreachable answers must not fail
		// the next send.
		conn, err := net.ListenPacket("udp4", l.VMNet.Addr().Next().String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		to := &net.UDPAddr{IP: app.Addr.AsSlice(), Port: port}
		for i := range n {
			if _, err := conn.WriteTo(fmt.Appendf(nil, "packet %d", i), to); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	send(7776, 1)
	time.Sleep(200 * time.Millisecond)

	// Three sessions on app01's port and two on the uplinks at once.
	sessions := []struct {
		name string
		args []string
	}{
		{"default.pcap", []string{"--switchport", sp}},
		{"vnicrx.pcap", []string{"--switchport", sp, "--capture", "VnicRx"}},
		{"both.pcapng", []string{"--switchport", sp, "--capture", "VnicTx,VnicRx", "--ng"}},
		{"uplink.pcapng", []string{"--uplink", "vmnic0", "--capture", "UplinkRcvKernel", "--ip", app.Addr.String(), "-P"}},
		{"idle.pcapng", []string{"--uplink", "vmnic1", "--ng"}},
	}
	var pids []string
	for _, s := range sessions {
		argv := append(append([]string{"pktcap-uw"}, s.args...), "-o", ds+"/"+s.name)
		out, err := run(c, hosts.Quote(argv)+" >"+ds+"/"+s.name+".log 2>&1 & echo $!")
		if err != nil {
			t.Fatal(out, err)
		}
		pids = append(pids, out)
	}
	time.Sleep(500 * time.Millisecond) // no ready signal from a real pktcap-uw either
	send(7777, 5)
	time.Sleep(300 * time.Millisecond)
	if out, err := run(c, "kill -INT "+strings.Join(pids, " ")+"; while kill -0 "+strings.Join(pids, " ")+" 2>/dev/null; do sleep 0.05; done"); err != nil {
		t.Fatal(out, err)
	}
	want := []struct {
		ng        bool
		udp, icmp int
	}{
		{false, 0, 5}, // receive side of the port: what app01 sends into the switch
		{false, 5, 0}, // VnicRx: towards app01
		{true, 5, 5},
		{true, 5, 0},
		{true, 0, 0},
	}
	for i, s := range sessions {
		path := filepath.Join(l.Datastore, s.name)
		ng, udp, icmp, all := readCapture(t, path)
		if ng != want[i].ng || udp != want[i].udp || icmp != want[i].icmp {
			t.Errorf("%s: pcapng %v, %d UDP to app01, %d ICMP from it; want pcapng %v, %d, %d", s.name, ng, udp, icmp, want[i].ng, want[i].udp, want[i].icmp)
		}
		log, _ := os.ReadFile(path + ".log")
		if !bytes.Contains(log, fmt.Appendf(nil, "Dumped %d packet to file %s/%s, dropped 0 packets.", all, ds, s.name)) {
			t.Errorf("%s: no summary for its %d packets in %q", s.name, all, log)
		}
	}
}

// readCapture reads a pcap or pcapng file and counts the test's packets.
func readCapture(t *testing.T, path string) (ng bool, udp, icmp, all int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var magic [4]byte
	f.Read(magic[:])
	f.Seek(0, 0)
	var src gopacket.PacketDataSource
	if ng = magic == [4]byte{0x0a, 0x0d, 0x0d, 0x0a}; ng {
		r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		src = r
	} else {
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		src = r
	}
	for {
		data, _, err := src.ReadPacketData()
		if err != nil {
			break
		}
		all++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.DstPort == 7777 && p.Layer(layers.LayerTypeICMPv4) == nil {
			udp++
		}
		if p.Layer(layers.LayerTypeICMPv4) != nil {
			icmp++
		}
	}
	return ng, udp, icmp, all
}

// TestESXiNoExec: with ESXiNoExec, a binary uploaded to the datastore cannot
// run there, as under execInstalledOnly; the shell's own tools still can.
func TestESXiNoExec(t *testing.T) {
	l := labtest.StartWith(t, lab.Options{Hosts: 1, ESXi: 1, ESXiNoExec: true})
	raw, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Datastore, "uploaded"), raw, 0o755); err != nil {
		t.Fatal(err)
	}
	c := dialHost(t, l, l.Hosts[0])
	out, err := run(c, lab.ESXiDatastore+"/uploaded")
	var ee *ssh.ExitError
	if err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("an uploaded binary ran on a noexec datastore: %q %v", out, err)
	} else if errors.As(err, &ee) && ee.ExitStatus() != 126 {
		t.Errorf("exit %d, want 126 (cannot execute)", ee.ExitStatus())
	}
	if out, err := run(c, "echo 'echo scripts run' > "+lab.ESXiDatastore+"/s.sh; sh "+lab.ESXiDatastore+"/s.sh"); err != nil || out != "scripts run" {
		t.Errorf("a script read by sh: %q %v", out, err)
	}
}
