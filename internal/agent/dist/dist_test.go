package dist

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"testing"

	"github.com/casecap/casecap/internal/lab/ciskip"
)

// TestEmbedded: every embedded agent is a static Linux binary of its
// architecture; a platform not embedded says how to build.
func TestEmbedded(t *testing.T) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	if got := Platforms(); len(got) != len(machines) {
		// A fresh clone embeds none until `go generate ./internal/agent/dist`.
		msg := fmt.Sprintf("embedded agents for %v, want amd64 and arm64: run go generate ./internal/agent/dist", got)
		if ciskip.CI() {
			t.Fatal(msg)
		}
		t.Log(msg)
	}
	for _, arch := range Platforms() {
		b, err := Agent(arch)
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: not an ELF binary: %v", arch, err)
		}
		if f.Machine != machines[arch] {
			t.Errorf("%s: machine %v", arch, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked; the agent must be static", arch)
			}
		}
		if len(b) > 6<<20 {
			t.Errorf("%s: %d bytes; the agent is meant to stay small", arch, len(b))
		}
	}
	if _, err := Agent("mips"); !errors.Is(err, ErrNotEmbedded) {
		t.Errorf("Agent(mips) = %v, want ErrNotEmbedded", err)
	}
}
