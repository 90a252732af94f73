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

	Gerrit   []GerritSource  `json:"gerrit,omitempty"`
	TLS      *TLSStatus      `json:"tls,omitempty"`
	Firewall *FirewallStatus `json:"firewall,omitempty"`
	Journal  *JournalStatus  `json:"journal,omitempty"`
	Cluster  *ClusterStatus  `json:"cluster,omitempty"`
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
}

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
