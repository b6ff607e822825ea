package kway

import (
	"slices"
	"testing"
)

// TestMerge: three sorted lists come out as one, in order, each source
// dropped when it runs out.
func TestMerge(t *testing.T) {
	type src struct{ items []int }
	h := New(func(a, b *src) bool { return a.items[0] < b.items[0] })
	for _, l := range [][]int{{1, 4, 9}, {2, 3, 10, 11}, {5}} {
		h.Push(&src{l})
	}
	var got []int
	for h.Len() > 0 {
		s := h.Top()
		got = append(got, s.items[0])
		s.items = s.items[1:]
		h.Next(len(s.items) > 0)
	}
	if want := []int{1, 2, 3, 4, 5, 9, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}
