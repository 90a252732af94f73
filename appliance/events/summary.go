package events

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Summary is GET /v0/summary: what the public page's status line shows.
// It holds nothing of the configuration.
type Summary struct {
	Clients         int64           `json:"clients"`
	EventsPerMinute float64         `json:"events_per_minute"`
	Journal         *JournalSummary `json:"journal"` // null when the journal is disabled
}

// JournalSummary is the journal's span.
type JournalSummary struct {
	FirstSeq  uint64     `json:"first_seq"`
	LastSeq   uint64     `json:"last_seq"`
	FirstTime *time.Time `json:"first_time"`
	LastTime  *time.Time `json:"last_time"`
}

type cachedSummary struct {
	at   time.Time
	body []byte
}

// summaryTTL: however often it is asked, the summary is made at most once
// a second.
const summaryTTL = time.Second

func (a *API) summary(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	c := a.cached
	a.mu.Unlock()
	if c == nil || time.Since(c.at) > summaryTTL {
		c = &cachedSummary{at: time.Now(), body: a.makeSummary(r.Context())}
		a.mu.Lock()
		a.cached = c
		a.mu.Unlock()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(c.body)
}

func (a *API) makeSummary(ctx context.Context) []byte {
	s := Summary{}
	if a.c != nil {
		s.Clients = a.c.Clients()
		s.EventsPerMinute = a.c.ReceivedPerMinute()
	}
	if a.j != nil {
		s.EventsPerMinute = a.j.EventsPerMinute()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if b, err := a.j.Bounds(ctx); err == nil {
			s.Journal = &JournalSummary{FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, FirstTime: timePtr(b.FirstTime), LastTime: timePtr(b.LastTime)}
		}
	}
	body, _ := json.Marshal(s)
	return append(body, '\n')
}
