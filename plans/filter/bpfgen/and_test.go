package bpfgen

import (
	"testing"

	"golang.org/x/net/bpf"

	"github.com/casecap/casecap/internal/lab/frames"
	"github.com/casecap/casecap/plans/filter"
)

// TestAnd checks And against each program alone, in the VM, on every
// frame of the corpus: a frame passes both or is refused.
func TestAnd(t *testing.T) {
	progs := map[string]filter.Filter{
		"udp":     {Proto: u8(17)},
		"port 53": {Port: u16(53)},
		"mac":     {MAC: mac(macA)},
		"all":     {},
	}
	raw := map[string][]bpf.RawInstruction{}
	for name, f := range progs {
		ins, err := Build(f, Options{Snaplen: 100})
		if err != nil {
			t.Fatal(err)
		}
		if raw[name], err = bpf.Assemble(ins); err != nil {
			t.Fatal(err)
		}
	}
	run := func(p []bpf.RawInstruction, frame []byte) int {
		t.Helper()
		ins, ok := bpf.Disassemble(p)
		if !ok {
			t.Fatal("disassemble")
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		n, err := vm.Run(frame)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	both := 0
	for a := range progs {
		for b := range progs {
			and, err := And(raw[a], raw[b])
			if err != nil {
				t.Fatal(err)
			}
			for _, fr := range frames.Corpus(false) {
				want := 0
				if run(raw[a], fr.Data) > 0 && run(raw[b], fr.Data) > 0 {
					want = 100 // the snap length (the VM does not cut it to the frame)
					both++
				}
				if got := run(and, fr.Data); got != want {
					t.Errorf("%s and %s on %s: %d, want %d", a, b, fr.Name, got, want)
				}
			}
		}
	}
	if both == 0 {
		t.Fatal("no frame passed two programs: the test checks nothing")
	}
	if _, err := And([]bpf.RawInstruction{{Op: 0x16}}, raw["udp"]); err == nil { // ret a
		t.Error("And chained a program that returns a computed length")
	}
}
