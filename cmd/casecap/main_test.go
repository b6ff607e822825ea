package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"casecap"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsEveryCommand(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, cmd := range []string{"validate", "run", "start", "status", "stop", "collect", "targets", "points"} {
		if !strings.Contains(out, "\n   "+cmd+" ") {
			t.Errorf("--help does not list %q:\n%s", cmd, out)
		}
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"run"}, exitUsage},                     // missing PLAN
		{[]string{"run", "a.yaml", "b.yaml"}, exitUsage}, // too many
		{[]string{"run", "--no-such-flag", "a.yaml"}, exitUsage},
		{[]string{"bogus"}, exitUsage},
	}
	for _, c := range cases {
		if code, _, errOut := runCLI(t, c.args...); code != c.want {
			t.Errorf("casecap %v: exit %d, want %d (stderr %q)", c.args, code, c.want, errOut)
		}
	}
}
