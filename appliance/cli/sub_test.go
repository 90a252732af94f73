package cli

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/firehose/firehose/appliance/capture"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ in, want string }{
		{"0", "0"},
		{"1234", "1234"},
		{"2025-01-31T12:00:00Z", "2025-01-31T12:00:00Z"},
		{"2025-01-31T13:00:00.5+01:00", "2025-01-31T12:00:00.5Z"},
		{"90m", "2026-01-31T10:30:00Z"},
		{"0s", "2026-01-31T12:00:00Z"},
	} {
		got, err := parseSince(tc.in, now)
		if err != nil || got != tc.want {
			t.Errorf("parseSince(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "-1", "-5m", "yesterday", "2025-01-31", "12:00"} {
		if got, err := parseSince(bad, now); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("parseSince(%q) = %q, %v; want an error saying what to write", bad, got, err)
		}
	}
}

func readAll(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	sr := newSSEReader(r)
	for {
		ev, err := sr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	stream := ": a comment\n" +
		"retry: 1000\n\n" + // no data: no event
		"id: 1\ndata: {\"a\":1}\n\n" +
		"id:2\r\ndata:x\r\ndata: y\r\n\r\n" + // no space after the colon; CRLF; two data lines
		"event: note\rid: 3\rdata\r\r" + // CR alone; a field with no colon
		"id: 4\ndata: cut off" // no blank line: dropped
	want := []sseEvent{{ID: "1", Data: `{"a":1}`}, {ID: "2", Data: "x\ny"}, {ID: "3", Event: "note", Data: ""}}
	for name, r := range map[string]io.Reader{
		"whole":      strings.NewReader(stream),
		"byte-wise":  iotest.OneByteReader(strings.NewReader(stream)),
		"half-reads": iotest.HalfReader(strings.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			got := readAll(t, r)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// FuzzSSEReader: no input panics it, and events written back out in the
// plainest form read back the same.
func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("id: 1\ndata: x\n\n"))
	f.Add([]byte("data:a\r\ndata:b\r\r:c\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		first := readAll(t, bytes.NewReader(in))
		var b strings.Builder
		for _, ev := range first {
			if strings.ContainsAny(ev.ID+ev.Event, "\r\n") {
				t.Fatalf("a field holds a line break: %q", ev)
			}
			fmt.Fprintf(&b, "id: %s\nevent: %s\n", ev.ID, ev.Event)
			for _, line := range strings.Split(ev.Data, "\n") {
				fmt.Fprintf(&b, "data: %s\n", line)
			}
			b.WriteString("\n")
		}
		second := readAll(t, strings.NewReader(b.String()))
		if fmt.Sprint(first) != fmt.Sprint(second) {
			t.Fatalf("read %q, wrote %q, read back %q", first, b.String(), second)
		}
	})
}

// sseServer is a stand-in for the journal's stream that ends each
// connection after two messages, to see sub resume where it left off.
type sseServer struct {
	mu       sync.Mutex
	requests []string // query and Last-Event-ID of each request
}

func (s *sseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.URL.RawQuery+" last="+r.Header.Get("Last-Event-ID"))
	s.mu.Unlock()
	if r.URL.Query().Get("filter") == "bad/#/x" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintln(w, `{"error":"bad query: filter \"bad/#/x\" is not a valid MQTT topic filter"}`)
		return
	}
	if r.URL.Query().Get("filter") == "gaps/#" {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 2000\n: hello\n\n"+
			"event: truncated\ndata: {\"requested\":1,\"first_seq\":7,\"first_time\":\"2026-01-31T11:00:00Z\"}\n\n"+
			"id: 7\ndata: {\"seq\":7,\"time\":\"2026-01-31T12:00:00Z\",\"topic\":\"gaps/a\",\"payload\":1}\n\n"+
			"id: 8\nevent: gap\ndata: {\"seq\":8,\"time\":\"2026-01-31T12:00:01Z\",\"gap\":{\"lost\":5,\"from\":\"2026-01-31T12:00:00Z\",\"until\":\"2026-01-31T12:00:01Z\",\"reason\":\"disk full\"}}\n\n"+
			": keepalive\n\n"+
			"id: 9\ndata: {\"seq\":9,\"time\":\"2026-01-31T12:00:02Z\",\"topic\":\"gaps/b\",\"payload\":2}\n\n")
		return
	}
	next := uint64(1)
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, _ := strconv.ParseUint(id, 10, 64)
		next = n + 1
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for i := 0; i < 2; i++ {
		seq := next + uint64(i)
		data := fmt.Sprintf(`{"seq":%d,"time":"2026-01-31T12:00:00Z","topic":"zuul/%d","payload":{"n": %d}}`, seq, seq, seq)
		if seq%3 == 0 {
			data = fmt.Sprintf(`{"seq":%d,"time":"2026-01-31T12:00:00Z","topic":"zuul/%d","payload_base64":"aGk="}`, seq, seq)
		}
		fmt.Fprintf(w, "id: %d\ndata: %s\n\n", seq, data)
	}
}

func runSub(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut capture.Buffer
	Stdout, Stderr = &out, &errOut
	t.Cleanup(func() { Stdout, Stderr = io.Discard, io.Discard })
	done := make(chan int, 1)
	go func() { done <- Main(append([]string{"firehosectl", "sub"}, args...)) }()
	select {
	case code := <-done:
		return out.String(), errOut.String(), code
	case <-time.After(60 * time.Second):
		// Not t.Fatal: Main goes on using Stdout, which cleanup would reset.
		panic("firehosectl sub did not end; printed:\n" + out.String() + "\nstderr:\n" + errOut.String())
	}
}

func TestSubSinceResumesAfterTheLastMessage(t *testing.T) {
	s := &sseServer{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	out, errOut, code := runSub(t, "-h", host, "-p", port, "--since", "1", "-t", "zuul/#", "-v", "-C", "5")
	want := "1 zuul/1 {\"n\": 1}\n2 zuul/2 {\"n\": 2}\n3 zuul/3 hi\n4 zuul/4 {\"n\": 4}\n5 zuul/5 {\"n\": 5}\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d, printed:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
	s.mu.Lock()
	wantReq := []string{"filter=zuul%2F%23&since=1 last=", "filter=zuul%2F%23 last=2", "filter=zuul%2F%23 last=4"}
	if fmt.Sprint(s.requests) != fmt.Sprint(wantReq) {
		t.Errorf("requests %q, want %q", s.requests, wantReq)
	}
	s.mu.Unlock()

	// Without -v, the payloads alone.
	if out, _, code := runSub(t, "-h", host, "-p", port, "--since", "1h", "-t", "zuul/#", "-C", "3"); code != 0 || out != "{\"n\": 1}\n{\"n\": 2}\nhi\n" {
		t.Errorf("exit %d, printed %q", code, out)
	}
}

func TestSubSinceErrors(t *testing.T) {
	srv := httptest.NewServer(&sseServer{})
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--since", "soon", "-t", "#"}, `--since "soon": write a sequence number`},
		{[]string{"--since", "1", "-t", "bad/#/x"}, `the server refused the stream (HTTP 400): bad query: filter "bad/#/x" is not a valid MQTT topic filter`},
	} {
		_, errOut, code := runSub(t, append([]string{"-h", host, "-p", port}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// The notes a stream carries besides messages go to stderr: history older
// than the journal keeps, and a gap marker (which is no message for -C).
func TestSubSinceTruncatedAndGap(t *testing.T) {
	srv := httptest.NewServer(&sseServer{})
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	out, errOut, code := runSub(t, "-h", host, "-p", port, "--since", "1", "-t", "gaps/#", "-v", "-C", "2")
	if code != 0 || out != "7 gaps/a 1\n9 gaps/b 2\n" {
		t.Errorf("exit %d, printed %q; stderr %s", code, out, errOut)
	}
	for _, want := range []string{
		"the journal no longer holds all that was asked for: it starts at sequence 7 (2026-01-31T11:00:00Z)",
		"gap at sequence 8: 5 messages were not journaled between 2026-01-31T12:00:00Z and 2026-01-31T12:00:01Z (disk full)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
