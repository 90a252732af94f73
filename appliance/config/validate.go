package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/firehose/firehose/appliance/topic"
)

// MaxPacketSizeLimit is the largest packet MQTT can frame.
const MaxPacketSizeLimit = 268435455

// validate checks what decoding cannot: ranges, required keys, references
// between keys, and that the files the config names can be read.
func (c *Config) validate() []fieldError {
	var v validator
	b := c.Broker
	for _, l := range []struct {
		key, addr string
	}{{"mqtt", b.MQTT}, {"websocket", b.Websocket}, {"mqtts", b.MQTTS}, {"websocket_tls", b.WebsocketTLS}} {
		if l.addr != "" {
			v.check(validAddr(l.addr), Key{"broker", l.key}, "%q is not a listen address (write \"HOST:PORT\", \":PORT\", or \"\" for off)", l.addr)
		}
	}
	v.check(b.MaxClients >= 1, Key{"broker", "max_clients"}, "must be at least 1")
	v.check(b.MaxPacketSize >= 64 && b.MaxPacketSize <= MaxPacketSizeLimit, Key{"broker", "max_packet_size"}, "must be between 64 and %d bytes", MaxPacketSizeLimit)
	v.check(b.ConnectTimeout > 0, Key{"broker", "connect_timeout"}, "must be longer than 0s")
	v.check(filepath.IsAbs(b.StateDir), Key{"broker", "state_dir"}, "must be an absolute path")
	v.check(filepath.IsAbs(c.Control.Socket), Key{"control", "socket"}, "must be an absolute path")

	users := map[string]int{}
	for i, p := range c.Publishers {
		k := Key{"publisher", i}
		if v.check(p.Username != "", k.Append("username"), "is required") {
			if first, dup := users[p.Username]; dup {
				v.fail(k.Append("username"), "%q is already used by publisher[%d]", p.Username, first)
			}
			users[p.Username] = i
		}
		if p.PasswordHash == "" {
			v.fail(k.Append("password_hash"), "is required (make one with: firehosectl passwd)")
		} else if _, err := bcrypt.Cost([]byte(p.PasswordHash)); err != nil {
			v.fail(k.Append("password_hash"), "is not a bcrypt hash (make one with: firehosectl passwd)")
		}
		v.check(len(p.Topics) > 0, k.Append("topics"), "is required: list the topic filters this publisher may publish to, such as [\"%s/#\"]", orDefault(p.Username, "service"))
		for j, f := range p.Topics {
			switch {
			case !topic.ValidFilter(f):
				v.fail(k.Append("topics", j), "%q is not a valid MQTT topic filter", f)
			case strings.HasPrefix(f, "$"):
				v.fail(k.Append("topics", j), "%q: topics starting with '$' belong to the broker", f)
			}
		}
	}

	names := map[string]int{}
	for i := range c.Gerrit {
		g := &c.Gerrit[i]
		k := Key{"gerrit", i}
		if v.check(g.Name != "", k.Append("name"), "is required (a short name used in status and logs)") {
			if first, dup := names[g.Name]; dup {
				v.fail(k.Append("name"), "%q is already used by gerrit[%d]", g.Name, first)
			}
			names[g.Name] = i
		}
		v.check(g.Host != "", k.Append("host"), "is required")
		v.check(g.Port >= 1 && g.Port <= 65535, k.Append("port"), "must be between 1 and 65535")
		v.check(g.User != "", k.Append("user"), "is required")
		g.KeyFile = expandCredentials(g.KeyFile)
		g.KnownHosts = expandCredentials(g.KnownHosts)
		g.EventsLogPasswordFile = expandCredentials(g.EventsLogPasswordFile)
		v.readable(g.KeyFile, k.Append("key_file"), "the SSH private key")
		v.readable(g.KnownHosts, k.Append("known_hosts"), "the known_hosts file (host keys are always verified)")
		v.check(topic.ValidName(g.Topic) && !strings.HasPrefix(g.Topic, "$"), k.Append("topic"), "%q is not a valid base topic", g.Topic)
		v.check(g.QoS == 0 || g.QoS == 1, k.Append("qos"), "must be 0 or 1")
		v.check(g.Keepalive > 0, k.Append("keepalive"), "must be longer than 0s")
		if g.EventsLogURL != "" {
			u, err := url.Parse(g.EventsLogURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.fail(k.Append("events_log_url"), "%q is not an http(s) URL", g.EventsLogURL)
			}
			v.check(g.EventsLogUser != "", k.Append("events_log_user"), "is required with events_log_url")
			v.readable(g.EventsLogPasswordFile, k.Append("events_log_password_file"), "the events-log HTTP password")
		}
	}

	c.TLS.CertFile = expandCredentials(c.TLS.CertFile)
	c.TLS.KeyFile = expandCredentials(c.TLS.KeyFile)
	t := c.TLS
	switch t.Mode {
	case TLSOff:
	case TLSFiles:
		v.readable(t.CertFile, Key{"tls", "cert_file"}, "the PEM certificate chain")
		v.readable(t.KeyFile, Key{"tls", "key_file"}, "the PEM private key")
	case TLSACME:
		v.check(len(t.Domains) > 0, Key{"tls", "domains"}, "is required with mode = \"acme\": the names to obtain certificates for")
		for j, d := range t.Domains {
			v.check(d != "" && !strings.ContainsAny(d, " /:"), Key{"tls", "domains", j}, "%q is not a domain name", d)
		}
		v.check(t.Email != "", Key{"tls", "email"}, "is required with mode = \"acme\" (the CA's contact for this account)")
		if t.ACMECA != "" {
			u, err := url.Parse(t.ACMECA)
			v.check(err == nil && u.Scheme == "https" && u.Host != "", Key{"tls", "acme_ca"}, "%q is not an https directory URL", t.ACMECA)
		}
		if t.ACMECARoot != "" {
			v.readable(t.ACMECARoot, Key{"tls", "acme_ca_root"}, "the CA root certificates")
		}
	default:
		v.fail(Key{"tls", "mode"}, "%q is not one of \"off\", \"files\", \"acme\"", t.Mode)
	}

	v.limits(c)

	for j, p := range c.Firewall.AllowTCP {
		v.check(p >= 1 && p <= 65535, Key{"firewall", "allow_tcp", j}, "%d is not a port", p)
	}
	for j, p := range c.Firewall.AllowUDP {
		v.check(p >= 1 && p <= 65535, Key{"firewall", "allow_udp", j}, "%d is not a port", p)
	}

	if m := c.Metrics.Listen; v.check(validAddr(m), Key{"metrics", "listen"}, "%q is not a listen address (write \"HOST:PORT\", such as %q)", m, DefaultMetricsListen) && c.Metrics.Enabled {
		// The firewall opens the broker's ports to everyone; metrics on one
		// of them would be public (and could not bind anyway).
		_, port, _ := net.SplitHostPort(m)
		for _, l := range []struct{ key, addr string }{{"mqtt", b.MQTT}, {"websocket", b.Websocket}, {"mqtts", b.MQTTS}, {"websocket_tls", b.WebsocketTLS}} {
			if _, p, err := net.SplitHostPort(l.addr); err == nil && p == port && port != "0" {
				v.fail(Key{"metrics", "listen"}, "%q uses port %s, the port of broker.%s, which is public; choose a port of its own", m, port, l.key)
			}
		}
	}
	c.Journal.validate(&v)
	p := c.Page
	v.check(p.Title != "" && utf8.RuneCountInString(p.Title) <= 100 && printable(p.Title), Key{"page", "title"}, "must be 1 to 100 printable characters")
	if p.Hostname != "" {
		v.check(ValidHostname(p.Hostname), Key{"page", "hostname"}, "%q is not a host name or IP address (write it without scheme or port, like \"firehose.example.org\")", p.Hostname)
	}
	c.Cluster.validate(&v, c.Journal.Enabled)
	return v.errs
}

// ValidHostname reports whether h is a DNS name or an IP address, as clients
// are told to connect to it.
func ValidHostname(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}

type validator struct{ errs []fieldError }

func (v *validator) fail(k Key, format string, args ...any) {
	v.errs = append(v.errs, fieldError{k, fmt.Sprintf(format, args...)})
}

// check records an error unless ok, and returns ok.
func (v *validator) check(ok bool, k Key, format string, args ...any) bool {
	if !ok {
		v.fail(k, format, args...)
	}
	return ok
}

func (v *validator) readable(path string, k Key, what string) {
	if path == "" {
		v.fail(k, "is required: %s", what)
		return
	}
	// Regular files only: the checks that read it later must not block.
	f, err := openRegular(path)
	if err != nil {
		v.fail(k, "cannot read %s: %v", what, unwrapPath(err))
		return
	}
	f.Close()
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func validAddr(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// expandCredentials resolves $CREDENTIALS_DIRECTORY, where systemd's
// LoadCredential= puts secrets the unprivileged daemon could not read in /etc.
func expandCredentials(p string) string {
	if !strings.Contains(p, "CREDENTIALS_DIRECTORY") {
		return p
	}
	return os.Expand(p, func(name string) string {
		if name == "CREDENTIALS_DIRECTORY" {
			return os.Getenv(name)
		}
		return "$" + name
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Bounds of the [limits] keys.
const (
	// MaxTopicLevelsLimit: the embedded broker indexes a filter of n levels
	// in O(n²) under its one index lock (200 levels: 0.3 ms per subscription).
	MaxTopicLevelsLimit = 1000
	minQueuedBytes      = 64 << 10
	minMemoryLimit      = 64 << 20
	// MaxSessionExpiry is the longest any session outlives its connection.
	MaxSessionExpiry = time.Hour
)

func (v *validator) limits(c *Config) {
	l := c.Limits
	k := func(name string) Key { return Key{"limits", name} }
	v.check(l.MaxTopicLevels >= 1 && l.MaxTopicLevels <= MaxTopicLevelsLimit, k("max_topic_levels"),
		"must be between 1 and %d (the broker's topic index costs the square of the levels)", MaxTopicLevelsLimit)
	v.check(l.MaxTopicLength >= 1 && l.MaxTopicLength <= topic.MaxLen, k("max_topic_length"), "must be between 1 and %d bytes", topic.MaxLen)
	v.check(l.MaxSubscriptionsPerClient >= 1, k("max_subscriptions_per_client"), "must be at least 1")
	v.check(l.MaxConnectionsPerAddress >= 1, k("max_connections_per_address"), "must be at least 1")
	v.size(l.MaxQueuedBytes, minQueuedBytes, k("max_queued_bytes"), "must be at least %s", Size(minQueuedBytes))
	v.check(l.MemoryLimit == SizeAuto || l.MemoryLimit >= minMemoryLimit, k("memory_limit"), "must be \"auto\" or at least %s", Size(minMemoryLimit))
	v.check(l.MaxRetainedMessages >= 0, k("max_retained_messages"), "must be 0 (no retained messages) or more")
	v.size(l.MaxRetainedBytes, 0, k("max_retained_bytes"), "must be 0 (no retained messages) or more")
	v.wholeSeconds(l.MaxKeepalive, 1, 65535, k("max_keepalive"))
	v.wholeSeconds(l.AnonymousSessionExpiry, 0, int64(MaxSessionExpiry/time.Second), k("anonymous_session_expiry"))
	// A wait longer than broker.connect_timeout is cut short by it.
	v.check(l.AuthWait > 0, k("auth_wait"), "must be longer than 0s")
	for j, a := range l.ExemptAddresses {
		if _, err := ParsePrefix(a); err != nil {
			v.fail(k("exempt_addresses").Append(j), "%v", err)
		}
	}
}

// size checks a Size that has no "auto" against its minimum.
func (v *validator) size(z Size, min Size, k Key, format string, args ...any) {
	if z == SizeAuto {
		v.fail(k, "\"auto\" is only for memory_limit: give a size such as \"8MiB\"")
		return
	}
	v.check(z >= min, k, format, args...)
}

// wholeSeconds checks that d is a whole number of seconds in [lo, hi].
func (v *validator) wholeSeconds(d Duration, lo, hi int64, k Key) {
	s := d.D() / time.Second
	if d.D()%time.Second != 0 || int64(s) < lo || int64(s) > hi {
		v.fail(k, "must be a whole number of seconds between %s and %s", time.Duration(lo)*time.Second, time.Duration(hi)*time.Second)
	}
}
