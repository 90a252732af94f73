package journal

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Retained messages. A retained publish is journaled on a subject of kind
// "r" (subject.go); the stream FIREHOSE_RETAINED sources exactly those
// subjects from the journal and keeps one message per subject, with no age
// limit, so retained messages outlive the journal's retention, restarts and
// upgrades. An empty payload clears a topic's retained message, as in MQTT;
// it is kept as the topic's last message, so it clears at restore too.
//
// The server copies into the retained stream asynchronously, so at start
// the stream may lag the journal by the last few messages (a crash just
// after a write). restoreRetained therefore reads the retained stream,
// notes the last journal sequence it had copied, and applies the journal's
// retained messages after that one on top.

// restoreRetained delivers every retained message, as of journal sequence
// upTo, to the fan-out (which stores them in the broker; there are no
// subscribers yet at start).
func (j *Journal) restoreRetained(ctx context.Context, upTo uint64) error {
	latest := map[string]Message{}
	var copied uint64
	err := j.fetch(ctx, RetainedStreamName, nil, From{}, 0, func(m jetstream.Msg) error {
		msg, ok := decode(m)
		if !ok || msg.Gap != nil {
			return nil
		}
		// The journal's own sequence, from the header nats-server adds to
		// sourced messages: "<stream> <seq> ...".
		if f := strings.Fields(m.Headers().Get(server.JSStreamSource)); len(f) >= 2 && f[0] == StreamName {
			if seq, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				msg.Seq = seq
				copied = max(copied, seq)
			}
		}
		latest[msg.Topic] = msg
		return nil
	})
	if err != nil {
		return err
	}
	if copied < upTo {
		err = j.fetch(ctx, StreamName, []string{retainedEvents}, From{Seq: copied + 1}, 0, func(m jetstream.Msg) error {
			if msg, ok := decode(m); ok && msg.Gap == nil && msg.Seq <= upTo {
				latest[msg.Topic] = msg
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	restore := make([]Message, 0, len(latest))
	for _, m := range latest {
		if len(m.Payload) > 0 {
			restore = append(restore, m)
		}
	}
	sort.Slice(restore, func(a, b int) bool { return restore[a].Seq < restore[b].Seq })
	for _, m := range restore {
		j.deliver(m)
	}
	if len(restore) > 0 {
		j.log.Info("retained messages restored from the journal", "count", len(restore))
	}
	return nil
}
