package gerrit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// eventsLogTime is the events-log plugin's t1/t2 format (yyyy-MM-dd
// HH:mm:ss, UTC on current versions, one-second resolution).
const eventsLogTime = "2006-01-02 15:04:05"

// eventsLogURL adds the time range to base. Both ends are inclusive. The
// plugin splits its query on '&' or ';' and URL-decodes each value.
func eventsLogURL(base string, t1, t2 int64) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	q := func(sec int64) string {
		return strings.ReplaceAll(time.Unix(sec, 0).UTC().Format(eventsLogTime), " ", "%20")
	}
	return base + sep + "t1=" + q(t1) + "&t2=" + q(t2)
}

// fetchEvents asks the events-log plugin for the events created in [t1, t2]
// and returns the lines of its answer, oldest first. The plugin caps the
// answer (5000 by default) without saying so; the caller pages.
func fetchEvents(ctx context.Context, hc *http.Client, base, user, password string, t1, t2 int64, maxLine int) ([][]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, eventsLogURL(base, t1, t2), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, password)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("events-log: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		msg := fmt.Sprintf("events-log: %s from %s", resp.Status, redact(base))
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			msg += " (check events_log_user and its HTTP password, and that the account may use the plugin)"
		case http.StatusNotFound:
			msg += " (is the events-log plugin installed? The URL ends in /a/plugins/events-log/events/)"
		}
		if s := strings.TrimSpace(string(snippet)); s != "" {
			msg += ": " + truncate([]byte(s), 120)
		}
		return nil, fmt.Errorf("%s", msg)
	}
	return parseEventsLog(resp.Body, maxLine)
}

// parseEventsLog splits an events-log answer into event lines. Empty lines
// and Gerrit's XSSI guard ")]}'" are dropped; an over-long line is an error,
// since skipping it would silently lose an event the replay exists to find.
func parseEventsLog(r io.Reader, maxLine int) ([][]byte, error) {
	var out [][]byte
	err := readLines(r, maxLine, func(line []byte, tooLong bool) error {
		if tooLong {
			return fmt.Errorf("events-log: an event is longer than %d bytes", maxLine)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || (len(out) == 0 && string(line) == ")]}'") {
			return nil
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events-log: reading the answer: %w", err)
	}
	return out, nil
}

// redact drops credentials someone may have written into the URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the events-log URL"
	}
	u.User = nil
	return u.String()
}

// truncate shortens b for a log line, keeping it valid UTF-8.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return strings.ToValidUTF8(string(b[:n]), "\uFFFD") + fmt.Sprintf("... (%d bytes)", len(b))
}

// logEvent is one event of an events-log answer, parsed and routed.
type logEvent struct {
	line  []byte
	ev    event
	topic string
	key   [32]byte
	// sec is eventCreatedOn or, for an event without one, that of the
	// event before it on the page (the plugin lists oldest first).
	sec   int64
	dated bool
}

// logWalker pages through the events-log. The plugin caps each answer
// without saying so, oldest first, at one-second resolution, both ends of
// the range included: the next page starts at the second of the last event
// of the previous one, and the events of the previous page from that second
// on, which the new page repeats, are recognised by content and skipped.
// The plugin's order is kept as it is: it is Gerrit's order.
type logWalker struct {
	fetch    func(ctx context.Context, t1 int64) ([][]byte, error)
	parse    func(line []byte) (logEvent, bool) // false: not an event, skipped
	maxPages int
	// edge is the first second events may still be created in (now, less
	// some slack for clocks): before skipping past one of those, the walk
	// makes sure it has to.
	edge func() int64
	// fullSecond is told when a page was one second only, all seen, and as
	// large as the largest answer: the plugin cannot page inside a second,
	// so the walk goes on from the next second and events of that second
	// past the page may be missing.
	fullSecond func(sec int64, n int)
}

// walk calls yield for every event from t1 on, once each, in order. It
// ends when a page brings nothing new.
func (w logWalker) walk(ctx context.Context, t1 int64, yield func(logEvent)) error {
	var overlap *seen // events of the previous page at or after t1
	largest := 0      // the largest answer so far: the plugin's cap, if it was reached
	for page := 0; page < w.maxPages; page++ {
		lines, err := w.fetch(ctx, t1)
		if err != nil {
			return err
		}
		largest = max(largest, len(lines))
		evs := make([]logEvent, 0, len(lines))
		prev := t1
		for _, line := range lines {
			e, ok := w.parse(line)
			if !ok {
				continue
			}
			e.sec, e.dated = prev, false
			if e.ev.hasSec {
				e.sec, e.dated = e.ev.sec, true
			}
			prev = e.sec
			evs = append(evs, e)
		}
		last, first := t1, t1
		if len(evs) > 0 {
			first, last = evs[0].sec, evs[len(evs)-1].sec
		}
		// The next answer repeats the events filed at last or later. An
		// event without a time is filed no later than the dated event after
		// it: it may be one of them.
		next := newSeen(len(evs) + 1)
		bound := int64(math.MaxInt64)
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].dated {
				bound = evs[i].sec
			}
			if bound >= last {
				next.add(evs[i].key, evs[i].sec, true)
			}
		}
		fresh := 0
		for _, e := range evs {
			if overlap != nil && overlap.take(e.key) {
				continue
			}
			fresh++
			yield(e)
		}
		switch {
		case fresh > 0:
			// The next answer starts at the page's last second and repeats
			// what this page had from that second on.
			t1, overlap = last, next
		case len(evs) > 0 && first == last && len(lines) == largest:
			// The whole page is one second, all seen, and as large as the
			// largest answer: the plugin may have cut it at its cap within
			// that second (it cannot page inside one), or the log ends there.
			if last >= w.edge() {
				// A second that may still get events: tell the two apart.
				// Later events first: none means the log ends here.
				more, err := w.fetch(ctx, last+1)
				if err != nil {
					return err
				}
				if len(more) == 0 {
					return nil
				}
				// Then this second again: unchanged although later events
				// exist means it was cut. An event of this second created
				// from now on comes after those later ones in Gerrit's order
				// too, so the stream has it in its place.
				again, err := w.fetch(ctx, last)
				if err != nil {
					return err
				}
				if !sameLines(again, lines) {
					t1, overlap = last, next // it grew: page on from here
					continue
				}
			}
			// Go on from the next second; an answer with nothing new then
			// ends the walk. What the page held stays known, for events
			// without a time that the next answer repeats.
			if w.fullSecond != nil {
				w.fullSecond(last, len(evs))
			}
			t1, overlap = last+1, next
		default:
			return nil
		}
	}
	return fmt.Errorf("events-log: still not caught up after %d pages", w.maxPages)
}

func sameLines(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
