package gerrit

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// item is one event on its way to the broker.
type item struct {
	topic    string
	payload  []byte
	key      [32]byte
	sec      int64 // eventCreatedOn, or the best guess for an event without
	dated    bool  // sec is the event's own
	replayed bool
}

func itemSize(it item) int  { return len(it.payload) }
func lineSize(b []byte) int { return len(b) }

// source is one [[gerrit]] server. Two goroutines: run (SSH, parsing,
// replay, deduplication) and publishLoop (the broker), joined by q. The
// parts live in stream.go (SSH), order.go and replay.go (what goes out, in
// which order), eventslog.go (the plugin) and publish.go (the broker and
// the saved position).
type source struct {
	cfg       config.Gerrit
	addr      string
	opts      options
	pub       Publisher
	log       *slog.Logger
	statePath string
	dedupe    bool // events-log configured: keep content keys

	cancelRun, cancelPub context.CancelFunc
	runDone, pubDone     chan struct{}
	persistStop          chan struct{}
	persistDone          chan struct{}
	q                    *queue[item]
	stopOnce             sync.Once

	mu            sync.Mutex
	st            apitype.GerritSource
	replayProblem string
	publishFail   string

	// Owned by the run goroutine.
	hasPos   bool
	seq      *sequencer
	fetchLog func(ctx context.Context, t1 int64) ([][]byte, error) // nil: the events-log over HTTP; tests replace it

	// Owned by publishLoop; the persister reads it under durMu.
	durMu  sync.Mutex
	dur    position
	durSet *seen
	dirty  bool
}

func startSource(cfg config.Gerrit, stateDir string, pub Publisher, log *slog.Logger, opts options) *source {
	s := &source{
		cfg:         cfg,
		addr:        net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		opts:        opts,
		pub:         pub,
		log:         log.With("gerrit", cfg.Name),
		statePath:   statePath(stateDir, cfg.Name),
		dedupe:      cfg.EventsLogURL != "",
		runDone:     make(chan struct{}),
		pubDone:     make(chan struct{}),
		persistStop: make(chan struct{}),
		persistDone: make(chan struct{}),
		q:           newQueue[item](opts.queueLen, opts.queueBytes),
	}
	s.st = apitype.GerritSource{Name: cfg.Name, Server: s.addr, State: apitype.GerritConnecting}
	s.dur = position{Server: s.addr}
	s.durSet = newSeen(opts.seenMax)
	p, ok, err := loadPosition(s.statePath)
	switch {
	case err != nil:
		s.log.Warn("ignoring saved position", "file", s.statePath, "err", err)
	case ok && p.Server != s.addr:
		s.log.Info("saved position is for another server; starting without", "file", s.statePath, "server", p.Server)
	case ok:
		s.hasPos = true
		s.durSet = p.seenSet(opts.seenMax)
		s.dur = position{Server: s.addr, Second: p.Second, Origin: p.Origin}
	}
	s.seq = newSequencer(opts.slack, opts.seenMax)
	s.seq.hw, s.seq.origin = s.dur.Second, s.dur.Origin
	s.seq.pub = s.durSet.clone()

	runCtx, cancelRun := context.WithCancel(context.Background())
	pubCtx, cancelPub := context.WithCancel(context.Background())
	s.cancelRun, s.cancelPub = cancelRun, cancelPub
	go s.run(runCtx)
	go s.publishLoop(pubCtx)
	go s.persistLoop()
	return s
}

// stop ends the source: the stream first, then whatever the broker takes
// from the queue within drainTimeout, then the position is saved. Events
// still queued are not recorded as published, so a later start replays them.
func (s *source) stop() {
	s.stopOnce.Do(func() {
		s.cancelRun()
		<-s.runDone
		s.q.close()
		t := time.NewTimer(s.opts.drainTimeout)
		select {
		case <-s.pubDone:
		case <-t.C:
			s.cancelPub()
			select {
			case <-s.pubDone:
			case <-time.After(s.opts.drainTimeout):
				s.log.Error("broker did not return from Publish; stopping anyway")
			}
		}
		t.Stop()
		s.cancelPub()
		close(s.persistStop)
		<-s.persistDone
		s.persist()
		s.mu.Lock()
		s.st.State = apitype.GerritStopped
		s.st.RetryAt, s.st.ConnectedSince = nil, nil
		s.mu.Unlock()
	})
}

func (s *source) status() apitype.GerritSource {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	st.QueueLength = s.q.len()
	return st
}

func (s *source) problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	name := strconv.Quote(s.cfg.Name)
	switch s.st.State {
	case apitype.GerritBackingOff:
		out = append(out, fmt.Sprintf("gerrit %s: backing off after: %s", name, s.st.LastError))
	case apitype.GerritConnecting:
		p := fmt.Sprintf("gerrit %s: connecting to %s", name, s.addr)
		if s.st.LastError != "" {
			p += " (last error: " + s.st.LastError + ")"
		}
		out = append(out, p)
	case apitype.GerritReplaying:
		out = append(out, fmt.Sprintf("gerrit %s: replaying missed events from the events-log", name))
	case apitype.GerritStopped:
		out = append(out, fmt.Sprintf("gerrit %s: stopped", name))
	}
	if s.replayProblem != "" {
		out = append(out, fmt.Sprintf("gerrit %s: %s", name, s.replayProblem))
	}
	if s.publishFail != "" {
		out = append(out, fmt.Sprintf("gerrit %s: the broker refuses events (%d queued): %s", name, s.q.len(), s.publishFail))
	}
	return out
}

func (s *source) update(f func(st *apitype.GerritSource)) {
	s.mu.Lock()
	f(&s.st)
	s.mu.Unlock()
}

func (s *source) setState(state string) {
	s.update(func(st *apitype.GerritSource) {
		if state != apitype.GerritBackingOff {
			st.RetryAt = nil
		}
		st.State = state
	})
}

func (s *source) setError(err error) {
	now := s.opts.now()
	s.update(func(st *apitype.GerritSource) {
		st.LastError = err.Error()
		st.LastErrorTime = &now
	})
}

// run connects, streams and reconnects until stopped.
func (s *source) run(ctx context.Context) {
	defer close(s.runDone)
	delay := s.opts.backoffMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.update(func(st *apitype.GerritSource) { st.Reconnects++ })
		}
		lived, err := s.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if lived >= s.opts.goodAfter {
			delay = s.opts.backoffMin
		}
		// Jitter spreads the reconnects of many appliances after a Gerrit restart.
		wait := time.Duration(float64(delay) * (0.75 + 0.5*rand.Float64()))
		retry := s.opts.now().Add(wait)
		s.setError(err)
		s.update(func(st *apitype.GerritSource) {
			st.State = apitype.GerritBackingOff
			st.RetryAt = &retry
			st.ConnectedSince = nil
		})
		s.log.Warn("stream lost; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(time.Duration(float64(delay)*s.opts.backoffFactor), s.opts.backoffMax)
	}
}

func (s *source) count(field func(st *apitype.GerritSource) *int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := field(&s.st)
	*p++
	return *p
}

func (s *source) overflow() {
	n := s.count(func(st *apitype.GerritSource) *int64 { return &st.QueueOverflow })
	if n <= 10 || n%1000 == 0 {
		s.log.Error("queue full; event dropped", "dropped", n)
	}
}

func (s *source) parseError(line []byte, err error) {
	n := s.count(func(st *apitype.GerritSource) *int64 { return &st.ParseErrors })
	// Bounded logging: a server gone mad must not fill the disk.
	if n <= 10 || n%1000 == 0 {
		s.log.Warn("skipped a line that is not an event", "err", err, "line", truncate(line, 200), "count", n)
	}
}
