package broker

import "sync"

// retainedBook keeps the size of every retained message clients left, for
// max_retained_messages and max_retained_bytes. mochi's own $SYS messages and
// the appliance's are not in it.
type retainedBook struct {
	mu    sync.Mutex
	size  map[string]int
	bytes int64
}

// admit reports whether a retained message of n bytes on topic t stays within
// the limits, counting the message it would replace as gone.
func (r *retainedBook) admit(t string, n int, lim *limits) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.size[t]
	count := len(r.size)
	if !had {
		count++
	}
	return count <= lim.MaxRetainedMessages && r.bytes-int64(old)+int64(n) <= int64(lim.MaxRetainedBytes)
}

// set records the retained message on t (n == 0: none).
func (r *retainedBook) set(t string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size == nil {
		r.size = map[string]int{}
	}
	r.bytes -= int64(r.size[t])
	if n == 0 {
		delete(r.size, t)
		return
	}
	r.size[t] = n
	r.bytes += int64(n)
}
