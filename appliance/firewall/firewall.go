// Package firewall owns the appliance's nftables table, "table inet firehose":
// it derives the rules from the configuration, writes them to the kernel over
// netlink in one atomic batch, puts them back when something removes them, and
// prints them in nft syntax for operators.
//
// It must never touch any other table, chain or ruleset of the host (no
// "flush ruleset", no edits to tables it did not create), never shell out to
// nft, and never remove its table merely because the daemon stops: a restart
// must not leave the host open.
package firewall

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/firehose/firehose/appliance/config"
)

// TableName is the one table this package creates, in the inet family so a
// single chain covers IPv4 and IPv6.
const TableName = "firehose"

// plan is everything the kernel rules depend on, derived from a config. Render
// and the netlink batch are both built from it, so they cannot drift apart.
type plan struct {
	tcp     []int // accepted from anywhere: listener ports and allow_tcp
	udp     []int // allow_udp
	limited []int // broker ports held to rate per source address
	rate    config.Rate
	// route is the cluster's route port (embedded cluster only), open to
	// the configured peers' addresses alone.
	route          int
	peers4, peers6 []net.IP
}

// ListenerPorts returns the TCP ports of the configured broker listeners,
// sorted and without duplicates. mqtts and websocket_tls count only when TLS
// is on, since the daemon serves them only then. Addresses without a fixed
// port (":0", or anything unparsable) are left out: no rule can name them.
func ListenerPorts(c *config.Config) []int {
	b := c.Broker
	addrs := []string{b.MQTT, b.Websocket}
	if tlsOn(c) {
		addrs = append(addrs, b.MQTTS, b.WebsocketTLS)
	}
	var ports []int
	for _, a := range addrs {
		if p, ok := portOf(a); ok {
			ports = append(ports, p)
		}
	}
	return sortedSet(ports)
}

func tlsOn(c *config.Config) bool {
	return c.TLS.Mode != "" && c.TLS.Mode != config.TLSOff
}

// portOf returns the port of a "host:port" listen address; "" (off), port 0
// and malformed addresses give false.
func portOf(addr string) (int, bool) {
	if addr == "" {
		return 0, false
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	p, err := strconv.Atoi(port)
	if err != nil || !validPort(p) {
		return 0, false
	}
	return p, true
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

// sortedSet returns the valid ports of ps, sorted, each once, as a new slice.
func sortedSet(ps []int) []int {
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		if validPort(p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func newPlan(c *config.Config) *plan {
	listeners := ListenerPorts(c)
	f := c.Firewall
	p := &plan{
		tcp: sortedSet(append(slices.Clone(listeners), f.AllowTCP...)),
		udp: sortedSet(f.AllowUDP),
	}
	// The config package refuses rates below 1; anything it lets through
	// that the kernel cannot express means no limit rather than a failed load.
	if r := f.NewConnectionsPerSource; r.Count >= 1 && limitUnit(r.Per) != 0 && len(listeners) > 0 {
		r.Count = min(r.Count, maxRate)
		p.limited, p.rate = listeners, r
	}
	if cl := c.Cluster; cl.Enabled() && !cl.External() {
		if port, ok := portOf(cl.Listen); ok {
			p.route = port
			p.peers4, p.peers6 = peerAddrs(cl)
		}
	}
	return p
}

// peerAddrs returns the peers' addresses, sorted, each once. A peer named
// by host name is resolved now (at start and at each reload); one that
// does not resolve gets no rule, so its routes are refused until it does.
func peerAddrs(cl config.Cluster) (v4, v6 []net.IP) {
	for _, u := range cl.PeerURLs() {
		host := u.Hostname()
		ips := []net.IP{net.ParseIP(host)}
		if ips[0] == nil {
			ips, _ = net.LookupIP(host)
		}
		for _, ip := range ips {
			if ip4 := ip.To4(); ip4 != nil {
				v4 = append(v4, ip4)
			} else if ip != nil {
				v6 = append(v6, ip.To16())
			}
		}
	}
	return sortedIPs(v4), sortedIPs(v6)
}

func sortedIPs(ips []net.IP) []net.IP {
	slices.SortFunc(ips, func(a, b net.IP) int { return bytes.Compare(a, b) })
	return slices.CompactFunc(ips, func(a, b net.IP) bool { return a.Equal(b) })
}

// maxRate caps the count of a rate: far beyond any real client, and small
// enough that the kernel's token arithmetic cannot overflow.
const maxRate = 1_000_000

// floodTimeout is how long a source's entry in the rate-limit sets lives after
// its last new connection. At least one period, so that a source cannot reset
// its budget by pausing; an idle source's bucket is full again by then anyway.
func floodTimeout(r config.Rate) time.Duration {
	return max(r.Per, time.Minute)
}

// floodSize bounds the rate-limit sets. When a flood of distinct sources
// fills them, new sources go unlimited rather than refused: a per-source
// limit protects against one noisy client, not against a botnet.
const floodSize = 65536
