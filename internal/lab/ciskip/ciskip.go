// Package ciskip is how a test skips: with its reason, outside CI; under
// CI=true (what .ci/run sets) a test that cannot run fails instead, so
// that CI never passes by skipping. It imports nothing of casecap, so any
// test can use it.
package ciskip

import (
	"fmt"
	"os"
	"testing"
)

// CI reports whether the tests run under CI (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Skipf skips the test with the reason, or fails it under CI.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("under CI=true every test must run, but: %s", fmt.Sprintf(format, args...))
	}
	t.Skipf(format, args...)
}
