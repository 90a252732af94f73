package gerrit

import (
	"context"
	"fmt"
	"testing"
)

// walkLog walks a log of (second, name) entries with page cap pageCap at
// time now, and returns the names yielded, the number of requests and the
// seconds reported as cut.
func walkLog(t *testing.T, log [][2]any, pageCap int, t1, now int64) (names []string, requests int, cut []int64) {
	t.Helper()
	w := logWalker{
		fetch: func(_ context.Context, t1 int64) ([][]byte, error) {
			requests++
			var out [][]byte
			for _, e := range log {
				if sec := e[0].(int64); sec >= t1 && len(out) < pageCap {
					out = append(out, []byte(fmt.Sprintf(`{"type":"t","name":%q,"eventCreatedOn":%d}`, e[1], sec)))
				}
			}
			return out, nil
		},
		parse: func(line []byte) (logEvent, bool) {
			ev, err := parseEvent(line)
			key, kerr := contentKey(line)
			return logEvent{line: line, ev: ev, key: key}, err == nil && kerr == nil
		},
		maxPages:   100,
		edge:       func() int64 { return now - 2 },
		fullSecond: func(sec int64, n int) { cut = append(cut, sec) },
	}
	err := w.walk(context.Background(), t1, func(e logEvent) {
		names = append(names, string(e.line[len(`{"type":"t","name":"`)]))
	})
	if err != nil {
		t.Fatal(err)
	}
	return names, requests, cut
}

func TestLogWalk(t *testing.T) {
	for _, tt := range []struct {
		name     string
		log      [][2]any
		cap      int
		now      int64
		want     string
		requests int
		cut      []int64
	}{
		// Second 11 fills a page exactly: it may have been cut, so the walk
		// says so and goes on from 12.
		{"pages", [][2]any{{int64(10), "a"}, {int64(11), "b"}, {int64(11), "c"}, {int64(12), "d"}, {int64(13), "e"}}, 2, 100, "abcde", 5, []int64{11}},
		// Second 11 holds more than a page: the rest of it cannot be had.
		{"past_second_over_cap", [][2]any{{int64(10), "a"}, {int64(11), "b"}, {int64(11), "c"}, {int64(11), "x"}, {int64(12), "d"}}, 2, 100, "abcd", 5, []int64{11}},
		// An answer smaller than the largest ends the walk.
		{"smaller_answer", [][2]any{{int64(98), "a"}, {int64(99), "b"}}, 2, 100, "ab", 2, nil},
		// At the live edge, a page that repeats a second and fills the
		// page: asking past it finds nothing, so the log ends there.
		{"edge_log_ends", [][2]any{{int64(97), "a"}, {int64(98), "b"}}, 1, 100, "ab", 5, []int64{97}},
		// At the live edge with later events: asking for that second again
		// gives the same, so it was cut.
		{"edge_second_cut", [][2]any{{int64(99), "a"}, {int64(99), "b"}, {int64(99), "x"}, {int64(100), "c"}}, 2, 100, "abc", 6, []int64{99}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			names, requests, cut := walkLog(t, tt.log, tt.cap, 10, tt.now)
			if got := fmt.Sprint(names); got != fmt.Sprint(splitChars(tt.want)) {
				t.Errorf("yielded %s, want %s", got, tt.want)
			}
			if requests != tt.requests || fmt.Sprint(cut) != fmt.Sprint(tt.cut) {
				t.Errorf("%d requests (want %d), cut %v (want %v)", requests, tt.requests, cut, tt.cut)
			}
		})
	}
}

func splitChars(s string) []string {
	var out []string
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}
