package segments

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// epb is an enhanced packet block stamped at ns with n bytes of data.
func epb(ns int64, n int) []byte {
	size := 32 + (n+3)&^3
	b := make([]byte, size)
	le := binary.LittleEndian
	le.PutUint32(b[0:], blockEPB)
	le.PutUint32(b[4:], uint32(size))
	le.PutUint32(b[12:], uint32(uint64(ns)>>32))
	le.PutUint32(b[16:], uint32(ns))
	le.PutUint32(b[20:], uint32(n))
	le.PutUint32(b[24:], uint32(n))
	le.PutUint32(b[size-4:], uint32(size))
	return b
}

// shb is a section header block standing for a segment's headers.
func shb() []byte {
	b := make([]byte, 28)
	le := binary.LittleEndian
	le.PutUint32(b[0:], blockSHB)
	le.PutUint32(b[4:], 28)
	le.PutUint32(b[8:], 0x1A2B3C4D)
	le.PutUint32(b[24:], 28)
	return b
}

const sec = int64(time.Second)

// write fills the ring as a capture would: one packet every 100 ms from
// t0 to t1, rotating when Due, pruning as it goes.
func write(t *testing.T, r *Ring, t0, t1 int64, keepFrom int64) {
	t.Helper()
	f, size := (*os.File)(nil), int64(0)
	open := func() {
		var err error
		if f, err = r.Open(); err != nil {
			t.Fatal(err)
		}
		n, _ := f.Write(shb())
		size = int64(n)
	}
	open()
	for ns := t0; ns < t1; ns += sec / 10 {
		if r.Due(ns, size) {
			f.Close()
			r.Rotate(size)
			open()
			if err := r.Prune(ns, keepFrom, size); err != nil {
				t.Fatal(err)
			}
		}
		n, _ := f.Write(epb(ns, 100))
		size += int64(n)
		r.Wrote(ns)
		// The capture prunes at each rotation and every 200 ms.
		if err := r.Prune(ns, keepFrom, size); err != nil {
			t.Fatal(err)
		}
		if b := r.Status(size).Bytes; r.opt.KeepBytes > 0 && b > int64(r.opt.KeepBytes)+1348 {
			t.Fatalf("the ring holds %d bytes at %d: more than keep_bytes + a segment", b, ns)
		}
	}
	f.Close()
	r.Rotate(size)
}

func TestPruneKeepsKeepAndGrace(t *testing.T) {
	dir := t.TempDir()
	r, err := New(Options{Dir: filepath.Join(dir, "ring"), Keep: 3 * time.Second, Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	write(t, r, 100*sec, 120*sec, math.MaxInt64)
	st := r.Status(0)
	// Keep 3 s + grace 2 s + the current segment: the segments starting at
	// 114..119 s; 14 deleted.
	if st.Segments != 6 || st.Deleted != 14 || st.Oldest != time.Unix(114, 0) {
		t.Fatalf("status %+v, want 6 segments from 114 s, 14 deleted", st)
	}
	var got []int64
	n, err := r.Trim(115*sec+sec/2, 119*sec, func(b []byte) error {
		got = append(got, int64(uint64(binary.LittleEndian.Uint32(b[12:]))<<32|uint64(binary.LittleEndian.Uint32(b[16:]))))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.Packets != 35 || len(got) != 35 || got[0] != 115*sec+sec/2 || got[34] != 119*sec-sec/10 || n.Bytes != 3500 {
		t.Fatalf("trim copied %+v (%d blocks from %d to %d)", n, len(got), got[0], got[len(got)-1])
	}
	if _, err := os.Stat(filepath.Join(dir, "ring")); !os.IsNotExist(err) {
		t.Errorf("the ring's folder is left: %v", err)
	}
}

func TestPruneStopsAtTheTrigger(t *testing.T) {
	r, err := New(Options{Dir: filepath.Join(t.TempDir(), "ring"), Keep: 3 * time.Second, Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A trigger at 105 s: nothing from 102 s on is deleted, however late.
	write(t, r, 100*sec, 120*sec, 102*sec)
	if st := r.Status(0); st.Oldest != time.Unix(102, 0) || st.Deleted != 2 {
		t.Fatalf("status %+v: want the segments from 102 s on", st)
	}
}

func TestKeepBytesCaps(t *testing.T) {
	// 10 packets of 132 bytes a second; segments of 1 s (1320 bytes + 28).
	r, err := New(Options{Dir: filepath.Join(t.TempDir(), "ring"), Keep: time.Hour, KeepBytes: 4000, Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	write(t, r, 100*sec, 120*sec, math.MaxInt64)
	st := r.Status(0)
	if st.Bytes < 4000 || st.Bytes > 4000+1348 {
		t.Fatalf("status %+v: want at least keep_bytes, at most one segment more", st)
	}
}

func TestTrimRefusesAForeignFile(t *testing.T) {
	r, err := New(Options{Dir: filepath.Join(t.TempDir(), "ring"), Keep: time.Second, Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := r.Open()
	f.Write([]byte("this is no pcapng file at all"))
	f.Close()
	r.Wrote(1) // a packet, so Trim reads the segment
	r.Rotate(29)
	if _, err := r.Trim(0, math.MaxInt64, func([]byte) error { return nil }); err == nil {
		t.Fatal("Trim read a file that is not a segment")
	}
}

func TestNewRefusesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ring")
	os.MkdirAll(dir, 0o750)
	os.WriteFile(filepath.Join(dir, "000000.pcapng"), nil, 0o640)
	if _, err := New(Options{Dir: dir, Keep: time.Second, Segment: time.Second}); err == nil {
		t.Fatal("New took a folder holding an earlier run's segments")
	}
}

// TestCovered: the ring says from when it still holds every packet.
func TestCovered(t *testing.T) {
	r, err := New(Options{Dir: filepath.Join(t.TempDir(), "ring"), Keep: 3 * time.Second, Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Covered() != math.MinInt64 {
		t.Fatal("a new ring says it lost packets")
	}
	write(t, r, 100*sec, 120*sec, math.MaxInt64)
	// 114 s onward is kept; the last deleted segment ended at 113.9 s.
	if got, want := r.Covered(), 113*sec+9*sec/10+1; got != want {
		t.Fatalf("covered from %d, want %d", got, want)
	}
}

// TestTrimKeepsWhatItCouldNotCopy: a write that fails part way leaves the
// segments not copied in place, and says where.
func TestTrimKeepsWhatItCouldNotCopy(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ring")
	r, err := New(Options{Dir: dir, Keep: time.Hour, Segment: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	write(t, r, 100*sec, 105*sec, math.MaxInt64) // 5 segments of 10 packets
	n := 0
	_, err = r.Trim(0, math.MaxInt64, func([]byte) error {
		if n++; n == 25 {
			return errors.New("no space left on device")
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Trim: %v, want the error naming %s", err, dir)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.pcapng"))
	if len(left) != 3 {
		t.Fatalf("%d segments left, want the 3 not copied whole (the third, failed, and the two after)", len(left))
	}
}
