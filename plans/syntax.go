package plans

import (
	"errors"
	"strconv"
	"strings"

	goccy "github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
)

// syntaxDiag places a YAML syntax error. yaml.v3, which reads the plan,
// gives only a line (often the line of the block the error is in, not the
// error's); so the text is parsed again by goccy/go-yaml, whose syntax
// errors carry the offending token's line and column, and the path is
// worked out from the indentation of the lines above (a document that does
// not parse has no tree to take it from). Where goccy finds nothing,
// yaml.v3's line is kept.
func syntaxDiag(file string, data []byte, err error) Diag {
	d := Diag{File: file, Message: "YAML syntax: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		d.Line, _ = strconv.Atoi(m[1])
		d.Message = "YAML syntax: " + m[2]
	}
	if line, col, msg, ok := goccyPlace(data); ok {
		d.Line, d.Col, d.Message = line, col, "YAML syntax: "+msg
	}
	if d.Line > 0 {
		d.Path = pathAt(strings.Split(string(data), "\n"), d.Line)
	}
	return d
}

// goccyPlace asks goccy/go-yaml where a syntax error is. A second parser
// meets whatever text yaml.v3 refused: should it panic on some, the place
// is yaml.v3's and nothing else changes.
func goccyPlace(data []byte) (line, col int, msg string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, err := parser.ParseBytes(data, 0)
	var se *goccy.SyntaxError
	if errors.As(err, &se) && se.Token != nil && se.Token.Position != nil && se.Token.Position.Line > 0 {
		return se.Token.Position.Line, se.Token.Position.Column, se.Message, true
	}
	return 0, 0, "", false
}

// pathAt works out the YAML path of line n (1-based) of a block-style
// document from indentation alone: its key, under the keys and sequence
// items of the lines above it that are less indented. It gives "" where
// it cannot tell (a line out of range), and a partial path for flow style.
func pathAt(lines []string, n int) string {
	if n < 1 || n > len(lines) {
		return ""
	}
	indent := func(i int) int { return len(lines[i]) - len(strings.TrimLeft(lines[i], " ")) }
	item := func(i int) bool { return strings.HasPrefix(strings.TrimSpace(lines[i]), "- ") }
	meaningful := func(i int) bool {
		t := strings.TrimSpace(lines[i])
		return t != "" && !strings.HasPrefix(t, "#") && t != "---"
	}
	key := func(i int) string {
		s := strings.TrimPrefix(strings.TrimSpace(lines[i]), "- ")
		if k, _, ok := strings.Cut(s, ":"); ok && k != "" && !strings.ContainsAny(k, "{}[],\"'") {
			return strings.TrimSpace(k)
		}
		return ""
	}
	// above finds the nearest meaningful line above i that ends i's block.
	above := func(i int, ends func(j int) bool) int {
		for j := i - 1; j >= 0; j-- {
			if meaningful(j) && ends(j) {
				return j
			}
		}
		return -1
	}
	var parts []string
	i := n - 1
	if k := key(i); k != "" {
		parts = append(parts, k)
	}
	for i >= 0 {
		cur := indent(i)
		if item(i) {
			// Its index: the items above it at its indent, in its sequence.
			idx := 0
			for j := i - 1; j >= 0; j-- {
				if !meaningful(j) || indent(j) > cur {
					continue
				}
				if indent(j) < cur || !item(j) {
					break
				}
				idx++
			}
			parts = append(parts, "["+strconv.Itoa(idx)+"]")
			// The sequence's key: less indented, or at its indent ("key:\n- a").
			o := above(i, func(j int) bool { return indent(j) < cur || indent(j) == cur && !item(j) })
			if o < 0 {
				break
			}
			if k := key(o); k != "" {
				parts = append(parts, k)
			}
			i = o
			continue
		}
		p := above(i, func(j int) bool { return indent(j) < cur })
		if p < 0 {
			break
		}
		// Under an item's line, i is a key of that item's mapping: the
		// item's own key is its sibling; the loop adds the item's index.
		if !item(p) {
			if k := key(p); k != "" {
				parts = append(parts, k)
			}
		}
		i = p
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		if b.Len() > 0 && !strings.HasPrefix(parts[i], "[") {
			b.WriteByte('.')
		}
		b.WriteString(parts[i])
	}
	return b.String()
}
