package hosts

import "strings"

// Quote makes a POSIX shell command line that runs argv exactly: every
// argument that is not plainly safe is single-quoted, and a single quote
// inside is closed, escaped and reopened:
//
//	it's  ->  'it'\''s'
//
// Newlines, $(...), backticks, ; and the like are inert inside single
// quotes, in bash, dash and BusyBox ash alike.
func Quote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

func quoteArg(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
