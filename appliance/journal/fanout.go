package journal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Start restores the retained messages into deliver, then starts the one
// consumer that hands every journaled message to deliver, in journal order,
// from the first message after those already in the journal. deliver is
// called by that consumer, one message at a time, and also by publishers'
// goroutines for messages the journal could not keep (DeliverLive), so it
// must be safe for concurrent use; it must not block for long, or all
// fan-out waits.
//
// In a cluster, Start returns at once and all of that happens once the
// cluster has made or found the streams (cluster.go).
func (j *Journal) Start(deliver func(Message)) error {
	j.deliver = deliver
	fanCtx, stop := context.WithCancel(context.Background())
	j.fanDone = make(chan struct{})
	j.health.stop = make(chan struct{})
	if j.cl != nil {
		j.stopFan = func() {
			stop()
			j.stopFanIterator()
		}
		go j.startClustered(fanCtx)
		go j.watch()
		return nil
	}
	if err := j.startFanOut(fanCtx); err != nil {
		stop()
		return err
	}
	j.stopFan = func() {
		stop()
		j.stopFanIterator()
	}
	go j.watch()
	return nil
}

// startFanOut restores the retained messages and starts the fan-out
// consumer after the journal's last message.
func (j *Journal) startFanOut(fanCtx context.Context) error {
	ctx, cancel := context.WithTimeout(fanCtx, 60*time.Second)
	defer cancel()
	st, err := j.streamState(ctx)
	if err != nil {
		return err
	}
	if err := j.restoreRetained(ctx, st.LastSeq); err != nil {
		return err
	}
	j.lastSeen.Store(st.LastSeq)
	it, err := j.fanConsumer(ctx, j.conn.Load())
	if err != nil {
		return err
	}
	go j.fanOut(fanCtx, it)
	return nil
}

// fanConsumer starts an ordered consumer on c from the message after the
// last one delivered. An ordered consumer recreates itself after a missed
// heartbeat, a gap or a deleted consumer, from the last sequence it
// delivered, under the next name of its series (prefix_1, prefix_2, ...).
func (j *Journal) fanConsumer(ctx context.Context, c *conn) (jetstream.MessagesContext, error) {
	from := j.lastSeen.Load() + 1
	// A series of names of its own per process and per consumer: a
	// consumer of a node that crashed lives on in the cluster for a while
	// (InactiveThreshold, 5 min) under its old name, and so may one this
	// process replaced (its deletion fails while the cluster cannot
	// answer). Reusing a name then is refused ("start sequence can not be
	// updated") until the old one expires: fan-out would stop for minutes.
	prefix := fmt.Sprintf("fanout-%s-%d", j.msgIDPrefix[:len(j.msgIDPrefix)-1], j.fanGen.Add(1))
	cons, err := c.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
		NamePrefix:    prefix,
		// Not for ever (the default): a reset that keeps failing then
		// ends Next with an error, and fanOut starts a consumer of its own.
		MaxResetAttempts: fanResetAttempts,
	})
	if err != nil {
		return nil, fmt.Errorf("journal: fan-out consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(1024, 4*MaxPayload))
	if err != nil {
		j.deleteFanConsumer(c, cons)
		return nil, fmt.Errorf("journal: fan-out consumer: %w", err)
	}
	j.log.Info("journal fan-out: consumer starts", "from_seq", from, "consumer", prefix)
	j.fanMu.Lock()
	j.fanIt, j.fanCons = it, cons
	j.fanMu.Unlock()
	return it, nil
}

// deleteFanConsumer deletes, in the background, the server's consumer
// under an ordered consumer that is being replaced, so that it does not
// linger until it expires. It may fail (the cluster cannot answer, the
// server is gone): the consumer then expires on its own.
func (j *Journal) deleteFanConsumer(c *conn, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || c.nc.IsClosed() {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.js.DeleteConsumer(ctx, StreamName, info.Name)
	}()
}

// stopFanIterator stops the fan-out's iterator; its Next returns
// ErrMsgIteratorClosed. Stop may wait for an ordered consumer's reset in
// progress, so it is called without holding fanMu.
func (j *Journal) stopFanIterator() {
	j.fanMu.Lock()
	it := j.fanIt
	j.fanMu.Unlock()
	if it != nil {
		it.Stop()
	}
}

// fanStall is how long the fan-out has delivered nothing.
type fanStall struct {
	seen  uint64
	since time.Time
}

// checkFanStall replaces the fan-out consumer when it has delivered
// nothing for fanRestartAfter while the stream holds messages after the
// last one it delivered (last, from the stream's info, taken once a second
// in a cluster). An ordered consumer recovers from a lost server by itself,
// and when it cannot its Next returns an error, which fanOut handles; but
// after a quorum loss on an external cluster one once stayed silent for
// minutes with nothing returned, and that node's subscribers got nothing.
// It reports whether it replaced the consumer.
func (j *Journal) checkFanStall(last uint64, now time.Time) bool {
	seen := j.lastSeen.Load()
	if last <= seen || seen != j.stall.seen || j.stall.since.IsZero() {
		j.stall = fanStall{seen: seen, since: now}
		return false
	}
	if now.Sub(j.stall.since) < fanRestartAfter {
		return false
	}
	j.stall.since = now // at most once per fanRestartAfter
	j.log.Warn("journal fan-out: nothing delivered for a while although the stream has more; replacing the consumer",
		"after", fanRestartAfter, "last_seq", seen, "stream_last_seq", last)
	go j.stopFanIterator() // fanOut sees the iterator closed and starts a new consumer
	return true
}

// fanOut delivers, in journal order, until ctx ends. When the embedded
// server is restarted, it starts a new consumer on the new connection.
func (j *Journal) fanOut(ctx context.Context, it jetstream.MessagesContext) {
	defer close(j.fanDone)
	wait := 100 * time.Millisecond
	for {
		c := j.conn.Load()
		var failingSince time.Time
		consumer := ""
		for it != nil {
			m, err := it.Next()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				// An iterator that is closed, or has failed for a while (a
				// cluster that lost its quorum, a consumer the server
				// dropped), is replaced below: the consumer must never stop
				// for good while the daemon runs.
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) || c.nc.IsClosed() || time.Since(failingSince) > fanRestartAfter {
					j.log.Warn("journal fan-out: replacing the consumer", "error", err, "last_seq", j.lastSeen.Load())
					it.Stop()
					j.fanMu.Lock()
					if j.fanCons != nil {
						j.deleteFanConsumer(c, j.fanCons)
						j.fanCons = nil
					}
					j.fanMu.Unlock()
					it = nil
					break
				}
				j.log.Debug("journal fan-out consumer", "error", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			failingSince = time.Time{}
			msg, meta, ok := decodeMeta(m)
			if meta == nil {
				continue // no sequence to go on from
			}
			// The ordered consumer restarts itself under a new name; say
			// where it went on from, and whether anything was skipped.
			seq := meta.Sequence.Stream
			if meta.Consumer != consumer {
				if consumer != "" {
					j.log.Info("journal fan-out: consumer restarted", "from_seq", seq, "consumer", meta.Consumer)
				}
				consumer = meta.Consumer
			}
			if prev := j.lastSeen.Load(); seq != prev+1 {
				j.log.Warn("journal fan-out: sequence skipped", "after", prev, "got", seq)
			}
			// A message it cannot read is passed over, but counted as
			// seen: the fan-out is not behind it (checkFanStall).
			j.lastSeen.Store(seq)
			if ok && msg.Gap == nil { // a gap's messages went out live
				j.deliver(msg)
			}
		}
		// A new consumer from the message after the last one delivered: on
		// the new connection once a restarted server is up, else on this one.
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if c2 := j.conn.Load(); !c2.nc.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			if it, err = j.fanConsumer(cctx, c2); err != nil {
				j.log.Warn("journal fan-out consumer", "error", err)
				wait = min(2*wait, 5*time.Second)
			} else {
				wait = 100 * time.Millisecond
			}
			cancel()
		}
	}
}

// fanRestartAfter is how long the fan-out consumer may keep failing before
// it is replaced by a new one.
const fanRestartAfter = 10 * time.Second

// fanResetAttempts bounds an ordered consumer's attempts at recreating its
// server-side consumer (1 s apart, then 2 s, each up to 10 s).
const fanResetAttempts = 3

// decode turns a stored message into a Message; ok is false for a subject
// that is neither an event nor a gap marker.
func decode(m jetstream.Msg) (Message, bool) {
	msg, _, ok := decodeMeta(m)
	return msg, ok
}

// decodeMeta is decode that also returns the message's metadata, also for
// a message it cannot decode (nil if the metadata cannot be read either).
func decodeMeta(m jetstream.Msg) (Message, *jetstream.MsgMetadata, bool) {
	meta, err := m.Metadata()
	if err != nil {
		return Message{}, nil, false
	}
	msg := Message{Seq: meta.Sequence.Stream, Time: meta.Timestamp}
	if m.Subject() == gapSubject {
		var g Gap
		if jsonUnmarshal(m.Data(), &g) != nil {
			return Message{}, meta, false
		}
		msg.Gap = &g
		return msg, meta, true
	}
	t, retain, err := TopicOf(m.Subject())
	if err != nil {
		return Message{}, meta, false
	}
	msg.Topic, msg.Retain, msg.Payload = t, retain, m.Data()
	if q := m.Headers().Get(hdrQoS); q != "" {
		if n, err := strconv.Atoi(q); err == nil && n >= 0 && n <= 2 {
			msg.QoS = byte(n)
		}
	}
	return msg, meta, true
}

// watch keeps the health current without waiting for the next publish: a
// failing store is retried (which writes the gap marker), and the rate of
// journaled messages is sampled.
func (j *Journal) watch() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-j.health.stop:
			return
		case now := <-t.C:
			j.rate.add(now, j.lastSeen.Load())
			if j.cl != nil {
				j.probe()
				continue
			}
			j.health.mu.Lock()
			failing := j.health.failing && !time.Now().Before(j.health.nextTry)
			j.health.mu.Unlock()
			if failing {
				_ = j.recover()
			}
		}
	}
}

// rateRing keeps a minute of once-a-second samples of the last sequence.
type rateRing struct {
	mu      sync.Mutex
	samples [61]struct {
		at  time.Time
		seq uint64
	}
	n, next int
}

func (r *rateRing) add(at time.Time, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples[r.next].at, r.samples[r.next].seq = at, seq
	r.next = (r.next + 1) % len(r.samples)
	r.n = min(r.n+1, len(r.samples))
}

// perMinute is the number of messages journaled over the last minute,
// scaled up to a minute while fewer samples exist.
func (r *rateRing) perMinute() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n < 2 {
		return 0
	}
	newest := r.samples[(r.next+len(r.samples)-1)%len(r.samples)]
	oldest := r.samples[(r.next+len(r.samples)-r.n)%len(r.samples)]
	span := newest.at.Sub(oldest.at)
	if span <= 0 || newest.seq < oldest.seq {
		return 0
	}
	return float64(newest.seq-oldest.seq) * float64(time.Minute) / float64(span)
}

// EventsPerMinute is how many messages were journaled over the last minute.
func (j *Journal) EventsPerMinute() float64 { return j.rate.perMinute() }
