// Package config owns firehose.toml: its schema, defaults, and validation.
// Every error it returns names the file, the line and the key at fault, so an
// operator can fix a config without reading code. It never touches the network
// or the broker; other packages receive a validated *Config.
package config

import (
	"time"
)

// DefaultPath is where packages install the configuration.
const DefaultPath = "/etc/firehose/firehose.toml"

// Config is one validated firehose.toml.
type Config struct {
	// Path is the file the config was read from; errors and status name it.
	Path string `toml:"-"`

	Broker     Broker      `toml:"broker"`
	Control    Control     `toml:"control"`
	Publishers []Publisher `toml:"publisher"`
	Gerrit     []Gerrit    `toml:"gerrit"`
	TLS        TLS         `toml:"tls"`
	Firewall   Firewall    `toml:"firewall"`
	Journal    Journal     `toml:"journal"`
	Cluster    Cluster     `toml:"cluster"`

	src []byte // the raw file, kept to locate keys for errors found after parsing
}

// Broker configures the MQTT listeners and the limits every client is held to.
type Broker struct {
	MQTT           string   `toml:"mqtt"`          // plain MQTT address; "" = off
	Websocket      string   `toml:"websocket"`     // MQTT over websockets; "" = off
	MQTTS          string   `toml:"mqtts"`         // MQTT over TLS; used only when TLS is on
	WebsocketTLS   string   `toml:"websocket_tls"` // websockets over TLS; used only when TLS is on
	MaxClients     int      `toml:"max_clients"`
	MaxPacketSize  int      `toml:"max_packet_size"` // bytes
	ConnectTimeout Duration `toml:"connect_timeout"`
	StateDir       string   `toml:"state_dir"`
}

// Control configures the local control API used by firehosectl.
type Control struct {
	Socket string `toml:"socket"`
}

// Publisher is a service account allowed to publish under its own topics.
type Publisher struct {
	Username     string   `toml:"username"`
	PasswordHash string   `toml:"password_hash"` // bcrypt
	Topics       []string `toml:"topics"`        // MQTT filters it may publish to
}

// Gerrit is one Gerrit server whose stream-events are republished.
type Gerrit struct {
	Name                  string   `toml:"name"`
	Host                  string   `toml:"host"`
	Port                  int      `toml:"port"`
	User                  string   `toml:"user"`
	KeyFile               string   `toml:"key_file"`
	KnownHosts            string   `toml:"known_hosts"`
	Topic                 string   `toml:"topic"`
	QoS                   int      `toml:"qos"`
	Keepalive             Duration `toml:"keepalive"`
	EventsLogURL          string   `toml:"events_log_url"`
	EventsLogUser         string   `toml:"events_log_user"`
	EventsLogPasswordFile string   `toml:"events_log_password_file"`
}

// TLS modes.
const (
	TLSOff   = "off"
	TLSFiles = "files"
	TLSACME  = "acme"
)

// TLS configures the mqtts and websocket_tls listeners.
type TLS struct {
	Mode       string   `toml:"mode"` // off | files | acme
	CertFile   string   `toml:"cert_file"`
	KeyFile    string   `toml:"key_file"`
	Domains    []string `toml:"domains"`
	Email      string   `toml:"email"`
	ACMECA     string   `toml:"acme_ca"`
	ACMECARoot string   `toml:"acme_ca_root"`
}

// Firewall configures the appliance's own nftables table.
type Firewall struct {
	Enabled  bool  `toml:"enabled"`
	AllowTCP []int `toml:"allow_tcp"`
	AllowUDP []int `toml:"allow_udp"`
	// NewConnectionsPerSource is "N/second" (or minute, hour); "" disables.
	NewConnectionsPerSource Rate `toml:"new_connections_per_source"`
}

// Duration is a time.Duration written as a Go duration string ("10s", "1m30s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Rate is a count per unit of time, written "50/second"; the zero Rate is off.
type Rate struct {
	Count int
	Per   time.Duration
}

// IsZero reports whether the limit is off.
func (r Rate) IsZero() bool { return r.Count == 0 }

func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	unit := map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour"}[r.Per]
	return itoa(r.Count) + "/" + unit
}
