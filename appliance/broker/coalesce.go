package broker

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Write coalescing. mochi encodes every delivery on its own and, unless the
// client's queue has already backed up, writes it with one write(2). With many
// subscribers a queue rarely holds more than one message, so the broker spent
// about half its CPU in one syscall per delivery (bench/results/profiles).
// coalescedWriter takes the encoded packets instead, appends them to a
// per-connection buffer and leaves the write to a small pool of flushers that
// serve dirty connections first come, first served. The busier the broker,
// the longer a connection waits for its turn and the more packets its one
// write carries; an idle broker writes at once. Memory is held only while
// bytes wait: an idle connection keeps no buffer.
//
// Flushers write with a non-blocking write(2) when the connection exposes its
// socket; a connection whose socket is full (a slow reader), or that has no
// socket of its own (TLS, websockets), is handed to a goroutine of its own
// that writes with ordinary blocking writes until it has caught up.

// Bytes wait here, not in mochi's queue (which mochi bounds by a count of
// messages and overflows silently): Write never blocks, and a subscriber
// whose waiting bytes would pass max_queued_bytes is disconnected instead.
// So is one with more than memoryFloor waiting while the process is over
// memory_limit: many slow subscribers each under their budget must not add
// up to more memory than the host has.
const memoryFloor = 64 << 10

// chunkMax bounds the buffers kept in the pool.
const chunkMax = 64 << 10

// slowError ends a subscriber whose queue passed its budget.
type slowError struct {
	queued, limit int64
	memory        bool // over memory_limit rather than max_queued_bytes
}

func (e *slowError) Error() string {
	if e.memory {
		return "subscriber too slow: " + itoa(int(e.queued)) + " bytes queued while the broker is over memory_limit"
	}
	return "subscriber too slow: " + itoa(int(e.queued)) + " bytes queued, max_queued_bytes is " + itoa(int(e.limit))
}

// closeFlushTimeout bounds how long Close waits for buffered bytes to reach a
// client (a CONNACK refusing it, say) before the socket is closed anyway.
const closeFlushTimeout = 2 * time.Second

var errWriterClosed = errors.New("connection closed")

type writerState uint8

const (
	wIdle    writerState = iota // nothing buffered, not queued
	wQueued                     // in the flush queue
	wDrained                    // a goroutine of its own is writing
)

type coalescedWriter struct {
	conn net.Conn        // where the bytes go (not the guard)
	raw  syscall.RawConn // conn's socket, when it has one for non-blocking writes
	wire *wire           // max_queued_bytes and memory_limit, live

	mu      sync.Mutex
	pending []byte
	writing int // bytes taken from pending by a write in progress
	state   writerState
	err     error
	closing bool
	closeFn func() error // set by close while bytes still wait: called once they are out
	closeBy *time.Timer  // closes regardless after closeFlushTimeout
	queued  time.Time    // when it last joined the flush queue; zero: no linger
	dead    atomic.Bool  // closing or failed: read without mu by the fast path
}

// isClosed reports whether the writer takes no more bytes.
func (w *coalescedWriter) isClosed() bool { return w.dead.Load() }

func (w *coalescedWriter) init(c net.Conn, wr *wire) {
	w.conn = c
	w.wire = wr
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
}

// Write buffers p for the flushers and never blocks. A write that would
// queue more than the connection's budget fails with a *slowError and closes
// the connection; a packet larger than the budget still goes to a connection
// that has nothing waiting.
func (w *coalescedWriter) Write(p []byte) (int, error) {
	push, err := w.write(p)
	if push {
		flushers.push(w)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// write is Write without handing the writer to the flushers: push says it
// must be, by the caller (one fan-out hands many at once, flushQueue.pushAll).
func (w *coalescedWriter) write(p []byte) (push bool, err error) {
	w.mu.Lock()
	if queued := int64(len(w.pending) + w.writing); queued > 0 && w.err == nil && !w.closing {
		after := queued + int64(len(p))
		if limit := w.wire.maxQueued.Load(); after > limit {
			return false, w.overflow(&slowError{queued: after, limit: limit})
		}
		if after > memoryFloor && w.wire.mem.overLimit() {
			return false, w.overflow(&slowError{queued: after, memory: true})
		}
	}
	if w.err != nil || w.closing {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = errWriterClosed
		}
		return false, err
	}
	if w.pending == nil {
		w.pending = getBuf()
	}
	w.pending = append(w.pending, p...)
	if w.state == wIdle {
		// Queued from now on: no other write pushes it, and no flusher
		// has it before the push.
		w.state = wQueued
		push = true
	}
	w.mu.Unlock()
	return push, nil
}

// overflow fails the writer with err and drops what waits; the caller
// closes the connection. Called with w.mu held; returns with it released.
func (w *coalescedWriter) overflow(err *slowError) error {
	w.err = err
	w.dead.Store(true)
	putBuf(w.pending)
	w.pending = nil
	w.mu.Unlock()
	return err
}

// flush runs on a flusher: one non-blocking write of everything buffered.
func (w *coalescedWriter) flush() {
	w.mu.Lock()
	buf := w.pending
	w.pending = nil
	if w.raw == nil || w.closing || w.err != nil {
		w.state = wDrained
		w.writing = len(buf)
		w.mu.Unlock()
		go w.drain(buf)
		return
	}
	w.writing = len(buf)
	w.mu.Unlock()

	n, err := w.tryWrite(buf)

	w.mu.Lock()
	defer w.mu.Unlock()
	w.writing = 0
	switch {
	case err != nil:
		putBuf(buf)
		w.fail(err)
	case n < len(buf):
		// The socket is full: this reader is slow. Keep the rest in order,
		// ahead of anything buffered meanwhile, and block on it elsewhere.
		rest := append(getBuf(), buf[n:]...)
		putBuf(buf)
		rest = append(rest, w.pending...)
		putBuf(w.pending)
		w.pending = nil
		w.state = wDrained
		w.writing = len(rest)
		go w.drain(rest)
	case len(w.pending) > 0:
		putBuf(buf)
		flushers.push(w) // still wQueued: back of the line, batching more
	default:
		putBuf(buf)
		w.setIdle()
	}
}

// tryWrite writes what the socket takes now and never waits.
func (w *coalescedWriter) tryWrite(buf []byte) (int, error) {
	written := 0
	var werr error
	err := w.raw.Write(func(fd uintptr) bool {
		for written < len(buf) {
			n, err := syscall.Write(int(fd), buf[written:])
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				return true
			}
			if err != nil {
				werr = err
				return true
			}
			if n <= 0 {
				return true
			}
			written += n
		}
		return true
	})
	if werr == nil {
		werr = err
	}
	return written, werr
}

// drain writes with blocking writes until nothing is buffered, then hands the
// connection back to the flushers.
func (w *coalescedWriter) drain(buf []byte) {
	for {
		var err error
		if len(buf) > 0 {
			_, err = w.conn.Write(buf)
		}
		putBuf(buf)
		w.mu.Lock()
		w.writing = 0
		if err != nil {
			w.fail(err)
			w.mu.Unlock()
			return
		}
		if len(w.pending) == 0 {
			w.pending = nil
			w.setIdle()
			w.mu.Unlock()
			return
		}
		buf = w.pending
		w.pending = nil
		w.writing = len(buf)
		w.mu.Unlock()
	}
}

// fail records a write error; with w.mu held.
func (w *coalescedWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
	w.dead.Store(true)
	putBuf(w.pending)
	w.pending = nil
	w.setIdle()
}

// setIdle marks the writer idle, with w.mu held, and closes the connection
// if a close was waiting for the buffered bytes.
func (w *coalescedWriter) setIdle() {
	w.state = wIdle
	if fn := w.closeFn; fn != nil {
		w.closeFn = nil
		// The timer's closure holds the writer: let it go now.
		w.closeBy.Stop()
		_ = fn()
	}
}

// close stops further writes and closes the connection with closeFn: at
// once when nothing is buffered, else as soon as the buffered bytes are out
// (a CONNACK refusing the client, say), within closeFlushTimeout.
func (w *coalescedWriter) close(closeFn func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing {
		return errWriterClosed
	}
	w.closing = true
	w.dead.Store(true)
	if w.state == wIdle {
		return closeFn()
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	w.closeFn = closeFn
	// Not every connection honours the deadline (gorilla resets it per
	// write): close regardless once it has passed.
	w.closeBy = time.AfterFunc(closeFlushTimeout, func() {
		w.mu.Lock()
		fn := w.closeFn
		w.closeFn = nil
		w.mu.Unlock()
		if fn != nil {
			_ = fn()
		}
	})
	return nil
}

// flushQueue hands dirty connections to the flushers in arrival order.
type flushQueue struct {
	once  sync.Once
	mu    sync.Mutex
	ready sync.Cond
	q     []*coalescedWriter
	head  int // q[head:] are waiting
}

var flushers flushQueue

func (f *flushQueue) push(w *coalescedWriter) {
	f.once.Do(f.start)
	w.queued = time.Now()
	f.mu.Lock()
	f.q = append(f.q, w)
	f.mu.Unlock()
	f.ready.Signal()
}

// pushAll queues many writers at once (the fast path's fan-out of one
// message), with one lock and one wake-up for every flusher. Those writers
// have all of that message already, so they skip the linger: a sleep of a
// millisecond overslept by 5-13 ms on a busy machine (measured), and that
// was the tail of a steady stream's latency.
func (f *flushQueue) pushAll(ws []*coalescedWriter) {
	if len(ws) == 0 {
		return
	}
	f.once.Do(f.start)
	for _, w := range ws {
		w.queued = time.Time{}
	}
	f.mu.Lock()
	f.q = append(f.q, ws...)
	f.mu.Unlock()
	f.ready.Broadcast()
}

func (f *flushQueue) start() {
	f.ready.L = &f.mu
	for range max(1, runtime.GOMAXPROCS(0)) {
		go f.run()
	}
}

// flushLinger is how long a flusher lets a newly dirty connection gather more
// packets before writing it: a bound on the latency coalescing adds.
var flushLinger = time.Millisecond

// flushBatch bounds how many connections one flusher takes at a time, so the
// others get a share of a long queue.
const flushBatch = 32

func (f *flushQueue) run() {
	batch := make([]*coalescedWriter, 0, flushBatch)
	for {
		f.mu.Lock()
		for f.head == len(f.q) {
			f.ready.Wait()
		}
		k := min(len(f.q)-f.head, flushBatch)
		batch = append(batch[:0], f.q[f.head:f.head+k]...)
		clear(f.q[f.head : f.head+k])
		f.head += k
		switch {
		case f.head == len(f.q):
			f.q, f.head = f.q[:0], 0
		case f.head > len(f.q)/2 && f.head > 1024:
			n := copy(f.q, f.q[f.head:])
			f.q, f.head = f.q[:n], 0
		}
		more := f.head < len(f.q)
		f.mu.Unlock()
		if more {
			f.ready.Signal()
		}
		// A connection that became dirty just now may have more packets
		// coming from the same publish: give them flushLinger to join it.
		// Under load the queue is long and its head already old enough.
		if q := batch[0].queued; !q.IsZero() {
			if wait := flushLinger - time.Since(q); wait > 0 {
				time.Sleep(wait)
			}
		}
		for i, w := range batch {
			w.flush()
			batch[i] = nil
		}
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() []byte { return (*(bufPool.Get().(*[]byte)))[:0] }

func putBuf(b []byte) {
	if b == nil || cap(b) > 2*chunkMax {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}
