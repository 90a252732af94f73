package broker

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochi logs what it refuses with the packet attached whole ("error
// processing packet", "pk", pk): twenty 500 KB publishes made 28 MB of log.
// quietHandler sits between mochi and the daemon's log: packets and Wills
// become a summary without payload, long strings are cut, and each message
// is written at most quietBurst times per quietWindow, the rest counted and
// reported with the next line that gets through.
type quietHandler struct {
	next  slog.Handler
	limit *lineLimiter
}

const (
	quietWindow = 10 * time.Second
	quietBurst  = 5
)

func newQuietHandler(next slog.Handler) slog.Handler {
	return &quietHandler{next: next, limit: &lineLimiter{seen: map[string]*lineWindow{}}}
}

func (h *quietHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	suppressed, ok := h.limit.allow(r.Message, r.Time)
	if !ok {
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	if suppressed > 0 {
		out.AddAttrs(slog.Int64("like_lines_not_logged", suppressed))
	}
	return h.next.Handle(ctx, out)
}

func (h *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redact(a)
	}
	return &quietHandler{next: h.next.WithAttrs(red), limit: h.limit}
}

func (h *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{next: h.next.WithGroup(name), limit: h.limit}
}

// redact replaces what may carry a client's payload or an unbounded string.
func redact(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, short(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, ga := range g {
			out[i] = redact(ga)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
	default:
		return a
	}
	switch x := v.Any().(type) {
	case packets.Packet:
		return slog.Any(a.Key, packetSummary(&x))
	case *packets.Packet:
		if x == nil {
			return a
		}
		return slog.Any(a.Key, packetSummary(x))
	case mqtt.Will:
		return slog.Group(a.Key, "topic", short(x.TopicName), "payload_bytes", len(x.Payload), "retain", x.Retain)
	case []byte:
		return slog.Int(a.Key+"_bytes", len(x))
	case error:
		return slog.String(a.Key, short(x.Error()))
	case string:
		return slog.String(a.Key, short(x))
	}
	return slog.String(a.Key, short(v.String()))
}

func packetSummary(pk *packets.Packet) slog.Value {
	return slog.GroupValue(
		slog.Int("type", int(pk.FixedHeader.Type)),
		slog.String("topic", short(pk.TopicName)),
		slog.Int("payload_bytes", len(pk.Payload)),
		slog.Int("qos", int(pk.FixedHeader.Qos)),
		slog.Int("filters", len(pk.Filters)),
	)
}

// lineLimiter lets quietBurst lines of each message through per quietWindow.
// mochi's messages are constant strings, so the map stays small.
type lineLimiter struct {
	mu   sync.Mutex
	seen map[string]*lineWindow
}

type lineWindow struct {
	start      time.Time
	n          int
	suppressed int64
}

// allow reports whether a line with msg may be written now, and how many
// like lines were dropped before it.
func (l *lineLimiter) allow(msg string, now time.Time) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.seen[msg]
	if w == nil {
		if len(l.seen) > 1024 { // not mochi's constant messages: forget them all
			clear(l.seen)
		}
		w = &lineWindow{start: now}
		l.seen[msg] = w
	}
	if now.Sub(w.start) >= quietWindow {
		w.start, w.n = now, 0
	}
	if w.n >= quietBurst {
		w.suppressed++
		return 0, false
	}
	w.n++
	s := w.suppressed
	w.suppressed = 0
	return s, true
}

func itoa(n int) string { return strconv.Itoa(n) }
