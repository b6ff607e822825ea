package bpfgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// ParseDDD reads `tcpdump -ddd` output: a count, then "code jt jf k" lines.
func ParseDDD(out []byte) ([]bpf.RawInstruction, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() {
		return nil, fmt.Errorf("tcpdump -ddd printed nothing")
	}
	n, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || n <= 0 || n > maxInstructions {
		return nil, fmt.Errorf("tcpdump -ddd: bad instruction count %q", sc.Text())
	}
	prog := make([]bpf.RawInstruction, 0, n)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 4 {
			return nil, fmt.Errorf("tcpdump -ddd: bad line %q", sc.Text())
		}
		var v [4]uint64
		for i, s := range f {
			if v[i], err = strconv.ParseUint(s, 10, 32); err != nil {
				return nil, fmt.Errorf("tcpdump -ddd: bad line %q", sc.Text())
			}
		}
		if v[1] > 255 || v[2] > 255 || v[0] > 0xffff {
			return nil, fmt.Errorf("tcpdump -ddd: bad line %q", sc.Text())
		}
		prog = append(prog, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
	}
	if len(prog) != n {
		return nil, fmt.Errorf("tcpdump -ddd: %d instructions, announced %d", len(prog), n)
	}
	return prog, nil
}

// Compile has the host's tcpdump compile a pcap-filter expression for a
// live capture on iface (so that, on Linux, VLAN and direction tests use the
// kernel's metadata). The expression is one argument: no shell is involved.
func Compile(ctx context.Context, tcpdump, iface string, snaplen int, expr string) ([]bpf.RawInstruction, error) {
	if snaplen <= 0 {
		snaplen = WholePacket
	}
	args := []string{"-ddd", "-s", strconv.Itoa(snaplen)}
	if iface != "" {
		args = append(args, "-i", iface)
	}
	args = append(args, "--", expr)
	out, err := exec.CommandContext(ctx, tcpdump, args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("tcpdump cannot compile filter %q: %s", expr, msg)
	}
	return ParseDDD(out)
}
