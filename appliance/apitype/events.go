package apitype

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

// EventLine is one message of the journal as the public events API serves
// it: a line of /v0/events, the data of one /v0/events/stream event. The
// payload is in Payload when it is one JSON value, else base64 in
// PayloadBase64; a gap marker has Gap instead of a topic and payload. A read
// that cannot start where it was asked begins with a line of Truncated (the
// history is older than the journal keeps) or Reset (the sequence is beyond
// the journal's last).
type EventLine struct {
	Seq           uint64          `json:"seq,omitempty"`
	Time          string          `json:"time,omitempty"`
	Topic         string          `json:"topic,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 *string         `json:"payload_base64,omitempty"`
	Gap           *JournalGap     `json:"gap,omitempty"`
	Truncated     *Truncated      `json:"truncated,omitempty"`
	Reset         *Reset          `json:"reset,omitempty"`
}

// PayloadBytes is the payload as the publisher sent it.
func (e EventLine) PayloadBytes() ([]byte, error) {
	if e.PayloadBase64 != nil {
		return base64.StdEncoding.DecodeString(*e.PayloadBase64)
	}
	return e.Payload, nil
}

// Truncated says that the history asked for is older than what the
// journal keeps: the read starts at FirstSeq instead.
type Truncated struct {
	Requested     uint64     `json:"requested,omitempty"`
	RequestedTime *time.Time `json:"requested_time,omitempty"`
	FirstSeq      uint64     `json:"first_seq"`
	FirstTime     *time.Time `json:"first_time,omitempty"`
}

// Reset says that the sequence asked for is beyond the journal's last one
// (a journal that was wiped and started again, or a client's mistake): the
// read starts after the last message instead.
type Reset struct {
	Requested uint64 `json:"requested"`
	LastSeq   uint64 `json:"last_seq"`
}
