// Package events owns the public, anonymous, read-only HTTP API served on
// the websocket listeners beside MQTT: the journal's history as JSON lines
// (GET /v0/events), history then live as Server-Sent Events
// (GET /v0/events/stream), and a small public summary (GET /v0/summary).
//
// Everything here answers anyone, so every request's cost is bounded: a
// per-address and a total limit on concurrent reads, a cap on the lines
// and bytes of one answer, a write deadline for each write to a client,
// and filters checked before any work.
package events

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/firehose/firehose/appliance/journal"
	"github.com/firehose/firehose/appliance/topic"
)

// Limits of the API.
const (
	// MaxPerAddress is how many reads (history or streams) one client
	// address may have open at once; MaxTotal for everyone together.
	MaxPerAddress = 8
	MaxTotal      = 1024
	// DefaultLimit and MaxLimit are the lines of one /v0/events answer.
	DefaultLimit = 100
	MaxLimit     = 10000
	// maxAnswerBytes ends a /v0/events answer after the line that passes
	// it; the client goes on from the last sequence it received.
	maxAnswerBytes = 8 << 20
	maxFilterLen   = 1024
	// Heartbeat is how often an idle stream sends a comment, so that
	// proxies and clients keep it open.
	Heartbeat = 15 * time.Second
	// writeTimeout ends a stream whose client stops reading.
	writeTimeout = 30 * time.Second
)

// Journal is what the API reads; *journal.Journal in the daemon.
type Journal interface {
	Bounds(ctx context.Context) (journal.Bounds, error)
	History(ctx context.Context, filter string, from journal.From, limit int, fn func(journal.Message) error) error
	Follow(ctx context.Context, filter string, from journal.From) (*journal.Follower, error)
	EventsPerMinute() float64
}

// Counters are the broker's figures the summary shows.
type Counters interface {
	Clients() int64
	ReceivedPerMinute() float64
}

// API serves the routes. A nil Journal (the journal is disabled) leaves
// only the summary.
type API struct {
	j   Journal
	c   Counters
	log *slog.Logger

	mu     sync.Mutex
	perIP  map[string]int
	total  int
	cached *cachedSummary
}

// New returns the API over j (nil when the journal is disabled) and c.
func New(j Journal, c Counters, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{j: j, c: c, log: log, perIP: map[string]int{}}
}

// Wrap serves the API's routes and passes every other request to next.
func (a *API) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v0/events", "/v0/events/stream", "/v0/summary":
		default:
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		// A public, read-only API: pages anywhere may read it.
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Firehose-First-Seq, Firehose-Last-Seq")
		switch r.Method {
		case http.MethodGet:
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET")
			h.Set("Access-Control-Allow-Headers", "Last-Event-ID")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			h.Set("Allow", "GET, OPTIONS")
			fail(w, http.StatusMethodNotAllowed, "only GET")
			return
		}
		if r.URL.Path == "/v0/summary" {
			a.summary(w, r)
			return
		}
		if a.j == nil {
			fail(w, http.StatusNotFound, "the journal is disabled on this appliance ([journal] enabled = false)")
			return
		}
		release, ok := a.admit(r)
		if !ok {
			h.Set("Retry-After", "5")
			fail(w, http.StatusTooManyRequests, fmt.Sprintf("too many concurrent reads (at most %d per address)", MaxPerAddress))
			return
		}
		defer release()
		if r.URL.Path == "/v0/events" {
			a.history(w, r)
		} else {
			a.stream(w, r)
		}
	})
}

// admit counts a read against its address and the total.
func (a *API) admit(r *http.Request) (release func(), ok bool) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perIP[ip] >= MaxPerAddress || a.total >= MaxTotal {
		return nil, false
	}
	a.perIP[ip]++
	a.total++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.total--
		if a.perIP[ip]--; a.perIP[ip] <= 0 {
			delete(a.perIP, ip)
		}
	}, true
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	_, _ = w.Write(append(b, '\n'))
}

// query is a read request's parameters.
type query struct {
	filter string
	from   journal.From
	limit  int
}

var errBadQuery = errors.New("bad query")

// parseQuery reads filter, since and limit; lastEventID (SSE's
// Last-Event-ID) wins over since, as a reconnecting EventSource sends it
// with the URL it first used.
func parseQuery(r *http.Request, withLimit bool) (query, error) {
	v := r.URL.Query()
	q := query{filter: v.Get("filter"), limit: DefaultLimit}
	if q.filter == "" {
		q.filter = "#"
	}
	if len(q.filter) > maxFilterLen || !topic.ValidFilter(q.filter) {
		return q, fmt.Errorf("%w: filter %.80q is not a valid MQTT topic filter (at most %d bytes, such as gerrit/%%23 for gerrit/#)", errBadQuery, q.filter, maxFilterLen)
	}
	if s := v.Get("since"); s != "" {
		from, err := ParseSince(s, time.Now())
		if err != nil {
			return q, err
		}
		q.from = from
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 64)
		if err != nil {
			return q, fmt.Errorf("%w: Last-Event-ID %.40q is not a sequence number", errBadQuery, id)
		}
		q.from = journal.From{Seq: n + 1}
	}
	if s := v.Get("limit"); s != "" && withLimit {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, fmt.Errorf("%w: limit must be between 1 and %d", errBadQuery, MaxLimit)
		}
		q.limit = n
	}
	return q, nil
}

// ParseSince reads a since parameter: a sequence number (the first one
// wanted), an RFC 3339 time, or a duration before now ("10m"). "0" means
// from the oldest message kept.
func ParseSince(s string, now time.Time) (journal.From, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			n = 1
		}
		return journal.From{Seq: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return journal.From{Time: t}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return journal.From{Time: now.Add(-d)}, nil
	}
	return journal.From{}, fmt.Errorf("%w: since %.40q is neither a sequence number, an RFC 3339 time nor a duration such as 10m", errBadQuery, s)
}

// Event is one line of /v0/events and the data of one SSE event: Payload
// holds the message verbatim when it is a JSON value, PayloadBase64 holds
// it otherwise. A gap marker has Gap instead of a topic.
type Event struct {
	Seq           uint64          `json:"seq"`
	Time          string          `json:"time"`
	Topic         string          `json:"topic,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 *string         `json:"payload_base64,omitempty"`
	Gap           *journal.Gap    `json:"gap,omitempty"`
}

// Truncated says that the history asked for is older than what the
// journal keeps, and where what it keeps starts.
type Truncated struct {
	Requested     uint64     `json:"requested,omitempty"`
	RequestedTime *time.Time `json:"requested_time,omitempty"`
	FirstSeq      uint64     `json:"first_seq"`
	FirstTime     *time.Time `json:"first_time,omitempty"`
}

// NewEvent renders m for the API.
func NewEvent(m journal.Message) Event {
	e := Event{Seq: m.Seq, Time: m.Time.UTC().Format(time.RFC3339Nano), Topic: m.Topic, Gap: m.Gap}
	if m.Gap != nil {
		return e
	}
	if p := jsonPayload(m.Payload); p != nil {
		e.Payload = p
	} else {
		s := base64.StdEncoding.EncodeToString(m.Payload)
		e.PayloadBase64 = &s
	}
	return e
}

// jsonPayload returns the payload as it is when it is one JSON value in
// valid UTF-8 (compacted only when it has line breaks or surrounding
// space, which a line or an SSE data field cannot hold), or nil.
func jsonPayload(p []byte) json.RawMessage {
	if len(p) == 0 || !utf8.Valid(p) || !json.Valid(p) {
		return nil
	}
	if bytes.ContainsAny(p, "\r\n") || p[0] <= ' ' || p[len(p)-1] <= ' ' {
		var b bytes.Buffer
		if json.Compact(&b, p) != nil {
			return nil
		}
		return b.Bytes()
	}
	return p
}

// truncation returns the notice for a read starting before the journal's
// first message, or nil.
func truncation(from journal.From, b journal.Bounds) *Truncated {
	first := b.FirstSeq
	switch {
	case from.Seq > 0 && from.Seq < first:
		return &Truncated{Requested: from.Seq, FirstSeq: first, FirstTime: timePtr(b.FirstTime)}
	case from.Seq == 0 && !from.Time.IsZero() && first > 1 && (b.Messages == 0 || from.Time.Before(b.FirstTime)):
		// Messages before the first kept have been removed; some may have
		// been after the time asked for.
		t := from.Time.UTC()
		return &Truncated{RequestedTime: &t, FirstSeq: first, FirstTime: timePtr(b.FirstTime)}
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func setBoundsHeaders(h http.Header, b journal.Bounds) {
	h.Set("Firehose-First-Seq", strconv.FormatUint(b.FirstSeq, 10))
	h.Set("Firehose-Last-Seq", strconv.FormatUint(b.LastSeq, 10))
	h.Set("Cache-Control", "no-store")
}

// history serves GET /v0/events: application/x-ndjson, one object per
// line, oldest first, from since (default: the oldest kept) up to limit
// lines. A first line {"truncated":{...}} says when since is older than
// the journal.
func (a *API) history(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, true)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	b, err := a.j.Bounds(r.Context())
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "the journal cannot be read right now")
		return
	}
	if q.from == (journal.From{}) {
		q.from = journal.From{Seq: 1}
	}
	setBoundsHeaders(w.Header(), b)
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if t := truncation(q.from, b); t != nil {
		_ = enc.Encode(struct {
			Truncated *Truncated `json:"truncated"`
		}{t})
	}
	written := 0
	errFull := errors.New("answer full")
	err = a.j.History(r.Context(), q.filter, q.from, q.limit, func(m journal.Message) error {
		if err := enc.Encode(NewEvent(m)); err != nil {
			return err
		}
		written += len(m.Payload) + 100
		if written >= maxAnswerBytes {
			return errFull
		}
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		return nil
	})
	if err != nil && !errors.Is(err, errFull) && r.Context().Err() == nil {
		a.log.Debug("events: history", "error", err)
	}
}

// stream serves GET /v0/events/stream: Server-Sent Events, history from
// since or Last-Event-ID first, then live, one consumer throughout so that
// the seam has neither gap nor repeat. Without either it starts with the
// next message journaled.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, false)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	b, err := a.j.Bounds(ctx)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "the journal cannot be read right now")
		return
	}
	f, err := a.j.Follow(ctx, q.filter, q.from)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "the journal cannot be read right now")
		return
	}
	defer f.Stop()
	h := w.Header()
	setBoundsHeaders(h, b)
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx: do not hold events back
	rc := http.NewResponseController(w)
	send := func(s string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The comment goes out at once, so the client sees the stream open.
	head := "retry: 2000\n: firehose journal, first_seq " + strconv.FormatUint(b.FirstSeq, 10) + ", last_seq " + strconv.FormatUint(b.LastSeq, 10) + "\n\n"
	if t := truncation(q.from, b); t != nil {
		data, _ := json.Marshal(t)
		head += "event: truncated\ndata: " + string(data) + "\n\n"
	}
	if !send(head) {
		return
	}

	msgs := make(chan journal.Message)
	go func() {
		defer close(msgs)
		for {
			m, err := f.Next()
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	beat := time.NewTicker(Heartbeat)
	defer beat.Stop()
	var sb strings.Builder
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if !send(": keepalive\n\n") {
				return
			}
		case m, ok := <-msgs:
			if !ok {
				return
			}
			sb.Reset()
			sb.WriteString("id: ")
			sb.WriteString(strconv.FormatUint(m.Seq, 10))
			sb.WriteByte('\n')
			if m.Gap != nil {
				sb.WriteString("event: gap\n")
			}
			data, err := marshal(NewEvent(m))
			if err != nil {
				continue
			}
			sb.WriteString("data: ")
			sb.Write(data)
			sb.WriteString("\n\n")
			if !send(sb.String()) {
				return
			}
		}
	}
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
