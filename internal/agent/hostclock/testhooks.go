//go:build casecap_testhooks

package hostclock

import (
	"os"
	"time"
)

// TestSkewEnv names the environment variable that skews a test build's
// clock (a Go duration: "80ms", "-120ms").
const TestSkewEnv = "CASECAP_TEST_CLOCK_SKEW"

func init() {
	if d, err := time.ParseDuration(os.Getenv(TestSkewEnv)); err == nil {
		skew = d
	}
}
