package gerrit

import (
	"context"
	"fmt"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// replay publishes what the events-log has and this source did not
// publish, from a little before the newest event published, and reports
// whether the gap is filled. It runs on the run goroutine, so the live
// stream waits meanwhile and only one replay runs at a time. On failure it
// retries a few times, each time from where the previous attempt got to,
// then gives up on this gap (reported by Problems) so that the live stream
// goes on.
func (s *source) replay(ctx context.Context) bool {
	s.setState(apitype.GerritReplaying)
	defer s.setState(apitype.GerritStreaming)
	since := s.seq.replayFrom()
	var err error
	total := 0
	for attempt := 0; attempt < s.opts.replayAttempts; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(s.opts.backoffMin << attempt)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
		var n int
		n, err = s.replayOnce(ctx, s.seq.replayFrom())
		total += n
		if err == nil {
			s.mu.Lock()
			s.st.Replays++
			s.replayProblem = ""
			s.mu.Unlock()
			s.log.Info("replayed from the events-log", "since", time.Unix(since, 0).UTC(), "published", total)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.log.Warn("events-log replay failed", "err", err, "attempt", attempt+1)
	}
	s.setError(err)
	s.mu.Lock()
	s.st.ReplayFailures++
	s.replayProblem = fmt.Sprintf("events since %s may be missing: replay failed: %v",
		time.Unix(s.seq.replayFrom(), 0).UTC().Format(time.RFC3339), err)
	s.mu.Unlock()
	return false
}

// replayOnce walks the events-log from t1 and publishes what is new.
func (s *source) replayOnce(ctx context.Context, t1 int64) (int, error) {
	fetch := s.fetchLog
	if fetch == nil {
		pw, err := readPassword(s.cfg.EventsLogPasswordFile)
		if err != nil {
			return 0, err
		}
		fetch = func(ctx context.Context, t1 int64) ([][]byte, error) {
			// t2 is generous: clocks differ, and what the stream also
			// delivers is deduplicated.
			t2 := max(s.opts.now().Unix(), t1) + 3600
			return fetchEvents(ctx, s.opts.http, s.cfg.EventsLogURL, s.cfg.EventsLogUser, pw, t1, t2, s.opts.maxLine)
		}
	}
	w := logWalker{
		fetch: fetch,
		parse: func(line []byte) (logEvent, bool) {
			ev, t, key, ok := s.routed(line)
			return logEvent{line: line, ev: ev, topic: t, key: key}, ok
		},
		maxPages: s.opts.maxPages,
		edge:     func() int64 { return s.opts.now().Unix() - s.opts.slack },
		fullSecond: func(sec int64, n int) {
			if n > 1 {
				s.log.Warn("events-log returned a whole page within one second; continuing from the next second, events of that second past the page may be missing", "second", sec, "page", n)
			}
		},
	}
	avail := s.seq.pub.counts() // published before this replay: skip once each
	published := 0
	err := w.walk(ctx, t1, func(e logEvent) {
		if e.sec < s.seq.origin || isMarker(e.ev) {
			// Older than this source, or a marker some server logged: a
			// dropped-output is about one session, never an event.
			return
		}
		if avail[e.key] > 0 {
			avail[e.key]--
			s.count(func(st *apitype.GerritSource) *int64 { return &st.DuplicatesSkipped })
			return
		}
		s.received(e.ev)
		if s.enqueue(item{topic: e.topic, payload: e.line, key: e.key}, e.ev, true, e.sec) {
			published++
		}
	})
	return published, err
}
