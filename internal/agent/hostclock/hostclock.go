// Package hostclock is the agent's clock: this host's time, for the
// instants casecap agrees with the agent (a begin, a stop, a capture's
// window) and for the timestamps the agent compares them with (its
// packets'). Every lab host shares one kernel clock, so a test build
// (tag casecap_testhooks) can skew one host's agent, its clock and its
// packet timestamps alike, as a host whose clock is off would be: the
// only way to test that casecap measures and applies clock offsets with
// the right sign. A release agent has no skew and no way to get one.
package hostclock

import "time"

// skew is how far this agent's clock is off: zero but in test builds.
var skew time.Duration

// Now is this host's time.
func Now() time.Time { return time.Now().Add(skew) }

// Since is the time elapsed on this host's clock since t.
func Since(t time.Time) time.Duration { return Now().Sub(t) }

// Skew is what is added to the kernel's clock: to its packet timestamps.
func Skew() time.Duration { return skew }
