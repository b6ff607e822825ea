package bench

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// benchmarks lists the Benchmark functions of the Go files in dir.
func benchmarks(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	var names []string
	for _, f := range files {
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Benchmark") {
				names = append(names, fn.Name.Name)
			}
		}
	}
	return names
}

// TestDocumentedBenchmarksSelectWhatTheySay: every `go test -bench=P ...
// ./pkg` command in BENCHMARKS.md and test.sh selects exactly one
// benchmark function of its package (P's first part, before any '/'), so
// that a figure is never the sum of two benchmarks, or of none.
func TestDocumentedBenchmarksSelectWhatTheySay(t *testing.T) {
	cmd := regexp.MustCompile(`-bench=('[^']*'|\S+)[^\n]*?\s(\./[\w./-]+)`)
	checked := 0
	for _, doc := range []string{"../BENCHMARKS.md", "../test.sh"} {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmd.FindAllStringSubmatch(string(raw), -1) {
			pattern, pkg := strings.Trim(m[1], "'"), m[2]
			if pattern == "." {
				continue // every benchmark, on purpose
			}
			first, _, _ := strings.Cut(pattern, "/")
			re, err := regexp.Compile(first)
			if err != nil {
				t.Errorf("%s: -bench=%s: %v", doc, pattern, err)
				continue
			}
			var hits []string
			for _, name := range benchmarks(t, filepath.Join("..", pkg)) {
				if re.MatchString(name) {
					hits = append(hits, name)
				}
			}
			if len(hits) != 1 {
				t.Errorf("%s: -bench=%s in %s selects %v, want exactly one benchmark", doc, pattern, pkg, hits)
			}
			checked++
		}
	}
	if checked < 8 {
		t.Errorf("only %d documented benchmark commands found: the pattern no longer reads the docs", checked)
	}
}
