package rules

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casecap/casecap/internal/agentproto"
)

type fired struct {
	id, note string
	at       time.Time
}

func start(t *testing.T, rs ...agentproto.Rule) chan fired {
	t.Helper()
	s, err := Prepare(rs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan fired, 4)
	s.Start(ctx, func(r agentproto.Rule, at time.Time, note string) { ch <- fired{r.ID, note, at} })
	return ch
}

func wait(t *testing.T, ch chan fired, within time.Duration) (fired, bool) {
	t.Helper()
	select {
	case f := <-ch:
		return f, true
	case <-time.After(within):
		return fired{}, false
	}
}

// TestLogRule: lines before the start, lines that do not match and half
// a line do not fire; the line's end does; so does a matching line in
// the file that replaced a rotated one.
func TestLogRule(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "vmkernel.log")
	os.WriteFile(log, []byte("vmnic2: link down (before the start)\n"), 0o644)
	ch := start(t, agentproto.Rule{ID: "r0", LogFile: log, LogMatch: `vmnic[0-9]+: .*link down`})
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("vmnic3: link up\nvmnic2: lin")
	if got, ok := wait(t, ch, 3*LogPoll); ok {
		t.Fatalf("fired on %q", got.note)
	}
	f.WriteString("k down\n")
	f.Close()
	got, ok := wait(t, ch, 10*LogPoll)
	if !ok || got.note != "vmnic2: link down" || got.id != "r0" {
		t.Fatalf("fired %v %+v, want on the completed line", ok, got)
	}

	// Rotation: the file is renamed and a new one written.
	ch = start(t, agentproto.Rule{ID: "r1", LogFile: log, LogMatch: `NIC Link is Down`})
	time.Sleep(2 * LogPoll)
	os.Rename(log, log+".1")
	os.WriteFile(log, []byte("vmnic0: NIC Link is Down\n"), 0o644)
	if got, ok := wait(t, ch, 10*LogPoll); !ok || !strings.Contains(got.note, "NIC Link is Down") {
		t.Fatalf("after a rotation: fired %v %+v", ok, got)
	}
}

func TestLogRuleNeedsTheFile(t *testing.T) {
	if _, err := Prepare([]agentproto.Rule{{ID: "r0", LogFile: "/no/such/file.log", LogMatch: "x"}}); err == nil {
		t.Fatal("a log rule on a missing file was accepted")
	}
}

// TestCommandRule: a command fires on its first exit status 0, at the
// instant that run started, with its first line of output.
func TestCommandRule(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "flag")
	ch := start(t, agentproto.Rule{ID: "c0", Command: "test -e " + flag + " && echo found it", Every: 100 * time.Millisecond})
	if _, ok := wait(t, ch, 300*time.Millisecond); ok {
		t.Fatal("fired before the file existed")
	}
	made := time.Now()
	os.WriteFile(flag, nil, 0o644)
	got, ok := wait(t, ch, 2*time.Second)
	// The run that found it started at most one period before the file
	// appeared (it may have started just before).
	if !ok || got.note != "found it" || got.at.Before(made.Add(-100*time.Millisecond)) || got.at.Sub(made) > 200*time.Millisecond {
		t.Fatalf("fired %v %+v (file made at %v)", ok, got, made)
	}
}

// TestCommandRuleDoesNotHang: a command whose pipeline outlives its
// shell is killed whole at the timeout, and the rule goes on.
func TestCommandRuleDoesNotHang(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 10 s")
	}
	flag := filepath.Join(t.TempDir(), "flag")
	ch := start(t, agentproto.Rule{ID: "c0", Command: "test -e " + flag + " || { sleep 60 | cat; false; }", Every: 100 * time.Millisecond})
	time.Sleep(500 * time.Millisecond)
	os.WriteFile(flag, nil, 0o644)
	// The first run hangs in the pipeline until its 10 s timeout; the
	// next one finds the file.
	if _, ok := wait(t, ch, 15*time.Second); !ok {
		t.Fatal("the rule never ran again after a command that hung")
	}
}

func TestLogRuleDollar(t *testing.T) {
	log := filepath.Join(t.TempDir(), "syslog")
	os.WriteFile(log, nil, 0o644)
	ch := start(t, agentproto.Rule{ID: "r0", LogFile: log, LogMatch: `link down$`})
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("eth0: link down\r\n")
	f.Close()
	if _, ok := wait(t, ch, 10*LogPoll); !ok {
		t.Fatal("a pattern ending in $ did not match its line")
	}
}
