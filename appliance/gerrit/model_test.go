package gerrit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// sim is a Gerrit for the ordering code alone (sequencer, live handling,
// replay, events-log paging), without SSH, HTTP or a broker, so that a fuzz
// target can try many interleavings of event creation, sessions, drops,
// dropped-output, reader overflow, page caps and failing log requests. Its
// log files every event under the second it was created in, as the
// plugin does, and caps answers at cap events, oldest first.
type sim struct {
	t     testing.TB
	in    []byte // the fuzzer's choices
	s     *source
	ctx   context.Context
	cap   int
	log   []simEvent
	sec   int64 // the clock
	inSec int   // events created in this second: at most cap, or paging cannot pass it
	// The session: lines read and waiting, and what Gerrit does next.
	up        bool
	pending   [][]byte // nil: lines the reader had to drop
	skip      int
	marker    []byte
	readerGap int  // events the reader still drops
	lostLines bool // the reader dropped lines and has not marked it yet
	failNext  bool
	out       [][]byte // what reached the broker
	trace     []string // what happened, for a failure's message
}

func (m *sim) note(format string, args ...any) {
	m.trace = append(m.trace, fmt.Sprintf(format, args...))
}

type simEvent struct {
	sec  int64
	line []byte
}

// choice takes the fuzzer's next choice in [0, n); 0 when it has none left.
func (m *sim) choice(n int) int {
	if len(m.in) == 0 {
		return 0
	}
	c := int(m.in[0]) % n
	m.in = m.in[1:]
	return c
}

func newSim(t testing.TB, in []byte) *sim {
	m := &sim{t: t, in: in, sec: 1700000000, ctx: context.Background()}
	m.cap = 1 + m.choice(6)
	cfg := config.Gerrit{Name: "sim", Topic: "gerrit", EventsLogURL: "http://sim.invalid/"}
	opts := defaultOptions()
	opts.backoffMin = time.Nanosecond
	opts.now = func() time.Time { return time.Unix(m.sec, 0) }
	s := &source{
		cfg: cfg, opts: opts, log: slog.New(slog.NewTextHandler(io.Discard, nil)), dedupe: true,
		q: newQueue[item](1<<20, 1<<30), seq: newSequencer(opts.slack, opts.seenMax),
		st: apitype.GerritSource{Name: "sim"},
	}
	s.fetchLog = m.fetch
	m.s = s
	return m
}

// fetch answers an events-log request; Gerrit goes on creating events
// meanwhile, which the live stream gets.
func (m *sim) fetch(_ context.Context, t1 int64) ([][]byte, error) {
	m.create(m.choice(3))
	if m.failNext {
		m.failNext = false
		m.note("fetch t1=%d: fails", t1)
		return nil, errors.New("events-log: 503")
	}
	var out [][]byte
	var seqs []int
	for i, e := range m.log {
		if e.sec >= t1 && len(out) < m.cap {
			out = append(out, e.line)
			seqs = append(seqs, i)
		}
	}
	m.note("fetch t1=%d: %v", t1, seqs)
	return out, nil
}

// create makes n events, some without eventCreatedOn, and streams them.
func (m *sim) create(n int) {
	for range n {
		if m.inSec >= m.cap || m.choice(2) == 1 {
			m.sec++
			m.inSec = 0
		}
		m.inSec++
		seq := len(m.log)
		line := fmt.Sprintf(`{"testSeq":%d,"eventCreatedOn":%d,"type":"t","project":"p"}`, seq, m.sec)
		if m.choice(4) == 0 {
			line = fmt.Sprintf(`{"testSeq":%d,"type":"u","project":"p"}`, seq)
		}
		m.log = append(m.log, simEvent{m.sec, []byte(line)})
		m.note("create %s (log %d)", line, m.sec)
		m.stream([]byte(line))
	}
}

// stream is Gerrit writing a line to the session, and the reader taking it.
func (m *sim) stream(line []byte) {
	if !m.up {
		return
	}
	if m.skip > 0 {
		m.note("gerrit skips it")
		if m.skip--; m.skip == 0 {
			m.read(m.marker)
		}
		return
	}
	m.read(line)
}

func (m *sim) read(line []byte) {
	if m.readerGap > 0 {
		m.note("reader drops %s", line)
		m.readerGap--
		m.lostLines = true
		return
	}
	if m.lostLines {
		m.pending = append(m.pending, nil)
		m.lostLines = false
	}
	m.pending = append(m.pending, line)
}

func (m *sim) connect() {
	m.note("connect")
	m.up = true
	m.s.begin(m.ctx, time.Unix(m.sec, 0))
}

// handle lets the source take n lines of the session.
func (m *sim) handle(n int) {
	for ; n > 0 && len(m.pending) > 0; n-- {
		line := m.pending[0]
		m.pending = m.pending[1:]
		m.note("handle %s", line)
		n0 := m.s.q.len()
		m.s.handleLine(m.ctx, line)
		m.note("  queued %d", m.s.q.len()-n0)
	}
}

func (m *sim) run() {
	m.connect()
	for len(m.in) > 0 {
		switch m.choice(9) {
		case 0, 1:
			m.create(1 + m.choice(4))
		case 2, 3:
			m.handle(1 + m.choice(8))
		case 4: // the connection drops; lines not read yet are lost
			if m.up {
				// The lines already read are handled, as the stream's loop
				// drains pending before the connection counts as lost.
				m.pending = m.pending[:m.choice(len(m.pending)+1)]
				m.note("drop; %d lines read", len(m.pending))
				m.up, m.skip, m.readerGap, m.lostLines = false, 0, 0, false
				m.handle(len(m.pending))
			} else {
				m.connect()
			}
		case 5: // Gerrit's queue for the session overflows
			if m.up && m.skip == 0 {
				m.skip = 1 + m.choice(6)
				m.marker = []byte(`{"type":"dropped-output"}`)
				if m.choice(2) == 0 {
					m.marker = []byte(fmt.Sprintf(`{"type":"dropped-output","eventCreatedOn":%d}`, m.sec+int64(m.skip)))
				}
			}
		case 6:
			m.failNext = true
		case 7: // the reader's own queue overflows
			m.readerGap = 1 + m.choice(5)
		case 8:
			m.sec++
			m.inSec = 0
		}
	}
	// The end: Gerrit finishes what it started, the source catches up.
	if m.up {
		if m.skip > 0 {
			m.skip = 0
			m.read(m.marker)
		}
		if m.lostLines || m.readerGap > 0 {
			m.pending, m.lostLines, m.readerGap = append(m.pending, nil), false, 0
		}
	} else {
		m.connect()
	}
	for len(m.pending) > 0 {
		m.handle(len(m.pending))
	}
	m.s.q.close()
	for {
		it, ok := m.s.q.pop(m.ctx, itemSize)
		if !ok {
			break
		}
		m.out = append(m.out, it.payload)
	}
}

// check: every event exactly once, in the order Gerrit created them, and
// no marker (every gap was filled).
func (m *sim) check() {
	ok := len(m.out) == len(m.log)
	for i := 0; ok && i < len(m.out); i++ {
		ok = bytes.Equal(m.out[i], m.log[i].line)
	}
	if !ok {
		var got, want []string
		for _, b := range m.out {
			got = append(got, string(b))
		}
		for _, e := range m.log {
			want = append(want, string(e.line))
		}
		m.t.Fatalf("page cap %d:\ngot  %q\nwant %q\n%s", m.cap, got, want, strings.Join(m.trace, "\n"))
	}
}

// FuzzOrdering: whatever the interleaving, every event reaches the broker
// once and in order, as long as the events-log answers (a failure is
// retried) and no second holds more events than a page.
func FuzzOrdering(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{2, 0, 3, 0, 3, 4, 0, 3, 0, 3, 4, 2, 7, 5, 2, 0, 3, 2, 7})
	f.Add([]byte{0, 0, 3, 5, 2, 0, 3, 0, 3, 2, 7, 0, 3, 4, 0, 3, 6, 4, 2, 7, 3})
	f.Add([]byte{4, 1, 3, 1, 3, 1, 3, 4, 6, 4, 7, 2, 0, 3, 5, 4, 0, 3, 2, 7, 3, 0, 3, 1, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 2000 {
			return
		}
		m := newSim(t, in)
		m.run()
		m.check()
	})
}

// TestOrderingModel runs the model through fixed pseudo-random schedules,
// so that plain `go test` covers many interleavings, not only the seeds.
func TestOrderingModel(t *testing.T) {
	x := uint32(1)
	for i := range 3000 {
		in := make([]byte, 20+i%200)
		for j := range in {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			in[j] = byte(x)
		}
		m := newSim(t, in)
		m.run()
		m.check()
	}
}
