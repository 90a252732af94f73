// Package config owns firehose.toml: its schema, defaults, and validation.
// Every error it returns names the file, the line and the key at fault, so an
// operator can fix a config without reading code. It never touches the network
// or the broker; other packages receive a validated *Config.
package config

import (
	"net/netip"
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
	Limits     Limits      `toml:"limits"`
	Metrics    Metrics     `toml:"metrics"`
	Journal    Journal     `toml:"journal"`
	Page       Page        `toml:"page"`
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

// Limits bounds what one client, one source address, and all clients
// together may cost the broker. Every limit applies live on reload. Anonymous
// clients are held to all of them; publisher accounts are trusted with their
// keepalive and session, but not with topic shape or queue size.
type Limits struct {
	MaxTopicLevels            int      `toml:"max_topic_levels"`
	MaxTopicLength            int      `toml:"max_topic_length"` // bytes, names and filters
	MaxSubscriptionsPerClient int      `toml:"max_subscriptions_per_client"`
	MaxConnectionsPerAddress  int      `toml:"max_connections_per_address"` // IPv4 address or IPv6 /64
	MaxQueuedBytes            Size     `toml:"max_queued_bytes"`            // per subscriber
	MaxKeepalive              Duration `toml:"max_keepalive"`
	MemoryLimit               Size     `toml:"memory_limit"` // SizeAuto: half the host's memory
	MaxRetainedMessages       int      `toml:"max_retained_messages"`
	MaxRetainedBytes          Size     `toml:"max_retained_bytes"`
	AnonymousSessionExpiry    Duration `toml:"anonymous_session_expiry"`
	AuthFailuresPerAddress    Rate     `toml:"auth_failures_per_address"`
	AuthFailuresPerAccount    Rate     `toml:"auth_failures_per_account"`
	AuthWait                  Duration `toml:"auth_wait"`
	// ExemptAddresses are addresses or CIDR prefixes ("10.0.0.0/8") that the
	// per-address limits skip; Exempt returns them parsed.
	ExemptAddresses []string `toml:"exempt_addresses"`
}

// Exempt returns ExemptAddresses as prefixes (a lone address is its own
// /32 or /128). Entries that do not parse are skipped: validation has
// already refused them.
func (l Limits) Exempt() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.ExemptAddresses))
	for _, s := range l.ExemptAddresses {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
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

// Metrics configures the Prometheus endpoint, /metrics on an address of its
// own. It is meant for a monitoring network, never the public one: the
// firewall does not open its port.
type Metrics struct {
	Enabled bool   `toml:"enabled"`
	Listen  string `toml:"listen"` // HOST:PORT; loopback by default
}

// Page configures the page served at / on the websocket listeners.
type Page struct {
	Title string `toml:"title"`
	// Hostname is the name the instructions tell clients to connect to;
	// "" = the first ACME domain, else the host the visitor asked for.
	Hostname string `toml:"hostname"`
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

// Size is a number of bytes, written "8MiB", "512KiB", "1GB" or as a plain
// integer. SizeAuto ("auto") lets the daemon choose, where a key allows it.
type Size int64

// SizeAuto is the Size written "auto".
const SizeAuto Size = -1

func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	unit := map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour"}[r.Per]
	return itoa(r.Count) + "/" + unit
}
