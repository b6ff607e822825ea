//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

// fakeEngine records the triggers it is told.
type fakeEngine struct {
	engine
	at, stop []time.Time
}

func (f *fakeEngine) Trigger(at, stop time.Time) {
	f.at, f.stop = append(f.at, at), append(f.stop, stop)
}

// TestEarliestTriggerWins: a host keeps the earliest trigger it hears of,
// whatever the order, and tells its captures each time it moves earlier.
func TestEarliestTriggerWins(t *testing.T) {
	tr := newTriggers(&agentproto.Job{Host: "h", Post: 10 * time.Second})
	e := &fakeEngine{}
	tr.set([]engine{e})
	t0 := time.Unix(1_800_000_000, 0)
	tr.fire(agentproto.Trigger{At: t0.Add(time.Second), Host: "a"})
	tr.fire(agentproto.Trigger{At: t0.Add(2 * time.Second), Host: "b"}) // later: ignored
	got := tr.fire(agentproto.Trigger{At: t0, Host: "c"})
	if got.Host != "c" || !got.Stop.Equal(t0.Add(10*time.Second)) || got.Heard.IsZero() {
		t.Fatalf("kept %+v, want c's, stopping 10 s later", got)
	}
	if len(e.at) != 2 || !e.at[1].Equal(t0) {
		t.Fatalf("the capture was told %v, want a's then c's", e.at)
	}
	if none := newTriggers(&agentproto.Job{}); none.fire(agentproto.Trigger{At: t0}) != nil {
		t.Error("a job without post took a trigger")
	}
}

// TestTriggerRequests: two requests written at once are both read, and
// removed.
func TestTriggerRequests(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1_800_000_000, 0)
	for i, host := range []string{"a", "b"} {
		b := []byte(`{"at":"` + t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano) + `","host":"` + host + `","source":"manual"}`)
		if err := os.WriteFile(filepath.Join(dir, "trigger."+host+".1.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	trs, err := readTriggers(dir)
	if err != nil || len(trs) != 2 {
		t.Fatalf("read %d triggers, %v; want 2", len(trs), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, agentproto.TriggerFiles)); len(left) != 0 {
		t.Errorf("requests left after reading: %v", left)
	}
}
