// Package kway is the heap of a k-way merge: the sources of a merge (one
// capture file each), ordered by their next item, so that the earliest
// comes out first however many files a case has.
package kway

import "container/heap"

// Heap orders sources by less (their next item's time, say).
type Heap[T any] struct{ h inner[T] }

// New makes an empty heap ordered by less.
func New[T any](less func(a, b T) bool) *Heap[T] { return &Heap[T]{inner[T]{less: less}} }

// Push adds a source.
func (h *Heap[T]) Push(s T) { heap.Push(&h.h, s) }

// Len is the number of sources left.
func (h *Heap[T]) Len() int { return len(h.h.items) }

// Top is the source whose item comes first.
func (h *Heap[T]) Top() T { return h.h.items[0] }

// Next puts Top back in its place once it has moved on to its next
// item, or drops it when it has none (more is false).
func (h *Heap[T]) Next(more bool) {
	if more {
		heap.Fix(&h.h, 0)
	} else {
		heap.Pop(&h.h)
	}
}

type inner[T any] struct {
	items []T
	less  func(a, b T) bool
}

func (h inner[T]) Len() int           { return len(h.items) }
func (h inner[T]) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h inner[T]) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *inner[T]) Push(x any)        { h.items = append(h.items, x.(T)) }
func (h *inner[T]) Pop() any {
	n := len(h.items) - 1
	x := h.items[n]
	h.items = h.items[:n]
	return x
}
