package firewall

import (
	"testing"
)

// TestClusterRoutePortPeersOnly: the route port of an embedded cluster is
// open to the configured peers' addresses and to no one else, over IPv4
// and IPv6, and follows the peer list across updates (reloads).
func TestClusterRoutePortPeersOnly(t *testing.T) {
	const route = 6222
	l := newLabNamed(t, "fhclu")
	l.listen(t, route)
	m := l.manager(t)
	cfg := func(peers ...string) {
		t.Helper()
		c := testConfig()
		c.Cluster.Name = "fh1"
		c.Cluster.Listen = "10.231.0.1:6222"
		c.Cluster.Peers = append([]string{"10.231.0.1:6222"}, peers...)
		if err := m.Update(c); err != nil {
			t.Fatal(err)
		}
	}

	// The client's addresses are 10.231.0.2 and fd00:231::2.
	cfg("10.231.0.2:6222", "10.231.0.3:6222")
	l.mustConnect(t, srv4, route)
	l.mustBeBlocked(t, srv6, route)

	cfg("10.231.0.3:6222", "[fd00:231::2]:6222")
	l.mustBeBlocked(t, srv4, route)
	l.mustConnect(t, srv6, route)

	cfg("10.231.0.9:6222")
	l.mustBeBlocked(t, srv4, route)
	l.mustBeBlocked(t, srv6, route)
}
