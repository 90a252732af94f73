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

	"github.com/firehose/firehose/appliance/apitype"
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

func reset(from journal.From, b journal.Bounds) *apitype.Reset {
	if from.Seq > b.LastSeq+1 {
		return &apitype.Reset{Requested: from.Seq, LastSeq: b.LastSeq}
	}
	return nil
}

// AppendEvent appends m as the API renders it, one line of JSON without
// the newline: {"seq":N,"time":"RFC 3339","topic":"...","payload":...}
// with the payload byte for byte when it is a JSON value, or
// "payload_base64":"..." otherwise; a gap marker has "gap" instead of a
// topic and payload. It is written by hand because encoding/json rewrites
// a raw value's spacing.
func AppendEvent(b []byte, m journal.Message) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, m.Seq, 10)
	b = append(b, `,"time":"`...)
	b = m.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if m.Gap != nil {
		g, _ := json.Marshal(m.Gap)
		b = append(b, `,"gap":`...)
		b = append(b, g...)
		return append(b, '}')
	}
	b = append(b, `,"topic":`...)
	b = appendJSONString(b, m.Topic)
	if p := jsonPayload(m.Payload); p != nil {
		b = append(b, `,"payload":`...)
		b = append(b, p...)
	} else {
		b = append(b, `,"payload_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, m.Payload)
		b = append(b, '"')
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
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
func truncation(from journal.From, b journal.Bounds) *apitype.Truncated {
	first := b.FirstSeq
	switch {
	case from.Seq > 0 && from.Seq < first:
		return &apitype.Truncated{Requested: from.Seq, FirstSeq: first, FirstTime: timePtr(b.FirstTime)}
	case from.Seq == 0 && !from.Time.IsZero() && first > 1 && (b.Messages == 0 || from.Time.Before(b.FirstTime)):
		// Messages before the first kept have been removed; some may have
		// been after the time asked for.
		t := from.Time.UTC()
		return &apitype.Truncated{RequestedTime: &t, FirstSeq: first, FirstTime: timePtr(b.FirstTime)}
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
	if r := reset(q.from, b); r != nil {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(struct {
			Reset *apitype.Reset `json:"reset"`
		}{r})
		return
	}
	// The first line waits for the read's first message (or its end): a
	// read that fails before it gets a 503, not a 200 with nothing.
	var head []byte
	if t := truncation(q.from, b); t != nil {
		head, _ = json.Marshal(struct {
			Truncated *apitype.Truncated `json:"truncated"`
		}{t})
		head = append(head, '\n')
	}
	written := 0
	errFull := errors.New("answer full")
	var line []byte
	err = a.j.History(r.Context(), q.filter, q.from, q.limit, func(m journal.Message) error {
		line = append(AppendEvent(append(line[:0], head...), m), '\n')
		head = nil
		if _, err := w.Write(line); err != nil {
			return err
		}
		written += len(line)
		if written >= maxAnswerBytes {
			return errFull
		}
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		return nil
	})
	switch {
	case err == nil || errors.Is(err, errFull):
		_, _ = w.Write(head) // a read of nothing: just the truncation, if any
	case r.Context().Err() != nil:
	case written == 0:
		a.log.Debug("events: history", "error", err)
		fail(w, http.StatusServiceUnavailable, "the journal cannot be read right now")
	default:
		// Lines are out under a 200 already: break the answer off rather
		// than end it as if it were whole.
		a.log.Debug("events: history cut short", "error", err)
		panic(http.ErrAbortHandler)
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
	rs := reset(q.from, b)
	if rs != nil {
		q.from = journal.From{Seq: b.LastSeq + 1}
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
	if rs != nil {
		data, _ := json.Marshal(rs)
		head += "event: reset\ndata: " + string(data) + "\n\n"
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
			sb.WriteString("data: ")
			sb.Write(AppendEvent(nil, m))
			sb.WriteString("\n\n")
			if !send(sb.String()) {
				return
			}
		}
	}
}
