package lab

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/casecap/casecap/internal/esxi"
	"github.com/casecap/casecap/internal/lab/esxisim"
)

// An ESXi-flavoured lab host looks like a small ESXi host from the outside:
// its eth0 (vmnic0) is enslaved to a bridge, vSwitch0, which carries the
// host's address (vmk0); vmnic1 is an idle uplink (a veth going nowhere); each VM is a
// network namespace of its own, joined to vSwitch0 by a veth whose host side
// is the VM's switchport. The tools of package esxisim, on /usr/local/bin,
// answer for pktcap-uw, net-stats, esxcli, vsish, vmware and uname. Traffic
// to a VM really crosses vmnic0 and the VM's switchport.

// ESXiDatastore is the shared datastore as lab ESXi hosts see it.
const ESXiDatastore = "/vmfs/volumes/casecap-lab"

// ESXiVersion is what lab ESXi hosts say they run.
const ESXiVersion = "VMware ESXi 8.0.2 build-22380479"

// vmEnv turns this binary into a VM's placeholder process; its value is
// the VM's address (CIDR).
const vmEnv = "CASECAP_LAB_VM"

// VM is a virtual machine on a lab ESXi host.
type VM struct {
	Name       string     `json:"name"`
	VNIC       string     `json:"vnic"`
	Switchport uint32     `json:"switchport"`
	Addr       netip.Addr `json:"addr"`
	MAC        string     `json:"mac"`
}

// esxiHost is what a host's init needs to build its ESXi side.
type esxiHost struct {
	MAC string   `json:"mac"` // the host's, on vSwitch0 (vmk0) as on eth0
	VMs []vmPort `json:"vms"`
}

type vmPort struct {
	Addr   string `json:"addr"` // CIDR
	MAC    string `json:"mac"`
	Ifname string `json:"ifname"` // the switchport's interface, host side
}

// First switchport numbers, as a standard vSwitch numbers them.
const (
	portVmnic0 = 33554434 + iota
	portVmnic1
	portVmk0
	portVMs
)

// vmNames are the VMs of lab ESXi host i: one plain name, one with a space.
func vmNames(i int) []string { return []string{fmt.Sprintf("app%02d", i), fmt.Sprintf("web %02d", i)} }

// busyboxApplets are the commands an ESXi host's BusyBox answers for, of
// those casecap's shell commands use (uname, vmware and the capture tools
// are the simulator's).
var busyboxApplets = []string{"sh", "ash", "[", "test", "cat", "chmod", "cut", "date", "df", "echo", "grep", "head", "hostname",
	"id", "kill", "ls", "mkdir", "mv", "printf", "rm", "sed", "awk", "sha256sum", "sleep", "tail", "touch", "tr", "wc"}

// esxiSetup fills in an ESXi host: its VMs, its inventory and tools in
// bin/ (mounted on /usr/local/bin), and what its init must build.
func (l *Lab) esxiSetup(h *Host, i int, exe string, cfg *hostConfig, noexec bool) error {
	bin := filepath.Join(h.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	for _, tool := range esxisim.Tools {
		if err := os.Symlink(exe, filepath.Join(bin, tool)); err != nil {
			return err
		}
	}
	// ESXi's shell and userland are BusyBox: where this machine has it, the
	// lab's ESXi hosts get it ahead of the system's on their PATH (ash as
	// sh, its date, sleep, sed, df...), so that casecap's shell commands
	// meet there what they meet on ESXi.
	if bb, err := exec.LookPath("busybox"); err == nil {
		for _, applet := range busyboxApplets {
			if err := os.Symlink(bb, filepath.Join(bin, applet)); err != nil {
				return err
			}
		}
	}
	machine := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	inv := &esxisim.Inventory{Version: ESXiVersion, Hostname: h.Name, Machine: machine}
	add := func(p esxi.Port, ifname string) *esxisim.Port {
		inv.Ports = append(inv.Ports, esxisim.Port{Port: p, Ifname: ifname})
		return &inv.Ports[len(inv.Ports)-1]
	}
	add(esxi.Port{Num: portVmnic0, Type: esxi.TypeUplink, Switch: "vSwitch0", MAC: h.MAC, Client: "vmnic0"}, "eth0")
	add(esxi.Port{Num: portVmnic1, Type: esxi.TypeUplink, Switch: "vSwitch0", MAC: fmt.Sprintf("02:cc:%02x:01:00:%02x", l.ID, i), Client: "vmnic1"}, "vmnic1")
	add(esxi.Port{Num: portVmk0, Type: esxi.TypeVmk, Switch: "vSwitch0", MAC: h.MAC, Client: "vmk0"}, "vSwitch0").TeamUplink = "vmnic0"
	cfg.ESXi = &esxiHost{MAC: h.MAC}
	for j, name := range vmNames(i) {
		vm := VM{
			Name: name, VNIC: "eth0", Switchport: uint32(portVMs + j),
			Addr: netip.AddrFrom4([4]byte{198, 19, byte(l.ID), byte(4*i + j)}),
			MAC:  fmt.Sprintf("00:50:56:%02x:%02x:%02x", l.ID, i, j),
		}
		h.VMs = append(h.VMs, vm)
		p := add(esxi.Port{Num: vm.Switchport, Type: esxi.TypeVNIC, SubType: 9, Switch: "vSwitch0", MAC: vm.MAC, Client: vm.Name + "." + vm.VNIC}, fmt.Sprintf("sp%d", vm.Switchport))
		p.World, p.TeamUplink, p.Portgroup, p.IP = 2100000+10*i+j, "vmnic0", "VM Network", vm.Addr.String()
		cfg.ESXi.VMs = append(cfg.ESXi.VMs, vmPort{Addr: netip.PrefixFrom(vm.Addr, 24).String(), MAC: vm.MAC, Ifname: p.Ifname})
	}
	if err := esxisim.WriteInventory(filepath.Join(bin, ".esxi.json"), inv); err != nil {
		return err
	}
	cfg.Binds = append(cfg.Binds,
		bindMount{Source: bin, Target: "/usr/local/bin"},
		bindMount{Source: l.Datastore, Target: ESXiDatastore, NoExec: noexec})
	return nil
}

// setupESXiNetwork builds vSwitch0, vmnic1 and the VMs; the host's address
// goes on vSwitch0 (vmk0). It runs in the init, before the reaper.
func setupESXiNetwork(addr string, e *esxiHost) error {
	type vmProc struct {
		cmd *exec.Cmd
		in  *os.File
		out *bufio.Reader
	}
	// This very binary, whatever mount namespace hides its path.
	const exe = "/proc/self/exe"
	var vms []vmProc
	for _, vm := range e.VMs {
		inR, inW, err := os.Pipe()
		if err != nil {
			return err
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", vmEnv + "=" + vm.Addr}
		cmd.Stdin, cmd.Stdout = inR, outW
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start VM %s: %w", vm.Addr, err)
		}
		inR.Close()
		outW.Close()
		p := vmProc{cmd: cmd, in: inW, out: bufio.NewReader(outR)}
		if line, _ := p.out.ReadString('\n'); strings.TrimSpace(line) != "started" {
			return fmt.Errorf("VM %s did not start: %q", vm.Addr, line)
		}
		vms = append(vms, p)
	}
	cmds := []string{
		"link set lo up",
		"link add vSwitch0 type bridge",
		"link set vSwitch0 address " + e.MAC,
		"link set eth0 master vSwitch0",
		"link add vmnic1 type veth peer name vmnic1p", // no dummy driver everywhere: an idle veth
	}
	for i, vm := range e.VMs {
		cmds = append(cmds,
			fmt.Sprintf("link add %s type veth peer name eth0 address %s netns %d", vm.Ifname, vm.MAC, vms[i].cmd.Process.Pid),
			"link set "+vm.Ifname+" master vSwitch0",
			"link set "+vm.Ifname+" up")
	}
	cmds = append(cmds, "addr add "+addr+" brd + dev vSwitch0", "link set eth0 up", "link set vmnic1 up", "link set vmnic1p up", "link set vSwitch0 up")
	cmd := exec.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build vSwitch0: %v: %s", err, out)
	}
	for i, p := range vms {
		if _, err := p.in.WriteString("net\n"); err != nil {
			return err
		}
		if line, _ := p.out.ReadString('\n'); strings.TrimSpace(line) != "ready" {
			return fmt.Errorf("VM %s: %q", e.VMs[i].Addr, line)
		}
		p.in.Close()
		// The VM lives until the host's PID namespace goes; the reaper
		// collects it should it die before.
		_ = p.cmd.Process.Release()
	}
	return nil
}

// runVM is a VM's placeholder: it owns the VM's network namespace, gives
// its eth0 the VM's address once the host has plugged it in, and waits.
func runVM(addr string) int {
	for _, f := range []string{"all", "default"} {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/disable_ipv6", []byte("1"), 0)
	}
	fmt.Println("started")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "net" {
		return 1
	}
	cmd := exec.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader("link set lo up\naddr add " + addr + " dev eth0\nlink set eth0 up\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Printf("error %v: %s\n", err, strings.ReplaceAll(string(out), "\n", " "))
		return 1
	}
	fmt.Println("ready")
	os.Stdout.Close()
	for {
		_ = unix.Pause()
	}
}

// ESXiCalls returns every call of the simulated ESXi tools on this host so
// far (argv, the tool's name first).
func (h *Host) ESXiCalls() ([][]string, error) {
	raw, err := os.ReadFile(filepath.Join(h.Dir, "bin", filepath.Base(esxisim.CallsPath)))
	if err != nil {
		return nil, err
	}
	var calls [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var argv []string
		if err := json.Unmarshal([]byte(line), &argv); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", esxisim.CallsPath, line, err)
		}
		calls = append(calls, argv)
	}
	return calls, nil
}
