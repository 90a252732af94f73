package gerrit

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
