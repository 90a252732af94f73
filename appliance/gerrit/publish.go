package gerrit

import (
	"context"
	"fmt"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// The broker side of a source: the queue's consumer, and the position it
// saves.

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
			s.durSet.add(it.key, it.sec, it.dated)
		}
		if it.dated && it.sec > s.dur.Second {
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
