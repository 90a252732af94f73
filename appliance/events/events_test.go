package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/journal"
)

func TestNewEventPayloads(t *testing.T) {
	for _, tc := range []struct {
		payload, want string
	}{
		{`{"type":"comment-added","n":1}`, `"payload":{"type":"comment-added","n":1}`},
		{`{"a": 1,  "b" : [1, 2]}`, `"payload":{"a": 1,  "b" : [1, 2]}`}, // verbatim on one line
		{"{\n  \"a\": 1\n}\n", `"payload":{"a":1}`},                      // spans lines: compacted
		{`"text"`, `"payload":"text"`},
		{`42`, `"payload":42`},
		{`plain text`, `"payload_base64":"cGxhaW4gdGV4dA=="`},
		{"", `"payload_base64":""`},
		{"\"\xff\"", `"payload_base64":"Iv8i"`}, // a JSON string, but not UTF-8
		{`{"a":1} {"b":2}`, `"payload_base64":`},
	} {
		b := AppendEvent(nil, journal.Message{Seq: 7, Time: time.Unix(0, 0), Topic: "a/b", Payload: []byte(tc.payload)})
		if !strings.Contains(string(b), tc.want) || !strings.HasPrefix(string(b), `{"seq":7,"time":"1970-01-01T00:00:00Z","topic":"a/b",`) {
			t.Errorf("payload %q: %s, want it to contain %s", tc.payload, b, tc.want)
		}
	}
}

// FuzzNewEvent: whatever a publisher sends renders as one line of valid
// JSON that gives back the same payload (the same JSON value, or the same
// bytes).
func FuzzNewEvent(f *testing.F) {
	for _, s := range []string{`{"a":1}`, "{\n\"a\":\n[1,\n2]}", `"x"`, "plain", "", "\xff", " 1 ", "\u2028", `{"a":"\u2028"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		line := AppendEvent(nil, journal.Message{Seq: 1, Time: time.Now(), Topic: "t/\"<>&\u2028", Payload: payload})
		if bytes.ContainsAny(line, "\r\n") || !json.Valid(line) {
			t.Fatalf("not one line of JSON: %q", line)
		}
		var e apitype.EventLine
		if err := json.Unmarshal(line, &e); err != nil || e.Topic != "t/\"<>&\u2028" {
			t.Fatalf("%q: %v, topic %q", line, err, e.Topic)
		}
		if e.PayloadBase64 != nil {
			b, err := e.PayloadBytes()
			if err != nil || !bytes.Equal(b, payload) {
				t.Fatalf("base64 payload %q does not give back %q", *e.PayloadBase64, payload)
			}
			return
		}
		if !reflect.DeepEqual(decodeJSON(t, e.Payload), decodeJSON(t, payload)) {
			t.Fatalf("payload %q rendered as %q", payload, e.Payload)
		}
	})
}

func decodeJSON(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return v
}

// FuzzParseQuery: no query string or Last-Event-ID makes the parser
// panic; what it accepts has a valid filter and a limit in range, and what
// it refuses it refuses as a bad query.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"filter=gerrit/%23&since=12&limit=5", "since=2026-01-01T00:00:00Z", "since=10m", "filter=a/%23/b", "limit=-1", "since=-5m", "filter=%00"} {
		f.Add(s, "")
		f.Add(s, "41")
	}
	f.Fuzz(func(t *testing.T, rawQuery, lastEventID string) {
		r := &http.Request{URL: &url.URL{RawQuery: rawQuery}, Header: http.Header{}}
		if lastEventID != "" {
			r.Header.Set("Last-Event-ID", lastEventID)
		}
		q, err := parseQuery(r, true)
		if err != nil {
			if !errors.Is(err, errBadQuery) {
				t.Fatalf("error %v is not a bad query", err)
			}
			return
		}
		if q.filter == "" || len(q.filter) > maxFilterLen || q.limit < 1 || q.limit > MaxLimit {
			t.Fatalf("accepted %+v", q)
		}
	})
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]journal.From{
		"0":                    {Seq: 1},
		"41":                   {Seq: 41},
		"2026-12-01T11:00:00Z": {Time: now.Add(-time.Hour)},
		"10m":                  {Time: now.Add(-10 * time.Minute)},
	} {
		got, err := ParseSince(in, now)
		if err != nil || got.Seq != want.Seq || !got.Time.Equal(want.Time) {
			t.Errorf("ParseSince(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "yesterday", "-10m", "0s", "18446744073709551616"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("ParseSince(%q) accepted", bad)
		}
	}
}

// counters stands in for the broker's figures in the summary.
type counters struct{}

func (counters) Clients() int64             { return 3 }
func (counters) ReceivedPerMinute() float64 { return 7 }

func newAPI(t *testing.T, maxAge time.Duration) (*journal.Journal, *httptest.Server) {
	t.Helper()
	j, err := journal.Open(journal.Config{Dir: t.TempDir(), MaxAge: maxAge, MaxBytes: 64 << 20, Sync: config.SyncPolicy{Interval: time.Second}},
		slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Start(func(journal.Message) {}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	srv := httptest.NewServer(New(j, counters{}, nil).Wrap(http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	return j, srv
}

func get(t *testing.T, u string) (*http.Response, []string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return resp, lines
}

func TestHistoryAndSummary(t *testing.T) {
	j, srv := newAPI(t, time.Hour)
	for _, tp := range []string{"gerrit/a/x", "zuul/b", "gerrit/a/y"} {
		if _, err := j.Append(tp, []byte(`{"t":"`+tp+`"}`), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	resp, lines := get(t, srv.URL+"/v0/events?filter=gerrit/%23&since=0")
	if resp.StatusCode != 200 || resp.Header.Get("Firehose-Last-Seq") != "3" || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], `{"seq":1,`) || !strings.HasSuffix(lines[1], `"topic":"gerrit/a/y","payload":{"t":"gerrit/a/y"}}`) {
		t.Fatalf("history: %s %v %q", resp.Status, resp.Header, lines)
	}
	// Beyond the end: said, not waited for.
	if _, lines := get(t, srv.URL+"/v0/events?since=99"); len(lines) != 1 || lines[0] != `{"reset":{"requested":99,"last_seq":3}}` {
		t.Errorf("since beyond the end: %q", lines)
	}
	_, lines = get(t, srv.URL+"/v0/summary")
	var s Summary
	if err := json.Unmarshal([]byte(strings.Join(lines, "")), &s); err != nil || s.Clients != 3 || s.Journal == nil || s.Journal.LastSeq != 3 || s.Journal.FirstTime == nil {
		t.Errorf("summary %q: %+v %v", lines, s, err)
	}
	for path, code := range map[string]int{"/v0/events?limit=0": 400, "/v0/other": 404, "/": 404} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
	if resp, err := http.Post(srv.URL+"/v0/events", "text/plain", nil); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST: %v %v", resp.StatusCode, err)
	}
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/v0/events/stream", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Headers") != "Last-Event-ID" {
		t.Errorf("OPTIONS: %v %v", resp, err)
	}
}

func TestJournalDisabled(t *testing.T) {
	srv := httptest.NewServer(New(nil, counters{}, nil).Wrap(http.NotFoundHandler()))
	defer srv.Close()
	if resp, lines := get(t, srv.URL+"/v0/events"); resp.StatusCode != 404 || !strings.Contains(lines[0], "disabled") {
		t.Errorf("events: %s %q", resp.Status, lines)
	}
	if _, lines := get(t, srv.URL+"/v0/summary"); len(lines) != 1 || lines[0] != `{"clients":3,"events_per_minute":7,"journal":null}` {
		t.Errorf("summary: %q", lines)
	}
}

func TestStreamTruncatedThenLive(t *testing.T) {
	j, srv := newAPI(t, time.Second)
	for range 3 {
		if _, err := j.Append("old/x", []byte("x"), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := j.Bounds(context.Background())
		if err == nil && b.FirstSeq == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("messages did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v0/events/stream", nil)
	req.Header.Set("Last-Event-ID", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := j.Append("new/x", []byte(`{"n":4}`), false, 0); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for len(got) < 4 && sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "retry:") {
			got = append(got, l)
		}
	}
	want := []string{"event: truncated", `data: {"requested":2,"first_seq":4}`, "id: 4"}
	if len(got) != 4 || !reflect.DeepEqual(got[:3], want) || !strings.HasSuffix(got[3], `"topic":"new/x","payload":{"n":4}}`) {
		t.Fatalf("stream: %q", got)
	}
}

// failingReads is the real journal whose history reads fail after after
// messages, as a clustered read does while the stream's leadership moves.
type failingReads struct {
	*journal.Journal
	after int
}

func (f failingReads) History(ctx context.Context, filter string, from journal.From, limit int, fn func(journal.Message) error) error {
	n := 0
	err := f.Journal.History(ctx, filter, from, limit, func(m journal.Message) error {
		if n == f.after {
			return errors.New("no leader")
		}
		n++
		return fn(m)
	})
	if err == nil && n == f.after {
		err = errors.New("no leader")
	}
	return err
}

// TestHistoryReadFails: a read that fails before its first line is a 503
// with a reason, not a 200 with nothing; one that fails after some lines is
// broken off, so that no client takes it for the whole answer.
func TestHistoryReadFails(t *testing.T) {
	j, _ := newAPI(t, time.Hour)
	for i := range 5 {
		if _, err := j.Append(fmt.Sprintf("a/%d", i), []byte("{}"), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(after int) *httptest.Server {
		srv := httptest.NewServer(New(failingReads{j, after}, counters{}, nil).Wrap(http.NotFoundHandler()))
		t.Cleanup(srv.Close)
		return srv
	}

	resp, err := http.Get(serve(0).URL + "/v0/events?since=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "cannot be read") {
		t.Fatalf("a read failing at once: %d %q", resp.StatusCode, body)
	}

	// Broken off: before the headers went out (the lines were still in the
	// server's buffer) or in the middle of the body.
	resp, err = http.Get(serve(2).URL + "/v0/events?since=1")
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("a read failing after 2 lines ended as a whole answer: %d %q", resp.StatusCode, body)
		}
		if n := strings.Count(string(body), "\n"); n > 2 {
			t.Fatalf("%d lines from a read that failed after 2", n)
		}
	}
	t.Logf("a read failing after 2 lines: %v", err)

	// The unbroken read still answers whole.
	if resp, lines := get(t, serve(100).URL+"/v0/events?since=1"); resp.StatusCode != http.StatusOK || len(lines) != 5 {
		t.Fatalf("a whole read: %d, %d lines", resp.StatusCode, len(lines))
	}
}
