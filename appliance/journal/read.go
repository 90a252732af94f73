package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var jsonUnmarshal = json.Unmarshal

// Bounds describes what the journal holds now.
type Bounds struct {
	FirstSeq, LastSeq   uint64
	FirstTime, LastTime time.Time
	Messages, Bytes     uint64
}

func (j *Journal) streamState(ctx context.Context) (jetstream.StreamState, error) {
	s, err := j.js().Stream(ctx, StreamName)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("journal: %w", err)
	}
	return s.CachedInfo().State, nil
}

// Bounds returns the first and last messages' sequences and times, and
// the journal's size.
func (j *Journal) Bounds(ctx context.Context) (Bounds, error) {
	st, err := j.streamState(ctx)
	if err != nil {
		return Bounds{}, err
	}
	b := Bounds{FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, FirstTime: st.FirstTime, LastTime: st.LastTime, Messages: st.Msgs, Bytes: st.Bytes}
	if st.Msgs == 0 {
		// An empty stream reports its next sequence as the first.
		b.FirstTime, b.LastTime = time.Time{}, time.Time{}
	}
	return b, nil
}

// From is where a reader starts: at a sequence, at a time, or (zero) with
// the next message journaled.
type From struct {
	Seq  uint64
	Time time.Time
}

func (f From) policy() (jetstream.DeliverPolicy, uint64, *time.Time) {
	switch {
	case f.Seq > 0:
		return jetstream.DeliverByStartSequencePolicy, f.Seq, nil
	case !f.Time.IsZero():
		t := f.Time
		return jetstream.DeliverByStartTimePolicy, 0, &t
	}
	return jetstream.DeliverNewPolicy, 0, nil
}

// readerFilters are the subject filters of a reader of topic filter f: its
// subjects and the gap markers, which concern every reader.
func readerFilters(f string) []string {
	return append(FilterSubjects(f), gapSubject)
}

// History calls fn for the messages matching filter from from, in order,
// up to limit messages, and returns after the last one journaled when it
// was called. The subject filters make the store skip what does not
// match, so a narrow filter does not cost a scan of the whole journal.
func (j *Journal) History(ctx context.Context, filter string, from From, limit int, fn func(Message) error) error {
	return j.fetch(ctx, StreamName, readerFilters(filter), from, limit, func(m jetstream.Msg) error {
		msg, ok := decode(m)
		if !ok {
			return nil
		}
		return fn(msg)
	})
}

// fetch reads what an ephemeral consumer of stream has pending when it is
// made, at most limit messages (0: all).
//
// A read consumer acknowledges nothing, so a message it sent that never
// arrived is gone from its point of view: that happens when a pull outlives
// the client's wait for it (a busy machine, a replica catching up), and the
// next pull goes on after the lost messages. Each message's consumer
// sequence shows such a hole; the read then starts again with a new
// consumer after the last message it handed to fn.
func (j *Journal) fetch(ctx context.Context, stream string, filters []string, from From, limit int, fn func(jetstream.Msg) error) error {
	// In a cluster, the read consumer is placed on any replica of the
	// stream, which may be behind its leader (a node just restarted, still
	// catching up): what the leader holds now is how far the read must go.
	var last uint64
	if j.cl != nil {
		err := j.transient(ctx, func() error {
			s, err := j.js().Stream(ctx, stream)
			if err == nil {
				last = s.CachedInfo().State.LastSeq
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("journal: reading: %w", err)
		}
	}
	var seen uint64 // the stream sequence of the last message handed to fn
	read := 0
	for restart := 0; ; restart++ {
		start := from
		if seen > 0 {
			start = From{Seq: seen + 1}
		}
		if limit > 0 && read >= limit {
			return nil
		}
		next := uint64(1) // the consumer sequence of the next message
		err := j.fetchOnce(ctx, stream, filters, start, max(limit-read, 0), last, func(m jetstream.Msg) error {
			if meta, err := m.Metadata(); err == nil {
				if meta.Sequence.Consumer != next {
					return &lostDeliveries{from: next, to: meta.Sequence.Consumer - 1}
				}
				next++
				seen = meta.Sequence.Stream
			}
			read++
			return fn(m)
		})
		var lost *lostDeliveries
		if !errors.As(err, &lost) || restart == maxReadRestarts {
			return err
		}
		j.log.Debug("journal: a read lost messages on their way; reading again after the last one received", "stream", stream, "lost", lost.Error(), "after_seq", seen)
	}
}

// maxReadRestarts bounds how often one read starts again after lost
// deliveries.
const maxReadRestarts = 20

// lostDeliveries: the read consumer sent messages from..to (its own
// sequence) that never arrived.
type lostDeliveries struct{ from, to uint64 }

func (e *lostDeliveries) Error() string {
	return fmt.Sprintf("journal: reading: deliveries %d to %d of the read consumer never arrived", e.from, e.to)
}

// fetchOnce is one read consumer's part of fetch; last is the stream
// leader's last sequence when the read began (cluster only).
func (j *Journal) fetchOnce(ctx context.Context, stream string, filters []string, from From, limit int, last uint64, fn func(jetstream.Msg) error) error {
	policy, seq, t := from.policy()
	if policy == jetstream.DeliverNewPolicy {
		policy = jetstream.DeliverAllPolicy
	}
	if j.cl != nil && (last == 0 || policy == jetstream.DeliverByStartSequencePolicy && seq > last) {
		return nil // nothing journaled there when the read began
	}
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
		DeliverPolicy:     policy,
		OptStartSeq:       seq,
		OptStartTime:      t,
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	var cons jetstream.Consumer
	err := j.transient(ctx, func() (err error) {
		cons, err = j.js().CreateConsumer(ctx, stream, cfg)
		return err
	})
	if err != nil {
		return fmt.Errorf("journal: reading: %w", err)
	}
	info := cons.CachedInfo()
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = j.js().DeleteConsumer(dctx, stream, info.Name)
	}()
	if j.cl != nil {
		return fetchClustered(ctx, cons, last, limit, fn)
	}
	pending := int(info.NumPending)
	if limit > 0 && pending > limit {
		pending = limit
	}
	for pending > 0 {
		n, err := fetchBatch(ctx, cons, min(pending, 256), fn)
		if err != nil {
			return err
		}
		if n == 0 {
			// Expired under us (max_age) between counting and reading.
			return nil
		}
		pending -= n
	}
	return nil
}

// fetchClustered reads like fetch in a cluster, where a new consumer's
// count of pending messages may still be 0 when it is created, and where
// the consumer may be on a replica that lags the stream's leader. It reads
// until it has seen the stream up to last (the leader's last sequence when
// the read began); or until the consumer has nothing pending, has looked
// at the stream up to last (Delivered.Stream: a filtered consumer moves
// past what does not match) and everything it sent has arrived; or until a
// wait of a second brings nothing on a replica that is not behind (a
// filter nothing matches costs that wait). A replica that stays behind for
// replicaCatchUp makes the read fail rather than return a journal cut
// short. A pull made just after the consumer was created may be turned
// away at once; it is made again.
func fetchClustered(ctx context.Context, cons jetstream.Consumer, last uint64, limit int, fn func(jetstream.Msg) error) error {
	read, early := 0, 0
	var behindSince time.Time
	// done reports whether the consumer has looked at the stream up to
	// last; a replica that is behind is waited for, up to replicaCatchUp.
	done := func() (bool, error) {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, fmt.Errorf("journal: reading: %w", err)
		}
		// Delivered.Stream counts what the consumer sent, which may still
		// be on its way here: done only once all of it has been read.
		if info.NumPending == 0 && info.Delivered.Stream >= last && uint64(read) >= info.Delivered.Consumer {
			return true, nil
		}
		if behindSince.IsZero() {
			behindSince = time.Now()
		} else if time.Since(behindSince) > replicaCatchUp {
			return false, fmt.Errorf("journal: reading: after %s, the replica serving this read has looked at the stream up to %d of %d and sent %d messages, %d arrived", replicaCatchUp, info.Delivered.Stream, last, info.Delivered.Consumer, read)
		}
		return false, nil
	}
	for limit == 0 || read < limit {
		size := 256
		if limit > 0 {
			size = min(size, limit-read)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		began := time.Now()
		batch, err := cons.Fetch(size, jetstream.FetchMaxWait(time.Second), jetstream.FetchMaxBytes(MaxPayload+64<<10))
		if errors.Is(err, nats.ErrNoResponders) && early < 50 {
			// The consumer's leader does not listen yet.
			early++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: reading: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			read++
			if err := fn(m); err != nil {
				return err
			}
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			if meta.Sequence.Stream >= last || limit > 0 && read >= limit {
				return nil // the pull ends with the consumer, deleted by fetch
			}
			if meta.NumPending == 0 {
				if ok, err := done(); ok || err != nil {
					return err
				}
			}
		}
		berr := batch.Error()
		if n == 0 && errors.Is(berr, nats.ErrNoResponders) && early < 50 {
			early++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if berr != nil && !errors.Is(berr, jetstream.ErrNoMessages) && !errors.Is(berr, nats.ErrTimeout) {
			return fmt.Errorf("journal: reading: %w", berr)
		}
		if n == 0 {
			if time.Since(began) > 900*time.Millisecond || early >= 50 {
				if ok, err := done(); ok || err != nil {
					return err
				}
			} else {
				early++
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// replicaCatchUp is how long a read waits for a replica that is behind
// the stream's leader to catch up.
const replicaCatchUp = 30 * time.Second

func fetchBatch(ctx context.Context, cons jetstream.Consumer, size int, fn func(jetstream.Msg) error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	batch, err := cons.Fetch(size, jetstream.FetchContext(ctx), jetstream.FetchMaxBytes(MaxPayload+64<<10))
	if err != nil {
		return 0, fmt.Errorf("journal: reading: %w", err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if err := fn(m); err != nil {
			return n, err
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return n, fmt.Errorf("journal: reading: %w", err)
	}
	return n, nil
}

// Follower reads the journal from a position on, history first, then live
// messages as they are journaled, with neither gap nor repeat between the
// two: it is one consumer moving through one sequence.
type Follower struct {
	c  *conn
	it jetstream.MessagesContext
}

// Follow starts a Follower of the messages matching filter.
func (j *Journal) Follow(ctx context.Context, filter string, from From) (*Follower, error) {
	policy, seq, t := from.policy()
	c := j.conn.Load()
	var cons jetstream.Consumer
	err := j.transient(ctx, func() (err error) {
		cons, err = c.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
			FilterSubjects:    readerFilters(filter),
			DeliverPolicy:     policy,
			OptStartSeq:       seq,
			OptStartTime:      t,
			InactiveThreshold: time.Minute,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("journal: following: %w", err)
	}
	// A reader that falls behind holds at most this much in memory.
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(128, MaxPayload+64<<10))
	if err != nil {
		return nil, fmt.Errorf("journal: following: %w", err)
	}
	return &Follower{c: c, it: it}, nil
}

// Next waits for the next message. It returns an error once Stop is
// called, or when the embedded server was restarted (the reader starts
// again from the last sequence it received).
func (f *Follower) Next() (Message, error) {
	for {
		m, err := f.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || f.c.nc.IsClosed() {
				return Message{}, err
			}
			// Missed heartbeats and resets: the ordered consumer goes on
			// from the last sequence it delivered.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if msg, ok := decode(m); ok {
			return msg, nil
		}
	}
}

// Stop ends the Follower; a Next waiting returns.
func (f *Follower) Stop() { f.it.Stop() }
