package gerrit

import (
	"context"
	"sync"
)

// queue is a bounded FIFO between a producer that must never block (the SSH
// reader: a stalled reader makes Gerrit drop events) and a consumer that may
// stall (the broker, an events-log replay). What does not fit is refused and
// the caller counts it.
type queue[T any] struct {
	mu       sync.Mutex
	items    []T
	head     int
	bytes    int
	maxItems int
	maxBytes int
	closed   bool
	wake     chan struct{} // has a value when items or closed changed
}

func newQueue[T any](maxItems, maxBytes int) *queue[T] {
	return &queue[T]{maxItems: maxItems, maxBytes: maxBytes, wake: make(chan struct{}, 1)}
}

// push appends v (size bytes) and reports false when the queue is full or
// closed.
func (q *queue[T]) push(v T, size int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.items) - q.head
	if q.closed || n >= q.maxItems || (n > 0 && q.bytes+size > q.maxBytes) {
		return false
	}
	q.items = append(q.items, v)
	q.bytes += size
	q.signal()
	return true
}

func (q *queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop waits for the next item. It returns false when ctx is done, or when
// the queue is closed and empty.
func (q *queue[T]) pop(ctx context.Context, size func(T) int) (T, bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			v := q.items[q.head]
			var zero T
			q.items[q.head] = zero
			q.head++
			q.bytes -= size(v)
			if q.head == len(q.items) {
				q.items, q.head = q.items[:0], 0
			} else if q.head > 1024 && q.head*2 > len(q.items) {
				q.items, q.head = append([]T(nil), q.items[q.head:]...), 0
			}
			if q.head < len(q.items) || q.closed {
				q.signal() // let the next pop (or a waiter) see the rest
			}
			q.mu.Unlock()
			return v, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			var zero T
			return zero, false
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.signal()
	q.mu.Unlock()
}

func (q *queue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}
