package daemon_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startNATSCluster runs a real three-node nats-server cluster with
// JetStream in the test process, on loopback ports, and returns its
// client URLs and the servers.
func startNATSCluster(t *testing.T, n int) ([]string, []*server.Server) {
	t.Helper()
	var routes []*url.URL
	var ports []int
	for range n {
		p := freePort(t)
		ports = append(ports, p)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var urls []string
	var srvs []*server.Server
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("ext%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   filepath.Join(t.TempDir(), "js"),
			Cluster:    server.ClusterOpts{Name: "ext", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
			NoSigs:     true,
			NoLog:      true,
			// Bounded, as the appliance bounds its own.
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  1 << 30,
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats-server %d did not start", i+1)
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		urls = append(urls, s.ClientURL())
		srvs = append(srvs, s)
	}
	return urls, srvs
}

// startExternalCluster starts n daemons that use the external NATS
// cluster at urls instead of their embedded servers.
func startExternalCluster(t *testing.T, n int, urls []string) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := range n {
		toml := fmt.Sprintf("[journal]\nmax_bytes = \"64MiB\"\n\n[cluster]\nname = \"fh%d\"\nnats_urls = [\"%s\"]\n", i+1, strings.Join(urls, `", "`))
		d := startDaemon(t, daemonOpts{extra: toml})
		c.nodes = append(c.nodes, d)
	}
	for i := range n {
		c.waitQuorum(i)
	}
	return c
}

// TestClusterExternalNATS: the same guarantees with the appliances on an
// external three-node nats-server cluster: fan-out exactly once in order,
// the same sequence numbers everywhere, resume through another node; and
// the loss of one NATS server loses nothing acknowledged.
func TestClusterExternalNATS(t *testing.T) {
	urls, srvs := startNATSCluster(t, 3)
	c := startExternalCluster(t, 3, urls)
	checkFanOutAndResume(t, c)
	st := c.clusterStatus(0)
	if st.Cluster == nil || st.Cluster.Mode != "external" || st.Cluster.StreamLeader == "" || st.State != "ok" {
		t.Fatalf("status: %s %q %+v", st.State, st.Reasons, st.Cluster)
	}

	// One NATS server goes; the publisher keeps publishing through its
	// appliance, whose connection moves to another server.
	n1, n3 := c.nodes[0], c.nodes[2]
	s3 := subscribe(t, "tcp://"+n3.addr["mqtt"], "zuul/ext/#")
	p := startClusterPublisher(t, "ext-p", "tcp://"+n1.addr["mqtt"])
	eventually(t, "50 acknowledgements", func() bool { return p.ackedCount() >= 50 })
	srvs[0].Shutdown()
	before := p.ackedCount()
	deadline := time.Now().Add(120 * time.Second)
	for p.ackedCount() < before+100 {
		if time.Now().After(deadline) {
			t.Fatalf("after a NATS server stopped: %d more acknowledged", p.ackedCount()-before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.halt()
	p.mu.Lock()
	acked := append([]string(nil), p.acked...)
	p.mu.Unlock()
	journal := payloads(t, c.nodes[1].history(url.Values{"filter": {"zuul/ext/#"}, "since": {"1"}, "limit": {"10000"}}))
	count := map[string]int{}
	for _, m := range journal {
		count[m]++
	}
	for _, m := range acked {
		if count[m] != 1 {
			t.Errorf("acknowledged %s is in the journal %d times", m, count[m])
		}
	}
	var got []string
	for len(got) < len(journal) {
		got = append(got, string(s3.next().Payload()))
	}
	if !equalStrings(got, journal) {
		t.Errorf("node 3's subscriber did not receive the journal in order")
	}
}
