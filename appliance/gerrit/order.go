package gerrit

import (
	"context"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// sequencer decides which events go to the broker so that each goes out
// once, in Gerrit's order, when the live stream and events-log replays
// overlap. Owned by the run goroutine.
//
// Replays run one at a time, and the live stream waits (in the reader's
// queue) while one runs, so what is published is: everything up to the
// gap, then the replay in the log's order, then the live events the replay
// did not already publish. Two content-keyed records make that work:
//
//   - pub holds what was published with eventCreatedOn >= hw-slack (and
//     any later event without a time). A replay starts at hw-slack and
//     skips what pub holds: the overlap of the replay with what went before.
//   - fromLog holds what replays of this connection published that the
//     stream has not delivered yet. The stream skips it: the overlap of the
//     stream with the replay. An entry goes once the stream is slack
//     seconds past it, or when the stream delivers it.
type sequencer struct {
	slack   int64
	origin  int64 // the first connection's time: replay never goes further back
	hw      int64 // newest eventCreatedOn published
	pub     *seen
	fromLog *seen
	liveHW  int64 // newest eventCreatedOn on this connection's stream
	max     int
}

func newSequencer(slack int64, max int) *sequencer {
	return &sequencer{slack: slack, max: max, pub: newSeen(max), fromLog: newSeen(max)}
}

// connected starts a new connection's stream: it delivers only events
// created from now on, none a replay of an earlier connection published.
func (q *sequencer) connected() {
	q.fromLog, q.liveHW = newSeen(q.max), 0
}

// replayFrom is where a replay starts: a little before the newest event
// published, since events of one second may arrive in any order.
func (q *sequencer) replayFrom() int64 {
	return max(q.hw-q.slack, q.origin)
}

// live reports whether an event of the stream is new, and forgets it in
// fromLog when a replay already published it.
func (q *sequencer) live(key [32]byte, sec int64, dated bool) bool {
	if dated && sec > q.liveHW {
		q.liveHW = sec
		q.fromLog.prune(q.liveHW - q.slack)
	}
	return !q.fromLog.take(key)
}

// published records an event handed to the broker; sec is its
// eventCreatedOn, or for an event without one the best guess of it.
func (q *sequencer) published(key [32]byte, sec int64, dated, replayed bool) {
	q.pub.add(key, sec, dated)
	if replayed {
		q.fromLog.add(key, sec, dated)
	}
	if dated && sec > q.hw {
		q.hw = sec
		q.pub.prune(q.hw - q.slack)
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

func isMarker(ev event) bool { return ev.typ == "dropped-output" }

// begin starts a connection's stream, attempted being when the connection
// was attempted. The first connection ever has nothing to replay, but sets
// the position a later drop is replayed from, even before the first event.
// Any later one replays what was missed while disconnected, first: the
// stream waits in pending meanwhile.
func (s *source) begin(ctx context.Context, attempted time.Time) {
	s.seq.connected()
	if !s.hasPos {
		s.hasPos, s.seq.hw, s.seq.origin = true, attempted.Unix(), attempted.Unix()
		s.durMu.Lock()
		s.dur.Second, s.dur.Origin, s.dirty = s.seq.hw, s.seq.origin, true
		s.durMu.Unlock()
	} else if s.dedupe {
		s.replay(ctx)
	}
	s.setState(apitype.GerritStreaming)
}

// handleLine takes one line from the reader: nil stands for lines the
// reader had to drop.
func (s *source) handleLine(ctx context.Context, line []byte) {
	if line == nil {
		s.fillGap(ctx, s.localMarker())
		return
	}
	s.handleLive(ctx, line)
}

// handleLive takes one line of the stream.
func (s *source) handleLive(ctx context.Context, line []byte) {
	ev, t, key, ok := s.routed(line)
	if !ok {
		return
	}
	s.received(ev)
	if isMarker(ev) {
		s.droppedOutput(ctx, item{topic: t, payload: line, key: key})
		return
	}
	if s.dedupe && !s.seq.live(key, ev.sec, ev.hasSec) {
		s.count(func(st *apitype.GerritSource) *int64 { return &st.DuplicatesSkipped })
		return
	}
	s.enqueue(item{topic: t, payload: line, key: key}, ev, false, s.seq.hw)
}

// droppedOutput handles Gerrit's word that it left events out of this
// session.
func (s *source) droppedOutput(ctx context.Context, marker item) {
	n := s.count(func(st *apitype.GerritSource) *int64 { return &st.DroppedOutput })
	if n <= 10 || n%1000 == 0 {
		s.log.Warn("gerrit left events out of the stream (dropped-output)", "count", n, "replay", s.dedupe)
	}
	s.fillGap(ctx, marker)
}

// fillGap deals with events missing from the stream at this point. The
// rule for the marker: when the events-log filled the gap, it is not
// published (the events it announces were, in their place); when the gap
// could not be filled (no events-log, or the replay failed), it is
// published here, so that consumers know events are missing before it.
// Either way its own time is not a position: the events it announces are
// older than it.
func (s *source) fillGap(ctx context.Context, marker item) {
	if s.dedupe && s.replay(ctx) {
		return
	}
	if ctx.Err() != nil {
		return // stopping: a restart replays from the saved position
	}
	marker.sec = s.seq.hw
	if !s.q.push(marker, len(marker.payload)) {
		s.overflow()
	}
}

// localMarker stands for the lines the reader itself had to drop: a
// dropped-output of our own, as Gerrit would have sent.
func (s *source) localMarker() item {
	line := []byte(`{"type":"dropped-output"}`)
	_, t, key, _ := s.routed(line)
	return item{topic: t, payload: line, key: key}
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

// enqueue hands an event to the publisher and records it as published. An
// event without eventCreatedOn belongs to second undated.
func (s *source) enqueue(it item, ev event, replayed bool, undated int64) bool {
	it.sec, it.dated, it.replayed = undated, ev.hasSec, replayed
	if ev.hasSec {
		it.sec = ev.sec
	}
	if !s.q.push(it, len(it.payload)) {
		s.overflow()
		return false
	}
	if s.dedupe {
		s.seq.published(it.key, it.sec, it.dated, replayed)
	} else if it.dated && it.sec > s.seq.hw {
		s.seq.hw = it.sec
	}
	return true
}
