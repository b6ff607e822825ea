package bpfgen

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// asm assembles classic BPF with named labels: conditional jumps in BPF are
// relative 8-bit skips, which are unreadable to write by hand and easy to
// get wrong when code moves.
type asm struct {
	ins    []bpf.Instruction
	jumps  []jump
	labels map[string]int
	next   int // for fresh label names
}

type jump struct {
	at          int
	true, false string // "" means the next instruction
	always      bool
}

// maxInstructions is the kernel's limit for a classic BPF program (BPF_MAXINSNS).
const maxInstructions = 4096

func newAsm() *asm { return &asm{labels: map[string]int{}} }

func (a *asm) fresh(prefix string) string {
	a.next++
	return fmt.Sprintf("%s%d", prefix, a.next)
}

func (a *asm) emit(ins ...bpf.Instruction) { a.ins = append(a.ins, ins...) }

func (a *asm) label(name string) { a.labels[name] = len(a.ins) }

// jumpIf compares A with val: on true go to t, else to f ("" = fall through).
func (a *asm) jumpIf(cond bpf.JumpTest, val uint32, t, f string) {
	a.jumps = append(a.jumps, jump{at: len(a.ins), true: t, false: f})
	a.ins = append(a.ins, bpf.JumpIf{Cond: cond, Val: val})
}

// goTo jumps unconditionally.
func (a *asm) goTo(label string) {
	a.jumps = append(a.jumps, jump{at: len(a.ins), true: label, always: true})
	a.ins = append(a.ins, bpf.Jump{})
}

// assemble resolves labels into skips.
func (a *asm) assemble() ([]bpf.Instruction, error) {
	skip := func(from int, label string) (int, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok {
			return 0, fmt.Errorf("bpfgen: undefined label %q", label)
		}
		d := to - from - 1
		if d < 0 {
			return 0, fmt.Errorf("bpfgen: backward jump to %q", label)
		}
		return d, nil
	}
	for _, j := range a.jumps {
		t, err := skip(j.at, j.true)
		if err != nil {
			return nil, err
		}
		if j.always {
			a.ins[j.at] = bpf.Jump{Skip: uint32(t)}
			continue
		}
		f, err := skip(j.at, j.false)
		if err != nil {
			return nil, err
		}
		if t > 255 || f > 255 {
			return nil, fmt.Errorf("bpfgen: program too long for a conditional jump (%d, %d)", t, f)
		}
		ji := a.ins[j.at].(bpf.JumpIf)
		ji.SkipTrue, ji.SkipFalse = uint8(t), uint8(f)
		a.ins[j.at] = ji
	}
	if len(a.ins) > maxInstructions {
		return nil, fmt.Errorf("bpfgen: %d instructions, the kernel takes %d", len(a.ins), maxInstructions)
	}
	return a.ins, nil
}
