package plans

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestBadPlans checks every plan in testdata/bad against its golden error
// output: all problems of a plan at once, each with file:line:col and path.
func TestBadPlans(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("only %d bad plans in testdata/bad, want at least 40", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := Load(file)
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Load(%s) = %v, want a plan error", file, err)
			}
			got := perr.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./plans -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("errors differ from %s (-want +got):\n%s", golden, diff)
			}
			for _, d := range perr.Diags {
				if d.Line == 0 && !strings.Contains(d.Message, "YAML syntax") {
					t.Errorf("diagnostic without a line: %s", d)
				}
			}
		})
	}
}

// TestKBFileNames reproduces the file names of the seed KB article.
func TestKBFileNames(t *testing.T) {
	p := mustParse(t, `
case: "12345678"
datastore: /vmfs/volumes/shared-ds1
hosts:
  - name: esxi01
    address: esxi01.example.com
    captures:
      - switchport: 67108879
        points: [VnicTx, VnicRx]
      - uplink: vmnic2
        points: [UplinkSndKernel, UplinkRcvKernel]
      - vm: app01
        vnic: eth0
        points: [VnicTx, VnicRx]
      - vmk: vmk1
        points: [PortInput]
  - name: kvm01
    kind: linux
    address: 192.0.2.21
    captures:
      - interface: eth0
`)
	want := []string{
		"esxi01.switchport.67108879.VnicTxRx.pcapng",
		"esxi01.uplink.vmnic2.UplinkSndRcvKernel.pcapng",
		"esxi01.app01.eth0.VnicTxRx.pcapng",
		"esxi01.vmk.vmk1.PortInput.pcapng",
		"kvm01.eth0.RxTx.pcapng",
	}
	var got []string
	for _, c := range p.Captures() {
		got = append(got, c.File)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("file names (-want +got):\n%s", diff)
	}
	if p.CaseDir() != "Case_12345678" {
		t.Errorf("case dir %q, want Case_12345678", p.CaseDir())
	}
}

func TestCompactPoints(t *testing.T) {
	cases := []struct {
		points []string
		want   string
	}{
		{[]string{"VnicTx", "VnicRx"}, "VnicTxRx"},
		{[]string{"UplinkSndKernel", "UplinkRcvKernel"}, "UplinkSndRcvKernel"},
		{[]string{"Rx", "Tx"}, "RxTx"},
		{[]string{"PortInput", "PortOutput"}, "PortInputOutput"},
		{[]string{"PreDVFilter", "PostDVFilter"}, "PrePostDVFilter"},
		{[]string{"Vmxnet3Tx", "Vmxnet3Rx"}, "Vmxnet3TxRx"},
		{[]string{"VnicTx", "PortInput"}, "VnicTxPortInput"},
		{[]string{"UplinkRcv", "UplinkRcvKernel"}, "UplinkRcvUplinkRcvKernel"},
		{[]string{"Drop"}, "Drop"},
		{nil, ""},
	}
	for _, c := range cases {
		if got := CompactPoints(c.points); got != c.want {
			t.Errorf("CompactPoints(%v) = %q, want %q", c.points, got, c.want)
		}
	}
}

func mustParse(t testing.TB, src string) *Plan {
	t.Helper()
	p, err := Parse("plan.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func u16(v uint16) *uint16 { return &v }
func u8(v uint8) *uint8    { return &v }
func u32(v uint32) *uint32 { return &v }

// TestDefaultsFlow checks plan -> host -> capture inheritance and overrides.
func TestDefaultsFlow(t *testing.T) {
	p := mustParse(t, `
case: "42"
datastore: /vmfs/volumes/ds1
duration: 5m
snaplen: 256
max_bytes: 512MiB
filter: { ip: 192.0.2.10, proto: icmp }
ssh: { user: admin, identity_file: ~/.ssh/id_ecdsa }
hosts:
  - name: esxi01
    address: 192.0.2.1
    duration: 2m
    ssh: { port: 2222 }
    captures:
      - vmk: vmk1
      - vmk: vmk2
        snaplen: 0
        filter: { tcpport: 443 }
        max_packets: 1000
  - name: esxi02
    address: 192.0.2.2
    datastore: /vmfs/volumes/local-ds2
    filter: null
    captures:
      - vmk: vmk1
`)
	cs := p.Captures()
	type row struct {
		dur        time.Duration
		snap       int
		filter     string
		maxPackets uint64
		maxBytes   uint64
	}
	want := []row{
		{2 * time.Minute, 256, "ip=192.0.2.10 proto=icmp", 0, 512 << 20},
		{2 * time.Minute, 0, "tcpport=443", 1000, 512 << 20},
		{5 * time.Minute, 256, "", 0, 512 << 20},
	}
	for i, c := range cs {
		got := row{c.Duration, c.Snaplen, c.Filter.String(), c.MaxPackets, c.MaxBytes}
		if got != want[i] {
			t.Errorf("capture %d: got %+v, want %+v", i, got, want[i])
		}
	}
	h1, h2 := p.Hosts[0], p.Hosts[1]
	if h1.SSH.User != "admin" || h1.SSH.Port != 2222 || h1.SSH.IdentityFile != "~/.ssh/id_ecdsa" { // esxi02 keeps port unset: ~/.ssh/config or 22
		t.Errorf("esxi01 ssh %+v: want user admin, port 2222 and the plan's identity file", h1.SSH)
	}
	if h2.SSH.Port != 0 || h2.Datastore != "/vmfs/volumes/local-ds2" || h1.Datastore != "/vmfs/volumes/ds1" {
		t.Errorf("esxi02: port %d datastore %q; esxi01 datastore %q", h2.SSH.Port, h2.Datastore, h1.Datastore)
	}
	if h1.Kind != KindAuto {
		t.Errorf("kind %q, want auto when omitted", h1.Kind)
	}
}

func TestFilterValues(t *testing.T) {
	p := mustParse(t, `
case: "42"
datastore: /vmfs/volumes/ds1
hosts:
  - name: esxi01
    address: 192.0.2.1
    captures:
      - vmk: vmk1
        filter:
          srcip: 192.0.2.77/24
          dstip: 198.51.100.9
          mac: 00-50-56-AA-BB-CC
          ethtype: 0x0800
          vlan: 0
          proto: 0x11
          udpport: 4789
          vxlan: 5001
          expr: "  not arp  "
`)
	f := p.Captures()[0].Filter
	want := Filter{
		SrcIP:   netip.MustParsePrefix("192.0.2.0/24"),
		DstIP:   netip.MustParsePrefix("198.51.100.9/32"),
		MAC:     MAC{0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc},
		EthType: u16(0x0800),
		VLAN:    u16(0),
		Proto:   u8(17),
		UDPPort: u16(4789),
		VXLAN:   u32(5001),
		Expr:    "not arp",
	}
	if diff := cmp.Diff(want, f, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	if got, want := f.String(), `srcip=192.0.2.0/24 dstip=198.51.100.9 mac=00:50:56:aa:bb:cc ethtype=0x0800 vlan=0 proto=udp udpport=4789 vxlan=5001 expr="not arp"`; got != want {
		t.Errorf("String() = %s\nwant       %s", got, want)
	}
}

func TestCaptureShapes(t *testing.T) {
	p := mustParse(t, `
case: INC-2026.11_a
datastore: /vmfs/volumes/vsanDatastore/
hosts:
  - name: esxi01
    kind: esxi
    address: esxi01.example.com
    captures:
      - switchport: "67108879"
      - vm: "NSX Manager"
        uplink: auto
      - vm: db/01
        vnic: eth1
        uplink: auto
        uplink_points: [UplinkRcv]
      - uplink: vmnic0
        dir: 2
        stage: post
      - vmk: vmk0
        dir: output
      - points: [Drop]
      - dvfilter: nic-1-eth0-vmware-sfw.2
        points: [PreDVFilter, PostDVFilter]
      - switchport: 67108880
        points: VnicTx, VnicRx
        label: retry
  - name: here
    kind: local
    captures:
      - interface: lo
        direction: tx
      - interface: eth0
        points: [Rx]
`)
	var got []string
	for _, c := range p.Captures() {
		got = append(got, fmt.Sprintf("%s | %v | %s%s%s", c.Target, c.Points, c.Dir, c.Stage, map[bool]string{true: " +uplink"}[c.Target.AutoUplink]))
	}
	want := []string{
		"switchport 67108879 | [PortInput PortOutput] | ",
		"vm NSX Manager vnic eth0 | [VnicTx VnicRx] |  +uplink",
		"vm db/01 vnic eth1 | [VnicTx VnicRx] |  +uplink",
		"uplink vmnic0 | [] | inputAndOutputpost",
		"vmk vmk0 | [] | output",
		"(standalone) | [Drop] | ",
		"dvfilter nic-1-eth0-vmware-sfw.2 | [PreDVFilter PostDVFilter] | ",
		"switchport 67108880 | [VnicTx VnicRx] | ",
		"interface lo | [Tx] | ",
		"interface eth0 | [Rx] | ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("captures (-want +got):\n%s", diff)
	}
	files := []string{
		"esxi01.switchport.67108879.PortInputOutput.pcapng",
		"esxi01.NSX_Manager.eth0.VnicTxRx.pcapng",
		"esxi01.db_01.eth1.VnicTxRx.pcapng",
		"esxi01.uplink.vmnic0.InputOutputPost.pcapng",
		"esxi01.vmk.vmk0.Output.pcapng",
		"esxi01.Drop.pcapng",
		"esxi01.dvfilter.nic-1-eth0-vmware-sfw_2.PrePostDVFilter.pcapng",
		"esxi01.switchport.67108880.VnicTxRx.retry.pcapng",
		"here.lo.Tx.pcapng",
		"here.eth0.Rx.pcapng",
	}
	for i, c := range p.Captures() {
		if c.File != files[i] {
			t.Errorf("capture %d file %q, want %q", i, c.File, files[i])
		}
	}
	if got := p.Captures()[2].Target.UplinkPoints; len(got) != 1 || got[0] != "UplinkRcv" {
		t.Errorf("uplink_points %v, want [UplinkRcv]", got)
	}
	if p.Hosts[0].Datastore != "/vmfs/volumes/vsanDatastore" {
		t.Errorf("datastore %q, want the trailing slash cleaned", p.Hosts[0].Datastore)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0].Message, "vSAN") {
		t.Errorf("warnings %v, want one vSAN warning", p.Warnings)
	}
	if p.Hosts[1].SSH != (SSH{}) || p.Hosts[1].Address != "" {
		t.Errorf("local host has ssh %+v address %q, want none", p.Hosts[1].SSH, p.Hosts[1].Address)
	}
}

// TestFileNamesStayInside: whatever a plan names, a file name is one path
// element that cannot leave the case folder.
func TestFileNamesStayInside(t *testing.T) {
	for _, vm := range []string{"../../etc/passwd", "a/b", `..\..\x`, "  ", "vm\x00", ".hidden", "web.prod"} {
		c := &Capture{Host: "esxi01", Target: Target{Kind: TargetVM, VM: vm, VNIC: "eth0"}, Points: []string{"VnicTx"}}
		name := FileName(c)
		if strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") || strings.Count(name, ".") != 4 {
			t.Errorf("VM %q gives file name %q", vm, name)
		}
	}
}

// TestAliasBomb: aliases multiply (1,000 hosts x 1,000 captures from a
// file of 2,000 aliases); validation must stop early, not run away.
func TestAliasBomb(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("case: x\ndatastore: /vmfs/volumes/a\nx-c: &c {vmk: vmk1}\nx-h: &h {name: h, address: h, captures: [")
	sb.WriteString(strings.TrimSuffix(strings.Repeat("*c, ", 1000), ", "))
	sb.WriteString("]}\nhosts: [")
	sb.WriteString(strings.TrimSuffix(strings.Repeat("*h, ", 1000), ", "))
	sb.WriteString("]\n")
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(sb.String()))
	if err == nil || !strings.Contains(err.Error(), "nested YAML aliases") {
		t.Fatalf("got %.300v, want the expansion limit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte("case: 1\ndatastore: /vmfs/volumes/x\nhosts: [{name: a, address: b, captures: [{vm: x, uplink: auto}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || len(perr.Diags) == 0 {
				t.Fatalf("error is not a plan error with diagnostics: %v", err)
			}
			return
		}
		for _, c := range p.Captures() {
			if c.File == "" || strings.ContainsAny(c.File, "/\\") {
				t.Fatalf("bad file name %q", c.File)
			}
		}
	})
}

// BenchmarkParse200Hosts: a 200-host plan with 4 captures per host (target:
// under 50 ms).
func BenchmarkParse200Hosts(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("case: \"12345678\"\ndatastore: /vmfs/volumes/shared-ds1\nsnaplen: 256\nfilter: { ip: 192.0.2.10, proto: icmp }\nhosts:\n")
	for i := range 200 {
		fmt.Fprintf(&sb, "  - name: esxi%03d\n    address: 198.18.%d.%d\n    captures:\n", i, i/200, i%200+1)
		sb.WriteString("      - switchport: 67108879\n        points: [VnicTx, VnicRx]\n")
		sb.WriteString("      - uplink: vmnic2\n        points: [UplinkSndKernel, UplinkRcvKernel]\n")
		sb.WriteString("      - vm: app01\n        vnic: eth0\n")
		sb.WriteString("      - vmk: vmk1\n        filter: { tcpport: 8000 }\n")
	}
	src := []byte(sb.String())
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		p, err := Parse("big.yaml", src)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(p.Captures()); n != 800 {
			b.Fatalf("%d captures, want 800", n)
		}
	}
}

// TestSyntaxErrorsArePlaced: every YAML syntax error among the bad plans
// carries a line, a column and a YAML path.
func TestSyntaxErrorsArePlaced(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bad", "*syntax*.yaml"))
	if len(files) < 5 {
		t.Fatalf("%d syntax error plans, want at least 5", len(files))
	}
	for _, f := range files {
		_, err := Load(f)
		var pe *Error
		if !errors.As(err, &pe) || len(pe.Diags) != 1 {
			t.Errorf("%s: %v, want one syntax error", f, err)
			continue
		}
		if d := pe.Diags[0]; d.Line == 0 || d.Col == 0 || d.Path == "" || !strings.Contains(d.Message, "YAML syntax") {
			t.Errorf("%s: %+v, want line, column and path", f, d)
		}
	}
}

// TestPathAt: the path of a line, from indentation alone.
func TestPathAt(t *testing.T) {
	doc := strings.Split(`case: "1"
hosts:
  - name: a
    captures:
      - interface: eth0
      - interface: eth1
        filter:
          udpport: 9
  - name: b
# a comment
    address: x
- stray`, "\n")
	for line, want := range map[int]string{1: "case", 2: "hosts", 3: "hosts[0].name", 5: "hosts[0].captures[0].interface", 6: "hosts[0].captures[1].interface", 8: "hosts[0].captures[1].filter.udpport", 9: "hosts[1].name", 11: "hosts[1].address", 99: ""} {
		if got := pathAt(doc, line); got != want {
			t.Errorf("line %d: %q, want %q", line, got, want)
		}
	}
}

// TestREADMEKeys: the README's table of plan keys and the decoder agree
// both ways: every key a level takes is in its row (or the limits row,
// which every level of plan, host and capture takes), and every key a row
// names is one that level takes.
func TestREADMEKeys(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i := strings.Index(text, "| level | keys |")
	if i < 0 {
		t.Fatal("the README has no table of plan keys")
	}
	rows := map[string][]string{}
	word := regexp.MustCompile("`([a-z_]+)")
	for _, line := range strings.Split(text[i:], "\n")[2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(line, "|")
		level := strings.Trim(strings.TrimSpace(cells[1]), "`")
		level, _, _ = strings.Cut(level, " ")
		for _, m := range word.FindAllStringSubmatch(cells[2], -1) {
			rows[level] = append(rows[level], m[1])
		}
	}
	documented := func(level string) []string {
		ks := slices.Clone(rows[level])
		if level == "plan" || level == "host" || level == "capture" {
			ks = append(ks, rows["limits"]...)
		}
		return ks
	}
	for level, keys := range Keys() {
		doc := documented(level)
		if len(doc) == 0 {
			t.Errorf("the README's key table has no row for %s", level)
			continue
		}
		for _, k := range keys {
			if !slices.Contains(doc, k) {
				t.Errorf("%s key %q is not in the README's key table", level, k)
			}
		}
		for _, k := range doc {
			if !slices.Contains(keys, k) {
				t.Errorf("the README's key table gives %s key %q, which the plan does not take", level, k)
			}
		}
	}
}

// TestUntilPlan: ring, until and post as issue 15's contract writes them:
// a ring at the plan's level reaches every capture (and a host's or a
// capture's own replaces it), rules keep their kind, hosts and defaults,
// post defaults to 10s; a plan without them is not triggered.
func TestUntilPlan(t *testing.T) {
	p := mustParse(t, `case: UNTIL
datastore: /vmfs/volumes/ds1
duration: 1h
ring: { keep: 60s, segment: 10s }
until:
  - packet: { filter: { tcpport: 443, expr: "tcp[tcpflags] & tcp-rst != 0" } }
    hosts: [esxi01]
  - drops: { min: 1 }
  - command: "grep -q 'Link down' /var/log/vmkernel.log"
    every: 2s
  - log: { file: /var/log/vmkernel.log, match: "vmnic[0-9]+: .*link down" }
  - command: "true"
hosts:
  - name: esxi01
    address: 192.0.2.10
    captures:
      - uplink: vmnic2
      - uplink: vmnic3
        ring: { keep_bytes: 2GiB, segment_bytes: 256MiB }
`)
	if !p.Triggered() || p.Post != DefaultPost || len(p.Until) != 5 {
		t.Fatalf("triggered %v, post %v, %d rules", p.Triggered(), p.Post, len(p.Until))
	}
	r := p.Until
	if r[0].Packet == nil || r[0].Packet.Expr == "" || !slices.Equal(r[0].Hosts, []string{"esxi01"}) || r[1].DropsMin != 1 ||
		r[2].Command == "" || r[2].Every != 2*time.Second || r[3].LogFile != "/var/log/vmkernel.log" || r[4].Every != DefaultEvery || r[1].Line != 8 {
		t.Errorf("rules: %+v", r)
	}
	caps := p.Captures()
	if *caps[0].Ring != (Ring{Keep: time.Minute, Segment: 10 * time.Second}) || *caps[1].Ring != (Ring{KeepBytes: 2 << 30, SegmentBytes: 256 << 20}) {
		t.Errorf("rings: %+v %+v", caps[0].Ring, caps[1].Ring)
	}
	if plain := mustParse(t, "case: P\ndatastore: /ds\nhosts:\n  - { name: h, address: 192.0.2.1, captures: [ { interface: eth0 } ] }\n"); plain.Triggered() {
		t.Error("a plan without ring or until is triggered")
	}
}
