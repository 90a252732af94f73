package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Cluster joins this appliance to others on one bus: either their embedded
// nats-servers form a JetStream cluster over routes (listen, peers), or
// every appliance uses an external NATS cluster (nats_urls). Either way the
// journal's stream is replicated and every node fans it out to its own
// clients. Without listen or nats_urls the appliance stands alone.
type Cluster struct {
	// Name is this node's name in the cluster: unique among the nodes,
	// kept across restarts (it is the JetStream server name).
	Name string `toml:"name"`
	// Listen is the route address, "HOST:PORT" (NATS' usual 6222).
	Listen string `toml:"listen"`
	// Peers are the other nodes' route addresses, "HOST:PORT" or
	// "nats-route://HOST:PORT"; this node's own address may be listed too,
	// so that every node can share one list.
	Peers []string `toml:"peers"`
	// Replicas is how many nodes keep each message (the stream's R).
	Replicas int `toml:"replicas"`
	// Mutual TLS on routes (embedded) or to the NATS servers (external):
	// this node's certificate and key, and the CA that signs the others'.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	TLSCA   string `toml:"tls_ca"`

	// NATSURLs use an external NATS cluster instead of the embedded one.
	NATSURLs     []string `toml:"nats_urls"`
	CredsFile    string   `toml:"creds_file"`
	User         string   `toml:"user"`
	PasswordFile string   `toml:"password_file"`
	TokenFile    string   `toml:"token_file"`

	// DedupeWindow is how long the stream remembers message IDs: a
	// publish retried after a stream leader change within it lands once.
	DedupeWindow Duration `toml:"dedupe_window"`
}

// Enabled reports whether this appliance is part of a cluster.
func (c Cluster) Enabled() bool { return c.Listen != "" || len(c.NATSURLs) > 0 }

// External reports whether the cluster is an external NATS cluster.
func (c Cluster) External() bool { return len(c.NATSURLs) > 0 }

func defaultCluster() Cluster {
	return Cluster{Replicas: 3, DedupeWindow: Duration(2 * time.Minute)}
}

// MaxReplicas is JetStream's limit on a stream's replicas.
const MaxReplicas = 5

// PeerURLs returns the peers as route URLs, without this node's own
// listen address. Call it on a validated config.
func (c Cluster) PeerURLs() []*url.URL {
	var out []*url.URL
	seen := map[string]bool{}
	for _, p := range c.Peers {
		u, err := parseRoute(p)
		if err != nil || sameAddr(u.Host, c.Listen) || seen[u.Host] {
			continue
		}
		seen[u.Host] = true
		out = append(out, u)
	}
	return out
}

// Nodes is the number of nodes the embedded cluster has: this one and its
// distinct peers.
func (c Cluster) Nodes() int { return len(c.PeerURLs()) + 1 }

func parseRoute(p string) (*url.URL, error) {
	if !strings.Contains(p, "://") {
		p = "nats-route://" + p
	}
	u, err := url.Parse(p)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls" {
		return nil, errScheme
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Path != "" && u.Path != "/" {
		return nil, errHostPort
	}
	return u, nil
}

type constErr string

func (e constErr) Error() string { return string(e) }

const (
	errScheme   = constErr("scheme")
	errHostPort = constErr("host:port")
)

// sameAddr reports whether two HOST:PORT are the same address as far as
// the config can tell (same port and same host, or a listen on any host).
func sameAddr(a, listen string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	lh, lp, err2 := net.SplitHostPort(listen)
	if err1 != nil || err2 != nil || ap != lp {
		return false
	}
	return ah == lh
}

func (c *Cluster) validate(v *validator, journalOn bool) {
	c.TLSCert, c.TLSKey, c.TLSCA = expandCredentials(c.TLSCert), expandCredentials(c.TLSKey), expandCredentials(c.TLSCA)
	c.CredsFile, c.PasswordFile, c.TokenFile = expandCredentials(c.CredsFile), expandCredentials(c.PasswordFile), expandCredentials(c.TokenFile)
	k := func(name string) Key { return Key{"cluster", name} }
	if !c.Enabled() {
		for _, f := range []struct {
			key string
			set bool
		}{{"name", c.Name != ""}, {"peers", len(c.Peers) > 0}, {"tls_cert", c.TLSCert != ""}, {"tls_key", c.TLSKey != ""}, {"tls_ca", c.TLSCA != ""},
			{"creds_file", c.CredsFile != ""}, {"user", c.User != ""}, {"password_file", c.PasswordFile != ""}, {"token_file", c.TokenFile != ""}} {
			v.check(!f.set, k(f.key), "has no effect without cluster.listen (an embedded cluster) or cluster.nats_urls (an external one)")
		}
		return
	}
	on := "listen"
	if c.External() {
		on = "nats_urls"
	}
	v.check(journalOn, k(on), "a cluster shares the journal: it needs [journal] enabled = true")
	v.check(c.Replicas >= 1 && c.Replicas <= MaxReplicas, k("replicas"), "must be between 1 and %d", MaxReplicas)
	v.check(c.DedupeWindow.D() >= time.Second, k("dedupe_window"), "must be at least 1s")
	if c.Name == "" {
		v.fail(k("name"), "is required in a cluster: this node's name, unique among the nodes and kept across restarts")
	} else {
		v.check(validNodeName(c.Name), k("name"), "%q: use letters, digits, '-' and '_' only", c.Name)
	}
	tlsSet := c.TLSCert != "" || c.TLSKey != "" || c.TLSCA != ""
	if tlsSet {
		if c.External() {
			// Server verification needs the CA; a client certificate is optional.
			v.readable(c.TLSCA, k("tls_ca"), "the CA certificate that signs the NATS servers' certificates")
			if c.TLSCert != "" || c.TLSKey != "" {
				v.readable(c.TLSCert, k("tls_cert"), "this node's client certificate")
				v.readable(c.TLSKey, k("tls_key"), "this node's client key")
			}
		} else {
			v.readable(c.TLSCert, k("tls_cert"), "this node's route certificate (routes use mutual TLS)")
			v.readable(c.TLSKey, k("tls_key"), "this node's route key")
			v.readable(c.TLSCA, k("tls_ca"), "the CA certificate that signs every node's route certificate")
		}
	}
	if c.External() {
		v.check(c.Listen == "", k("listen"), "cannot be used with nats_urls: either the embedded servers form the cluster (listen, peers) or an external one is used (nats_urls)")
		v.check(len(c.Peers) == 0, k("peers"), "cannot be used with nats_urls: the external NATS cluster has its own routes")
		for i, s := range c.NATSURLs {
			u, err := url.Parse(s)
			ok := err == nil && (u.Scheme == "nats" || u.Scheme == "tls") && u.Host != "" && u.User == nil
			v.check(ok, Key{"cluster", "nats_urls", i}, "%q is not a nats:// or tls:// URL without credentials (put those in creds_file, user and password_file, or token_file)", s)
		}
		n := 0
		for _, set := range []bool{c.CredsFile != "", c.User != "" || c.PasswordFile != "", c.TokenFile != ""} {
			if set {
				n++
			}
		}
		v.check(n <= 1, k("creds_file"), "use one of creds_file, user and password_file, or token_file")
		if c.CredsFile != "" {
			v.readable(c.CredsFile, k("creds_file"), "the NATS credentials file")
		}
		if c.User != "" || c.PasswordFile != "" {
			v.check(c.User != "", k("user"), "is required with password_file")
			v.readable(c.PasswordFile, k("password_file"), "the NATS password")
		}
		if c.TokenFile != "" {
			v.readable(c.TokenFile, k("token_file"), "the NATS token")
		}
		return
	}
	for _, key := range []string{"creds_file", "user", "password_file", "token_file"} {
		set := map[string]bool{"creds_file": c.CredsFile != "", "user": c.User != "", "password_file": c.PasswordFile != "", "token_file": c.TokenFile != ""}[key]
		v.check(!set, k(key), "is for an external NATS cluster (nats_urls); routes between embedded servers use tls_cert, tls_key and tls_ca")
	}
	if !validAddr(c.Listen) {
		v.fail(k("listen"), "%q is not a listen address (write \"HOST:PORT\", such as \"10.0.0.1:6222\")", c.Listen)
	} else if _, port, _ := net.SplitHostPort(c.Listen); port == "0" {
		v.fail(k("listen"), "needs a fixed port: the other nodes connect to it")
	}
	if len(c.Peers) == 0 {
		v.fail(k("peers"), "is required: the other nodes' route addresses, such as [\"10.0.0.2:6222\", \"10.0.0.3:6222\"]")
	}
	for i, p := range c.Peers {
		if _, err := parseRoute(p); err != nil {
			v.fail(Key{"cluster", "peers", i}, "%q is not a route address (write \"HOST:PORT\" or \"nats-route://HOST:PORT\")", p)
		}
	}
	if n := c.Nodes(); c.Replicas >= 1 && c.Replicas > n {
		v.fail(k("replicas"), "is %d, but the cluster has %d node%s (this one and %d peer%s)", c.Replicas, n, plural(n), n-1, plural(n-1))
	}
}

func validNodeName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
