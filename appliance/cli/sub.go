package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/urfave/cli/v2"

	"github.com/firehose/firehose/appliance/apitype"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func subCommand() *cli.Command {
	return &cli.Command{
		Name:  "sub",
		Usage: "subscribe to the bus and print what arrives (like mosquitto_sub)",
		UsageText: "firehosectl sub [-h HOST] [-p PORT] [--ws] -t FILTER [-t FILTER...] [-v] [-C COUNT]\n" +
			"firehosectl sub --since SEQ|TIME|DURATION [-h HOST] [-p PORT] -t FILTER [-v] [-C COUNT]",
		Description: "With --since, sub replays the journal from a sequence number (1234), a time\n" +
			"(2025-01-31T12:00:00Z) or a duration ago (1h), then follows live, over the\n" +
			"Server-Sent Events stream on the websocket port (default 80); -v prints each\n" +
			"message's sequence number and topic. A dropped stream resumes after the last\n" +
			"sequence printed, so nothing is missed or repeated.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Aliases: []string{"h"}, Value: "localhost"},
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Usage: "default 1883, or 80 with --ws or --since"},
			&cli.BoolFlag{Name: "ws", Usage: "connect over websockets"},
			&cli.StringSliceFlag{Name: "topic", Aliases: []string{"t"}, Required: true, Usage: "topic filter, e.g. 'gerrit/#'"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print the topic before each payload"},
			&cli.IntFlag{Name: "count", Aliases: []string{"C"}, Usage: "exit after this many messages"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Value: 0},
			&cli.StringFlag{Name: "since", Usage: "replay from a sequence number, an RFC 3339 time or a duration ago, then follow live"},
			// -h is the host, as in mosquitto_sub, so the usual help flag
			// is hidden and --help declared alone; the library shows the
			// help when a flag named "help" is set.
			&cli.BoolFlag{Name: "help", Usage: "show help", DisableDefaultText: true},
		},
		HideHelp: true,
		Action: func(c *cli.Context) error {
			if c.IsSet("since") {
				return subSince(c)
			}
			port := c.Int("port")
			scheme := "tcp"
			if c.Bool("ws") {
				scheme = "ws"
				if port == 0 {
					port = 80
				}
			} else if port == 0 {
				port = 1883
			}
			url := scheme + "://" + net.JoinHostPort(c.String("host"), strconv.Itoa(port))
			if c.Bool("ws") {
				url += "/mqtt"
			}
			msgs := make(chan paho.Message, 1024)
			opts := paho.NewClientOptions().AddBroker(url).SetCleanSession(true).
				SetAutoReconnect(true).SetConnectTimeout(10 * time.Second).
				SetClientID(fmt.Sprintf("firehosectl-sub-%d", os.Getpid()))
			filters := map[string]byte{}
			for _, t := range c.StringSlice("topic") {
				filters[t] = byte(c.Int("qos"))
			}
			opts.SetOnConnectHandler(func(cl paho.Client) {
				cl.SubscribeMultiple(filters, func(_ paho.Client, m paho.Message) { msgs <- m })
			})
			cl := paho.NewClient(opts)
			if tok := cl.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
				if tok.Error() != nil {
					return fmt.Errorf("connecting to %s: %w", url, tok.Error())
				}
				return fmt.Errorf("connecting to %s: timed out", url)
			}
			defer cl.Disconnect(250)
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(stop)
			for n := 0; c.Int("count") == 0 || n < c.Int("count"); n++ {
				select {
				case m := <-msgs:
					if c.Bool("verbose") {
						fmt.Fprintf(Stdout, "%s %s\n", m.Topic(), m.Payload())
					} else {
						fmt.Fprintf(Stdout, "%s\n", m.Payload())
					}
				case <-stop:
					return nil
				case <-c.Context.Done():
					return errors.New("interrupted")
				}
			}
			return nil
		},
	}
}

// subSince replays the journal and follows it live over the Server-Sent
// Events stream: the server hands history over to live messages itself,
// and after a dropped connection Last-Event-ID resumes right after the last
// message printed.
func subSince(c *cli.Context) error {
	since, err := parseSince(c.String("since"), time.Now())
	if err != nil {
		return err
	}
	filters := c.StringSlice("topic")
	port := c.Int("port")
	if port == 0 {
		port = 80
	}
	q := url.Values{"filter": filters, "since": {since}}
	base := "http://" + net.JoinHostPort(c.String("host"), strconv.Itoa(port)) + "/v0/events/stream"

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	count, printed := c.Int("count"), 0
	lastID := ""
	backoff := 500 * time.Millisecond
	for {
		u := base + "?" + q.Encode()
		if lastID != "" {
			// Resume after what was printed; since would repeat it.
			u = base + "?" + url.Values{"filter": filters}.Encode()
		}
		got, err := streamEvents(ctx, u, lastID, func(e apitype.EventLine) bool {
			lastID = strconv.FormatUint(e.Seq, 10)
			if e.Gap != nil {
				// A marker, not a message: the journal could not keep some.
				fmt.Fprintf(Stderr, "firehosectl: gap at sequence %d: %d messages were not journaled between %s and %s (%s)\n",
					e.Seq, e.Gap.Lost, e.Gap.From.Format(time.RFC3339), e.Gap.Until.Format(time.RFC3339), e.Gap.Reason)
				return true
			}
			if err := printEvent(e, c.Bool("verbose")); err != nil {
				fmt.Fprintln(Stderr, "firehosectl:", err)
			}
			printed++
			return count == 0 || printed < count
		})
		if ctx.Err() != nil || (count > 0 && printed >= count) {
			return nil
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return err // the server said no: retrying would say no again
		}
		if got {
			// It was streaming: resume at once, and back off only if
			// that fails.
			fmt.Fprintf(Stderr, "firehosectl: stream from %s ended (%v); resuming after %s\n", base, err, lastID)
			backoff = 500 * time.Millisecond
			continue
		}
		fmt.Fprintf(Stderr, "firehosectl: stream from %s: %v; retrying in %s\n", base, err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 15*time.Second)
	}
}

// parseSince turns --since into the API's since: a sequence number or an
// RFC 3339 time; a duration means that long before now.
func parseSince(s string, now time.Time) (string, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return strconv.FormatUint(n, 10), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", fmt.Errorf("--since %q: write a sequence number (1234), an RFC 3339 time (2025-01-31T12:00:00Z) or a duration (90m)", s)
}

func printEvent(e apitype.EventLine, verbose bool) error {
	payload, err := e.PayloadBytes()
	if err != nil {
		return fmt.Errorf("message %d: payload_base64: %v", e.Seq, err)
	}
	var b bytes.Buffer
	if verbose {
		fmt.Fprintf(&b, "%d %s ", e.Seq, e.Topic)
	}
	b.Write(payload)
	b.WriteByte('\n')
	_, err = Stdout.Write(b.Bytes())
	return err
}

// refusedError is a stream the server answered with an error status.
type refusedError struct {
	status int
	msg    string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("the server refused the stream (HTTP %d): %s", e.status, e.msg)
}

// sseClient has no overall timeout (a stream is endless), only bounds on
// getting one started.
var sseClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
	ResponseHeaderTimeout: 30 * time.Second,
}}

// streamIdle is how long a stream may say nothing, heartbeats included.
const streamIdle = 60 * time.Second

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// streamEvents reads one SSE connection, calling each for every message
// until it returns false. It reports whether any message arrived.
func streamEvents(ctx context.Context, u, lastID string, each func(apitype.EventLine) bool) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := sseClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct{ Error string }
		if json.Unmarshal(msg, &e) == nil && e.Error != "" {
			msg = []byte(e.Error)
		}
		return false, &refusedError{resp.StatusCode, strings.TrimSpace(string(msg))}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, &refusedError{resp.StatusCode, "not an event stream (Content-Type " + ct + ")"}
	}
	// The server sends a comment every 15 s on an idle stream: silence for
	// much longer is a dead connection, ended so that sub reconnects.
	idle := time.AfterFunc(streamIdle, cancel)
	defer idle.Stop()
	r := newSSEReader(readFunc(func(p []byte) (int, error) {
		n, err := resp.Body.Read(p)
		idle.Reset(streamIdle)
		return n, err
	}))
	for {
		ev, err := r.Next()
		if err != nil {
			return got, err
		}
		switch ev.Event {
		case "", "message", "gap":
		case "truncated":
			var t struct {
				FirstSeq  uint64 `json:"first_seq"`
				FirstTime string `json:"first_time"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &t)
			fmt.Fprintf(Stderr, "firehosectl: the journal no longer holds all that was asked for: it starts at sequence %d (%s)\n", t.FirstSeq, t.FirstTime)
			continue
		default:
			continue
		}
		if ev.Data == "" {
			continue
		}
		var e apitype.EventLine
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			return got, fmt.Errorf("a message that is not JSON: %v", err)
		}
		if e.Seq == 0 {
			return got, fmt.Errorf("a message without a sequence number: %.200s", ev.Data)
		}
		got = true
		if !each(e) {
			return got, nil
		}
	}
}

// sseEvent is one event of a Server-Sent Events stream.
type sseEvent struct {
	ID, Event, Data string
}

// sseReader parses text/event-stream as the HTML standard says: lines end
// in LF, CR or CRLF; a blank line ends an event; "data" lines join with LF;
// a line starting with ':' is a comment; one space after the colon is
// dropped.
type sseReader struct {
	sc *bufio.Scanner
}

// maxSSELine bounds one line: a message of the largest MQTT packet,
// base64-encoded, with its JSON around it.
const maxSSELine = 400 << 20

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxSSELine)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc}
}

// Next returns the next event with data, or the read error (io.EOF at the
// end of the stream; an event cut off by it is dropped, as browsers do).
func (r *sseReader) Next() (sseEvent, error) {
	var ev sseEvent
	var data strings.Builder
	hasData := false
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if !hasData {
				ev = sseEvent{}
				continue
			}
			ev.Data = data.String()
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				ev.ID = value
			}
		case "event":
			ev.Event = value
		}
	}
	if err := r.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

// scanSSELines splits at LF, CR or CRLF.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // a LF may follow
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
