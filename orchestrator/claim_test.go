package orchestrator_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/hosts"
	"github.com/casecap/casecap/orchestrator"
	"github.com/casecap/casecap/plans"
)

// startOn starts the fake plan on one shared fake filesystem.
func startOn(t *testing.T, fsys *hosts.FakeFS) error {
	t.Helper()
	begun.Clear()
	fakes := map[string]*hosts.Fake{}
	for _, name := range []string{"h1", "h2"} {
		fakes[name] = fakeLinux(name, fsys, "")
	}
	o := orchestrator.New(orchestrator.Options{
		Plan: fakePlan(t, 2), OutDir: t.TempDir(), Version: "test",
		AgentBinary: func(string) ([]byte, error) { return []byte("#!agent\n"), nil },
		Dial:        func(_ context.Context, h *plans.Host) (hosts.Conn, error) { return fakes[h.Name], nil },
	})
	_, err := o.Start(context.Background())
	return err
}

const claimDir = "/ds/.casecap/cases/FAKE"

// TestClaims: a claim that never began and is older than its TTL (on the
// host's clock) is taken over, by the next number, the old one removed; a
// younger one, one being written, and one that began are not.
func TestClaims(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name    string
		claim   string
		mtime   time.Time // on the host's clock
		skew    time.Duration
		refused string // "" when the start takes the case over
	}{
		{"stale, never began", `{"run":"dead","command":"start","by":"x@y","pid":1}`, old, 0, ""},
		// The host's clock is 2 h ahead: a claim an hour old there is in
		// casecap's future, and still stale.
		{"stale by the host's clock", `{"run":"dead","command":"start","by":"x@y","pid":1}`, time.Now().Add(time.Hour), 2 * time.Hour, ""},
		{"young by the host's clock", `{"run":"live","command":"start","by":"x@y","pid":1}`, time.Now().Add(-time.Hour), -time.Hour, "which is starting it"},
		{"young, never began", `{"run":"live","command":"start","by":"x@y","pid":1}`, time.Now(), 0, "which is starting it"},
		{"being written", ``, time.Now(), 0, "being written"},
		{"began long ago", `{"run":"done","command":"run","by":"x@y","pid":1,"begun":"2026-01-01T00:00:00Z"}`, old, 0, "which already began capturing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fakeHostClock = c.skew
			defer func() { fakeHostClock = 0 }()
			fsys := hosts.NewFakeFS()
			fsys.Put(claimDir+"/.claim-1.json", []byte(c.claim))
			fsys.Touch(claimDir+"/.claim-1.json", c.mtime)
			err := startOn(t, fsys)
			if c.refused != "" {
				if err == nil || !strings.Contains(err.Error(), "claimed by another run") || !strings.Contains(err.Error(), c.refused) {
					t.Fatalf("start: %v, want refused (%s)", err, c.refused)
				}
				if _, ok := fsys.Get(claimDir + "/.claim-2.json"); ok {
					t.Error("a refused start made a claim")
				}
				if b, _ := fsys.Get(claimDir + "/.claim-1.json"); string(b) != c.claim {
					t.Error("a refused start changed the holder's claim")
				}
				return
			}
			if err != nil {
				t.Fatalf("start over a stale claim: %v", err)
			}
			if _, ok := fsys.Get(claimDir + "/.claim-1.json"); ok {
				t.Error("the stale claim is still there")
			}
			b, ok := fsys.Get(claimDir + "/.claim-2.json")
			var got struct {
				Run   string    `json:"run"`
				Begun time.Time `json:"begun"`
			}
			if !ok || json.Unmarshal(b, &got) != nil || got.Run == "dead" || got.Begun.IsZero() {
				t.Errorf("claim 2: %s, want this start's, marked begun", b)
			}
		})
	}
}

// TestFailedStartReleasesItsClaim: a start that fails before anything
// began removes its claim; the next start of the case claims it anew.
func TestFailedStartReleasesItsClaim(t *testing.T) {
	fsys := hosts.NewFakeFS()
	fakes := map[string]*hosts.Fake{"h1": fakeLinux("h1", fsys, ""), "h2": fakeLinux("h2", fsys, "arm")}
	o := orchestrator.New(orchestrator.Options{
		Plan: fakePlan(t, 2), OutDir: t.TempDir(), Version: "test",
		AgentBinary: func(string) ([]byte, error) { return []byte("#!agent\n"), nil },
		Dial:        func(_ context.Context, h *plans.Host) (hosts.Conn, error) { return fakes[h.Name], nil },
	})
	if _, err := o.Start(context.Background()); err == nil {
		t.Fatal("start with h2 failing at arm succeeded")
	}
	for _, n := range []string{"1", "2"} {
		if _, ok := fsys.Get(claimDir + "/.claim-" + n + ".json"); ok {
			t.Errorf("claim %s left after a failed start", n)
		}
	}
	if err := startOn(t, fsys); err != nil {
		t.Errorf("the next start: %v", err)
	}
}

// TestClaimSeenBeingWrittenByItsOwnRun: two hosts of one run that share a
// datastore (not the first host's) claim it at the same moment; the one
// that finds the other's claim still empty (created, not yet written)
// waits for its content instead of taking it for another run's.
func TestClaimSeenBeingWrittenByItsOwnRun(t *testing.T) {
	shared := hosts.NewFakeFS()
	shared.SlowCreate = 200 * time.Millisecond
	fakes := map[string]*hosts.Fake{
		"h1": fakeLinux("h1", hosts.NewFakeFS(), ""),
		"h2": fakeLinux("h2", shared, ""),
		"h3": fakeLinux("h3", shared, ""),
	}
	o := orchestrator.New(orchestrator.Options{
		Plan: fakePlan(t, 3), OutDir: t.TempDir(), Version: "test",
		AgentBinary: func(string) ([]byte, error) { return []byte("#!agent\n"), nil },
		Dial:        func(_ context.Context, h *plans.Host) (hosts.Conn, error) { return fakes[h.Name], nil },
	})
	if _, err := o.Start(context.Background()); err != nil {
		t.Errorf("start: %v", err)
	}
}
