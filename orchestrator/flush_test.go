package orchestrator

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFlusher: background fsyncs start every flushEvery bytes, one at a
// time; sync waits for them and reports a failure of any, even one the
// final fsync would not see again.
func TestFlusher(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "x.part"))
	if err != nil {
		t.Fatal(err)
	}
	fl := newFlusher(f, 0)
	fl.wrote(flushEvery - 1)
	if fl.next != flushEvery {
		t.Errorf("a background fsync started before flushEvery bytes: next %d", fl.next)
	}
	fl.wrote(flushEvery + 10)
	if fl.next != 2*flushEvery+10 {
		t.Errorf("no background fsync after flushEvery bytes: next %d", fl.next)
	}
	if err := fl.sync(); err != nil {
		t.Fatal(err)
	}
	// A resumed download counts from where it resumed.
	if fl := newFlusher(f, 5*flushEvery); fl.next != 6*flushEvery {
		t.Errorf("resumed at 5*flushEvery: first fsync at %d", fl.next)
	}

	// A background fsync that fails is reported by sync.
	f.Close()
	fl = newFlusher(f, 0)
	fl.wrote(flushEvery)
	fl.wg.Wait()
	if fl.err == nil {
		t.Fatal("the background fsync of a closed file did not fail")
	}
	if err := fl.sync(); err == nil {
		t.Error("sync did not report the failed fsync")
	}
	var nilFlusher *flusher
	nilFlusher.wrote(1 << 40) // Fetch's: none
}
