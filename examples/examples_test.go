package examples

import (
	"io/fs"
	"testing"

	"github.com/casecap/casecap/plans"
)

// TestExamplesValidate: every runbook in examples/ is a valid plan.
func TestExamplesValidate(t *testing.T) {
	names, err := fs.Glob(FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 5 {
		t.Fatalf("%d examples, want at least 5", len(names))
	}
	for _, name := range names {
		data, err := FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := plans.Parse(name, data)
		if err != nil {
			t.Errorf("%s does not validate:\n%v", name, err)
			continue
		}
		if len(p.Captures()) == 0 {
			t.Errorf("%s has no captures", name)
		}
		for _, w := range p.Warnings {
			t.Errorf("%s: unexpected warning %s", name, w)
		}
	}
}
