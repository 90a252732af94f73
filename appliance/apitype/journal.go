package apitype

import "time"

// JournalStatus is the journal's part of the status; absent when the
// journal is disabled.
type JournalStatus struct {
	Node      string     `json:"node"` // this node's Firehose-Origin
	FirstSeq  uint64     `json:"first_seq"`
	LastSeq   uint64     `json:"last_seq"`
	FirstTime *time.Time `json:"first_time,omitempty"`
	LastTime  *time.Time `json:"last_time,omitempty"`
	Messages  uint64     `json:"messages"`
	Bytes     uint64     `json:"bytes"`
	// Retained is how many topics have a retained message kept.
	Retained uint64 `json:"retained"`
	// Writing is false while the journal cannot write (disk full, I/O
	// error): messages then go out live only, counted in NotJournaled.
	Writing      bool       `json:"writing"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	NotJournaled int64      `json:"not_journaled_total"`
	// Gaps counts the gap markers written since start; LastGap is the
	// latest.
	Gaps    int64       `json:"gaps_total"`
	LastGap *JournalGap `json:"last_gap,omitempty"`
	// EventsPerMinute is how many messages were journaled over the last
	// minute.
	EventsPerMinute float64 `json:"events_per_minute"`
}

// JournalGap is a gap marker: Lost messages went out live only, between
// From and Until, and are not in the journal; Seq is the marker's own.
type JournalGap struct {
	Seq    uint64    `json:"seq"`
	Lost   int64     `json:"lost"`
	From   time.Time `json:"from"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}
