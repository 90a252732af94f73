package apitype

import "time"

// GerritSource is the status of one [[gerrit]] stream. Owned by the gerrit package.
type GerritSource struct {
	Name   string `json:"name"`
	Server string `json:"server"` // host:port
	// State is one of the Gerrit* constants. Anything but GerritStreaming
	// makes the appliance degraded.
	State string `json:"state"`
	// LastError is the error that ended the last connection or replay, kept
	// after recovery for diagnosis; LastErrorTime says when.
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
	// RetryAt is when the next connection attempt starts, while backing off.
	RetryAt *time.Time `json:"retry_at,omitempty"`
	// ConnectedSince is when the current SSH connection was established.
	ConnectedSince *time.Time `json:"connected_since,omitempty"`
	// LastEvent is when the last event was received (this host's clock);
	// LastEventCreated is its eventCreatedOn (Gerrit's clock).
	LastEvent        *time.Time `json:"last_event,omitempty"`
	LastEventCreated *time.Time `json:"last_event_created,omitempty"`

	EventsPublished   int64 `json:"events_published"`   // handed to the broker, replayed ones included
	Replayed          int64 `json:"replayed"`           // of those, recovered from the events-log
	DuplicatesSkipped int64 `json:"duplicates_skipped"` // events the replay and the stream both delivered
	ParseErrors       int64 `json:"parse_errors"`       // lines that are not a JSON object
	LinesTooLong      int64 `json:"lines_too_long"`     // lines over the size limit, skipped
	Reconnects        int64 `json:"reconnects"`
	Replays           int64 `json:"replays"`         // events-log replays done
	ReplayFailures    int64 `json:"replay_failures"` // replays given up: a gap was lost
	DroppedOutput     int64 `json:"dropped_output"`  // dropped-output markers Gerrit sent (it left events out)
	QueueLength       int   `json:"queue_length"`
	QueueOverflow     int64 `json:"queue_overflow"` // events dropped because the queue was full
	PublishErrors     int64 `json:"publish_errors"` // failed broker publishes (retried)
}

// States of a Gerrit source.
const (
	GerritConnecting = "connecting"
	GerritReplaying  = "replaying"
	GerritStreaming  = "streaming"
	GerritBackingOff = "backing off"
	GerritStopped    = "stopped"
)
