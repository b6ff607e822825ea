package bpfgen

import (
	"errors"

	"golang.org/x/net/bpf"
)

// And is a program that accepts what both first and second accept (with
// second's snap length): first runs, and each of its accepting returns
// jumps to second instead. It is how a trigger's packet rule is checked
// beside a capture's filter, in the kernel, on a socket of its own.
func And(first, second []bpf.RawInstruction) ([]bpf.RawInstruction, error) {
	a, ok := bpf.Disassemble(first)
	if !ok {
		return nil, errors.New("the first program has instructions this package cannot read")
	}
	out := make([]bpf.RawInstruction, 0, len(first)+len(second))
	for i, ins := range a {
		switch r := ins.(type) {
		case bpf.RetConstant:
			if r.Val != 0 {
				ins = bpf.Jump{Skip: uint32(len(a) - i - 1)}
			}
		case bpf.RetA:
			return nil, errors.New("the first program returns a computed length, which And cannot chain")
		}
		raw, err := ins.Assemble()
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	if len(out)+len(second) > maxInstructions {
		return nil, errors.New("the two filters together are too long for one program")
	}
	return append(out, second...), nil
}
