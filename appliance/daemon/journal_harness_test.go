package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firehose/firehose/appliance/apitype"
)

// eventLine is one line of /v0/events or the data of one SSE event.
type eventLine struct{ apitype.EventLine }

// text is the payload as the publisher sent it.
func (e eventLine) text() string {
	b, err := e.PayloadBytes()
	if err != nil {
		return fmt.Sprintf("(bad payload_base64: %v)", err)
	}
	return string(b)
}

func (d *daemon) apiURL(path string, q url.Values) string {
	u := "http://" + d.addr["ws"] + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// history reads GET /v0/events and returns its lines.
func (d *daemon) history(q url.Values) []eventLine {
	d.t.Helper()
	lines, err := d.tryHistory(q)
	if err != nil {
		d.t.Fatal(err)
	}
	return lines
}

// tryHistory is history for a read that may fail (a cluster whose stream
// leadership is moving answers 503 meanwhile).
func (d *daemon) tryHistory(q url.Values) ([]eventLine, error) {
	resp, err := http.Get(d.apiURL("/v0/events", q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /v0/events?%s: %s %s: %s", q.Encode(), resp.Status, resp.Header.Get("Content-Type"), b)
	}
	var out []eventLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e eventLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("GET /v0/events?%s: line %q: %v", q.Encode(), sc.Text(), err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET /v0/events?%s: %w", q.Encode(), err)
	}
	return out, nil
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// sseStream reads /v0/events/stream with Go's HTTP client and a minimal
// event parser (the interop test reads it with curl).
type sseStream struct {
	t      *testing.T
	events chan sseEvent
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *daemon) sse(q url.Values, lastEventID string) *sseStream {
	d.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.apiURL("/v0/events/stream", q), nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		d.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		d.t.Fatalf("GET /v0/events/stream: %s: %s", resp.Status, b)
	}
	s := &sseStream{t: d.t, events: make(chan sseEvent, 100000), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" || ev.event != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	d.t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	<-s.done
}

func (s *sseStream) next() sseEvent {
	s.t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-time.After(60 * time.Second):
		s.t.Fatal("no server-sent event within 60s")
		return sseEvent{}
	}
}

// nextMessage returns the next event that is a message, decoded, and
// checks that its id is its sequence.
func (s *sseStream) nextMessage() eventLine {
	s.t.Helper()
	for {
		ev := s.next()
		if ev.event != "" {
			continue
		}
		var e eventLine
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			s.t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.id != strconv.FormatUint(e.Seq, 10) {
			s.t.Fatalf("event id %q, data seq %d", ev.id, e.Seq)
		}
		return e
	}
}

// qos1Publisher is one paho connection publishing at QoS 1, as a
// publisher account.
type qos1Publisher struct {
	t *testing.T
	c paho.Client
}

func newQoS1Publisher(t *testing.T, d *daemon) *qos1Publisher {
	return &qos1Publisher{t: t, c: connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))}
}

// publish returns once the PUBACK has arrived.
func (p *qos1Publisher) publish(topic, payload string) {
	p.t.Helper()
	if err := wait(p.c.Publish(topic, 1, false, payload)); err != nil {
		p.t.Fatalf("publish %s: %v", topic, err)
	}
}

// payloads returns the payloads of the message lines, in order, and fails
// unless their sequence numbers increase.
func payloads(t *testing.T, lines []eventLine) []string {
	t.Helper()
	var out []string
	var last uint64
	for _, e := range lines {
		if e.Topic == "" {
			continue
		}
		if e.Seq <= last {
			t.Fatalf("sequence %d after %d", e.Seq, last)
		}
		last = e.Seq
		out = append(out, e.text())
	}
	return out
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// summary reads GET /v0/summary.
func (d *daemon) summary() (s struct {
	Clients         int64   `json:"clients"`
	EventsPerMinute float64 `json:"events_per_minute"`
	Journal         *struct {
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	} `json:"journal"`
}) {
	d.t.Helper()
	resp, err := http.Get(d.apiURL("/v0/summary", nil))
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		d.t.Fatal(err)
	}
	return s
}

// readLines streams r's lines.
func readLines(r io.Reader) <-chan string {
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// httpGet returns the status code of a GET, without reading the body.
func httpGet(u string) (int, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
