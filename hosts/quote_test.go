package hosts

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/casecap/casecap/internal/lab/ciskip"
)

// TestQuote pins the quoting of every awkward argument, and runs the result
// through a real POSIX shell to prove each argument arrives intact.
func TestQuote(t *testing.T) {
	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"/vmfs/volumes/ds1/.casecap/agent", "start", "job.json"}, "/vmfs/volumes/ds1/.casecap/agent start job.json"},
		{[]string{"echo", ""}, "echo ''"},
		{[]string{"echo", "a b"}, "echo 'a b'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"echo", "$(id)", "`id`", "a;id", "a|b", "a&&b", "x>y"}, "echo '$(id)' '`id`' 'a;id' 'a|b' 'a&&b' 'x>y'"},
		{[]string{"echo", "line1\nline2"}, "echo 'line1\nline2'"},
		{[]string{"echo", "*", "~", "$HOME", "!x", "\\"}, `echo '*' '~' '$HOME' '!x' '\'`},
		{[]string{"echo", "NSX Manager.eth0"}, "echo 'NSX Manager.eth0'"},
	}
	for _, c := range cases {
		if got := Quote(c.argv); got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.argv, got, c.want)
		}
	}
	for _, sh := range []string{"sh", "bash", "dash"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			if ciskip.CI() {
				t.Errorf("%s is not installed: the quoting is not checked in it (./test.sh installs it)", sh)
			}
			continue
		}
		for _, c := range cases {
			// printf prints each argument on its own NUL-terminated record.
			argv := append([]string{"printf", `%s\0`}, c.argv[1:]...)
			out, err := exec.Command(path, "-c", Quote(argv)).Output()
			if err != nil {
				t.Fatalf("%s -c %s: %v", sh, Quote(argv), err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
			if strings.Join(got, "|") != strings.Join(c.argv[1:], "|") {
				t.Errorf("%s received %q, want %q", sh, got, c.argv[1:])
			}
		}
	}
}

func FuzzQuote(f *testing.F) {
	f.Add("a'b$(c)`d`\n;e")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.ContainsRune(s, 0) {
			return // arguments cannot hold NUL
		}
		out, err := exec.Command("sh", "-c", Quote([]string{"printf", "%s", s})).Output()
		if err != nil || string(out) != s {
			t.Fatalf("sh received %q (%v), want %q", out, err, s)
		}
	})
}
