// Package apitype holds the wire types of the control API, shared by the
// daemon that serves them and the CLI that prints them. It has no behaviour
// and imports nothing of the appliance, so the CLI can use it without pulling
// in the broker.
package apitype

import "time"

// Status is GET /v0/status; `firehosectl status --json` prints it as served.
type Status struct {
	Version       string    `json:"version"`
	Config        string    `json:"config"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// State is StateOK or StateDegraded; Reasons says why when degraded.
	State   string   `json:"state"`
	Reasons []string `json:"reasons,omitempty"`

	Listeners     []Listener `json:"listeners"`
	Clients       int64      `json:"clients"`
	Subscriptions int64      `json:"subscriptions"`
	Messages      Messages   `json:"messages"`
	Publishers    []string   `json:"publishers"`
	LastReload    *Reload    `json:"last_reload,omitempty"`
	// Redacted is set for a peer that may not read the config: the
	// reasons, reload error, publishers and the parts' sections are left out.
	Redacted bool `json:"redacted,omitempty"`

	Gerrit   []GerritSource  `json:"gerrit,omitempty"`
	TLS      *TLSStatus      `json:"tls,omitempty"`
	Firewall *FirewallStatus `json:"firewall,omitempty"`
	Metrics  *MetricsStatus  `json:"metrics,omitempty"`
	Journal  *JournalStatus  `json:"journal,omitempty"`
	Cluster  *ClusterStatus  `json:"cluster,omitempty"`

	// Connections counts every open socket on the listeners: MQTT clients,
	// connections that have not sent CONNECT yet, and HTTP requests on the
	// websocket ports.
	Connections int64 `json:"connections"`
	// Refusals counts, by kind, what the access rules and [limits] turned
	// away since start (kinds are named in the README, "Public exposure").
	Refusals map[string]int64 `json:"refusals,omitempty"`
}

// States of the appliance.
const (
	StateOK       = "ok"
	StateDegraded = "degraded"
)

// Listener is one socket the broker serves.
type Listener struct {
	Name    string `json:"name"`    // mqtt, ws, mqtts, wss
	Address string `json:"address"` // the socket's local address
	Source  string `json:"source"`  // SourceSystemd or SourceBound
	TLS     bool   `json:"tls"`
	Clients int64  `json:"clients"`
}

// Where a listener's socket came from.
const (
	SourceSystemd = "systemd"
	SourceBound   = "bound"
)

// Messages counts PUBLISH packets: totals since start and a per-second rate
// over the last minute.
type Messages struct {
	ReceivedTotal  int64   `json:"received_total"`
	SentTotal      int64   `json:"sent_total"`
	DroppedTotal   int64   `json:"dropped_total"`
	ReceivedPerSec float64 `json:"received_per_sec"`
	SentPerSec     float64 `json:"sent_per_sec"`
	DroppedPerSec  float64 `json:"dropped_per_sec"`
	// Drops counts deliveries lost, by reason (the Drop* constants).
	Drops map[string]int64 `json:"drops,omitempty"`
}

// Why a delivery was lost.
const (
	// DropSlowSubscriber: the subscriber's queue was full (DroppedTotal).
	DropSlowSubscriber = "slow_subscriber"
	// DropInflight: a QoS 1 or 2 message that did not fit the subscriber's
	// inflight window, or expired in it.
	DropInflight = "inflight"
)

// Reload is the outcome of the last reload.
type Reload struct {
	Time  time.Time `json:"time"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// ReloadResponse is POST /v0/reload. Err is set when Reloaded is false.
type ReloadResponse struct {
	Reloaded bool   `json:"reloaded"`
	Err      string `json:"error,omitempty"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Err string `json:"error"`
}
