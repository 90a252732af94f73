package gerrit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

const streamCommand = "gerrit stream-events"

// item is one event on its way to the broker.
type item struct {
	topic    string
	payload  []byte
	key      [32]byte
	sec      int64
	replayed bool
}

func itemSize(it item) int  { return len(it.payload) }
func lineSize(b []byte) int { return len(b) }

// source is one [[gerrit]] server. Two goroutines: run (SSH, parsing,
// replay, deduplication) and publishLoop (the broker), joined by q.
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
	hasPos     bool
	hw         int64 // newest eventCreatedOn handed to the queue
	origin     int64
	recent     *seen // handed to the queue, seconds >= hw-slack
	fromReplay *seen // published by the replay; the stream may deliver them again
	liveHW     int64 // newest eventCreatedOn seen on this connection's stream
	needReplay bool

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
		s.hasPos, s.hw, s.origin = true, p.Second, p.Origin
		s.durSet = p.seenSet(opts.seenMax)
		s.dur = position{Server: s.addr, Second: p.Second, Origin: p.Origin}
	}
	s.recent = s.durSet.clone()
	s.fromReplay = newSeen(opts.seenMax)

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

// dial opens an SSH connection with the host key checked against
// known_hosts. Files are read anew at every attempt.
func (s *source) dial(ctx context.Context) (*ssh.Client, error) {
	signer, err := loadSigner(s.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	check, algos, err := hostKeys(s.cfg.KnownHosts, s.addr)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	var hostErr error
	cfg := &ssh.ClientConfig{
		User: s.cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := check(host, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				hostErr = &HostKeyError{
					Host:        knownhosts.Normalize(host),
					KnownHosts:  s.cfg.KnownHosts,
					Type:        key.Type(),
					Fingerprint: ssh.FingerprintSHA256(key),
					Mismatch:    len(ke.Want) > 0,
				}
				return hostErr
			}
			return err
		},
		HostKeyAlgorithms: algos,
		Timeout:           s.opts.dialTimeout,
	}
	d := net.Dialer{Timeout: s.opts.dialTimeout, KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	// The handshake has no context: a deadline and a close on cancel bound it.
	conn.SetDeadline(time.Now().Add(s.opts.dialTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, s.addr, cfg)
	stop()
	if err != nil {
		conn.Close()
		if hostErr != nil {
			return nil, hostErr
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// stderrTail keeps the start of what the server wrote on stderr, for the
// error message when the command ends ("fatal: ... not permitted").
type stderrTail struct {
	mu  sync.Mutex
	buf []byte
}

func (b *stderrTail) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 1024 - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *stderrTail) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(b.buf), "\uFFFD"))
}

// stream runs one connection until it fails. It returns how long the
// connection lived and why it ended.
func (s *source) stream(ctx context.Context) (time.Duration, error) {
	s.setState(apitype.GerritConnecting)
	// Taken before the stream starts: a first position must not skip events
	// created while the session was being set up.
	attempted := s.opts.now()
	client, err := s.dial(ctx)
	if err != nil {
		return 0, err
	}
	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		client.Close()
		wg.Wait()
	}()

	sess, err := client.NewSession()
	if err != nil {
		return 0, fmt.Errorf("opening a session: %w", err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr := &stderrTail{}
	sess.Stderr = stderr
	if err := sess.Start(streamCommand); err != nil {
		return 0, fmt.Errorf("starting %q: %w", streamCommand, err)
	}
	connected := s.opts.now()
	s.update(func(st *apitype.GerritSource) { st.ConnectedSince = &connected })
	s.log.Info("connected", "server", s.addr)

	var deadMu sync.Mutex
	var deadErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.keepalive(connCtx, client, func(err error) {
			deadMu.Lock()
			deadErr = err
			deadMu.Unlock()
			client.Close()
		})
	}()

	// The reader never blocks on processing: a stalled SSH reader makes
	// Gerrit drop events for this session.
	pending := newQueue[[]byte](s.opts.queueLen, s.opts.queueBytes)
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := readLines(stdout, s.opts.maxLine, func(line []byte, tooLong bool) error {
			switch {
			case tooLong:
				n := s.count(func(st *apitype.GerritSource) *int64 { return &st.LinesTooLong })
				s.log.Warn("skipped a line longer than the limit", "limit", s.opts.maxLine, "count", n)
			case len(bytes.TrimSpace(line)) == 0:
			case !pending.push(line, len(line)):
				s.overflow()
			}
			return nil
		})
		readErr <- err
		pending.close()
	}()

	if s.hasPos {
		s.needReplay = s.dedupe
	} else {
		// First connection ever: nothing to replay, but from now on a drop
		// can be replayed from here even before the first event.
		s.hasPos, s.hw, s.origin = true, attempted.Unix(), attempted.Unix()
		s.durMu.Lock()
		s.dur.Second, s.dur.Origin, s.dirty = s.hw, s.origin, true
		s.durMu.Unlock()
	}
	s.fromReplay, s.liveHW = newSeen(s.opts.seenMax), 0

	for {
		if s.needReplay {
			s.needReplay = false
			s.replay(connCtx)
		}
		s.setState(apitype.GerritStreaming)
		line, ok := pending.pop(connCtx, lineSize)
		if !ok {
			break
		}
		s.handleLive(line)
	}
	lived := s.opts.now().Sub(connected)
	if ctx.Err() != nil {
		return lived, ctx.Err()
	}
	deadMu.Lock()
	err = deadErr
	deadMu.Unlock()
	if err != nil {
		return lived, err
	}
	rerr := <-readErr
	// Say why the command ended, when the server told us.
	waited := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		waited <- sess.Wait()
	}()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(2 * time.Second):
	}
	msg := streamCommand + " ended"
	switch {
	case rerr != nil:
		msg += ": " + rerr.Error()
	case werr != nil:
		msg += ": " + werr.Error()
	}
	if e := stderr.String(); e != "" {
		msg += ": " + truncate([]byte(e), 300)
		if strings.Contains(e, "not permitted") || strings.Contains(e, "capability") {
			msg += " (the account needs the Stream Events global capability)"
		}
	}
	return lived, errors.New(msg)
}

// keepalive detects a half-open connection: a request the server does not
// answer within misses×interval means nothing will come any more.
func (s *source) keepalive(ctx context.Context, c ssh.Conn, dead func(error)) {
	interval := s.opts.keepalive
	if interval <= 0 {
		interval = s.cfg.Keepalive.D()
	}
	if interval <= 0 {
		interval = 15 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var reply chan error // nil when no request is in flight
	var sent time.Time
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-reply:
			if err != nil {
				return // the connection is closing; the reader will say why
			}
			reply, misses = nil, 0
		case <-t.C:
			if reply != nil {
				misses++
				if misses >= s.opts.keepaliveMisses {
					dead(fmt.Errorf("keepalive: no answer from %s for %s; connection presumed dead", s.addr, time.Since(sent).Round(time.Millisecond)))
					return
				}
				continue
			}
			reply, sent = make(chan error, 1), time.Now()
			go func(ch chan error) {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				ch <- err
			}(reply)
		}
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

// routed parses a line and works out its topic and content key.
func (s *source) routed(line []byte) (event, string, [32]byte, bool) {
	ev, err := parseEvent(line)
	if err == nil && ev.hasSec && ev.sec > s.opts.now().Unix()+86400 {
		// A clock far ahead must not push the replay position into the future.
		ev.hasSec = false
	}
	var t string
	if err == nil {
		t, err = ev.topic(s.cfg.Topic)
	}
	var key [32]byte
	if err == nil && s.dedupe {
		key, err = contentKey(line)
	}
	if err != nil {
		s.parseError(line, err)
		return event{}, "", key, false
	}
	return ev, t, key, true
}

func (s *source) handleLive(line []byte) {
	ev, t, key, ok := s.routed(line)
	if !ok {
		return
	}
	s.received(ev)
	if ev.hasSec && ev.sec > s.liveHW {
		// The replay runs ahead of the stream: forget what it published only
		// once the stream itself has moved past it.
		s.liveHW = ev.sec
		s.fromReplay.prune(s.liveHW - s.opts.slack)
	}
	if s.dedupe && s.fromReplay.take(key) {
		s.count(func(st *apitype.GerritSource) *int64 { return &st.DuplicatesSkipped })
		return
	}
	s.enqueue(item{topic: t, payload: line, key: key}, ev)
	if ev.typ == "dropped-output" && s.dedupe {
		// Gerrit dropped events of this session; the log has them.
		s.needReplay = true
	}
}

func (s *source) received(ev event) {
	now := s.opts.now()
	s.update(func(st *apitype.GerritSource) {
		st.LastEvent = &now
		if ev.hasSec {
			c := time.Unix(ev.sec, 0).UTC()
			st.LastEventCreated = &c
		}
	})
}

// enqueue hands an event to the publisher and records it as published.
func (s *source) enqueue(it item, ev event) bool {
	it.sec = s.hw
	if ev.hasSec {
		it.sec = ev.sec
	}
	if !s.q.push(it, len(it.payload)) {
		s.overflow()
		return false
	}
	if s.dedupe {
		s.recent.add(it.key, it.sec)
	}
	if ev.hasSec && ev.sec > s.hw {
		s.hw = ev.sec
		s.recent.prune(s.hw - s.opts.slack)
	}
	return true
}

// replay publishes what the events-log has and this source did not publish,
// from a little before the newest event published. On failure it retries a
// few times, then gives up on this gap (reported by Problems) so that the
// live stream goes on.
func (s *source) replay(ctx context.Context) {
	s.setState(apitype.GerritReplaying)
	from := max(s.hw-s.opts.slack, s.origin)
	var err error
	for attempt := 0; attempt < s.opts.replayAttempts; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(s.opts.backoffMin << attempt)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		var n int
		n, err = s.replayFrom(ctx, from)
		if err == nil {
			s.mu.Lock()
			s.st.Replays++
			s.replayProblem = ""
			s.mu.Unlock()
			s.log.Info("replayed from the events-log", "since", time.Unix(from, 0).UTC(), "published", n)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("events-log replay failed", "err", err, "attempt", attempt+1)
	}
	s.setError(err)
	s.mu.Lock()
	s.st.ReplayFailures++
	s.replayProblem = fmt.Sprintf("events since %s may be missing: replay failed: %v", time.Unix(from, 0).UTC().Format(time.RFC3339), err)
	s.mu.Unlock()
}

type logged struct {
	line  []byte
	ev    event
	topic string
	key   [32]byte
	sec   int64
}

// replayFrom pages through the events-log from t1. The plugin caps each
// answer without saying so, oldest first, at one-second resolution: the next
// page starts at the last second of the previous one, and the events of that
// second already seen are skipped by content. Paging ends when a page brings
// nothing new.
func (s *source) replayFrom(ctx context.Context, t1 int64) (int, error) {
	pw, err := readPassword(s.cfg.EventsLogPasswordFile)
	if err != nil {
		return 0, err
	}
	avail := s.recent.counts() // published before this replay: skip once each
	var overlap map[[32]byte]int
	published := 0
	for page := 0; page < s.opts.maxPages; page++ {
		// t2 is generous: clocks differ, and what the stream also delivers is
		// deduplicated.
		t2 := max(s.opts.now().Unix(), t1) + 3600
		lines, err := fetchEvents(ctx, s.opts.http, s.cfg.EventsLogURL, s.cfg.EventsLogUser, pw, t1, t2, s.opts.maxLine)
		if err != nil {
			return published, err
		}
		evs := make([]logged, 0, len(lines))
		for _, line := range lines {
			ev, t, key, ok := s.routed(line)
			if !ok {
				continue
			}
			sec := t1
			if ev.hasSec {
				sec = ev.sec
			}
			evs = append(evs, logged{line, ev, t, key, sec})
		}
		// The plugin orders by time; keep its order within a second.
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].sec < evs[j].sec })
		last := t1
		if len(evs) > 0 {
			last = max(t1, evs[len(evs)-1].sec)
		}
		next := map[[32]byte]int{}
		fresh := 0
		for _, e := range evs {
			if e.sec == last {
				next[e.key]++
			}
			if e.sec <= t1 && overlap[e.key] > 0 {
				overlap[e.key]--
				continue
			}
			fresh++
			if e.sec < s.origin {
				continue
			}
			if avail[e.key] > 0 {
				avail[e.key]--
				s.count(func(st *apitype.GerritSource) *int64 { return &st.DuplicatesSkipped })
				continue
			}
			s.received(e.ev)
			if s.enqueue(item{topic: e.topic, payload: e.line, key: e.key, replayed: true}, e.ev) {
				s.fromReplay.add(e.key, e.sec)
				published++
			}
		}
		if fresh == 0 {
			if len(evs) > 0 && evs[0].sec == last {
				// The whole page is one second, all seen: the plugin's cap was
				// reached within that second (it cannot page inside one), or
				// the log ends there. Go on from the next second; an empty
				// answer then ends the replay.
				s.log.Warn("events-log returned a whole page within one second; continuing from the next second, events of that second past the page may be missing", "second", last, "page", len(evs))
				t1, overlap = last+1, nil
				continue
			}
			return published, nil
		}
		t1, overlap = last, next
	}
	return published, fmt.Errorf("events-log: still not caught up after %d pages", s.opts.maxPages)
}

// publishLoop hands queued events to the broker, in order, retrying a
// failing broker with backoff: the queue absorbs the outage.
func (s *source) publishLoop(ctx context.Context) {
	defer close(s.pubDone)
	qos := byte(s.cfg.QoS)
	for {
		it, ok := s.q.pop(ctx, itemSize)
		if !ok {
			return
		}
		delay := 50 * time.Millisecond
		for {
			err := safePublish(s.pub, it.topic, it.payload, qos)
			if err == nil {
				break
			}
			n := s.count(func(st *apitype.GerritSource) *int64 { return &st.PublishErrors })
			s.mu.Lock()
			s.publishFail = err.Error()
			s.mu.Unlock()
			if n <= 10 || n%1000 == 0 {
				s.log.Error("broker refused an event; retrying", "err", err, "topic", it.topic, "failures", n)
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(delay*2, s.opts.publishRetryMax)
		}
		s.mu.Lock()
		s.publishFail = ""
		s.st.EventsPublished++
		if it.replayed {
			s.st.Replayed++
		}
		s.mu.Unlock()
		s.durMu.Lock()
		if s.dedupe {
			s.durSet.add(it.key, it.sec)
		}
		if it.sec > s.dur.Second {
			s.dur.Second = it.sec
			s.durSet.prune(it.sec - s.opts.slack)
		}
		s.dirty = true
		s.durMu.Unlock()
	}
}

// safePublish turns a panicking broker into an error: a broker problem must
// not kill the publisher.
func safePublish(p Publisher, topic string, payload []byte, qos byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("broker panicked: %v", r)
		}
	}()
	return p.Publish(topic, payload, false, qos)
}

func (s *source) persistLoop() {
	defer close(s.persistDone)
	t := time.NewTicker(s.opts.persistEvery)
	defer t.Stop()
	for {
		select {
		case <-s.persistStop:
			return
		case <-t.C:
			s.persist()
		}
	}
}

// persist saves the position of what the broker has taken. The first
// connection's time counts as a position too, so that an outage before the
// first event is replayed after a restart.
func (s *source) persist() {
	s.durMu.Lock()
	if !s.dirty {
		s.durMu.Unlock()
		return
	}
	p := s.dur
	p.Recent = entriesOf(s.durSet)
	s.dirty = false
	s.durMu.Unlock()
	if err := savePosition(s.statePath, p); err != nil {
		s.log.Error("cannot save position", "file", s.statePath, "err", err)
		s.durMu.Lock()
		s.dirty = true
		s.durMu.Unlock()
	}
}
