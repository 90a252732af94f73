package journal

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"
)

func freeRoute(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// openCluster opens n clustered journals on loopback routes.
func openCluster(t *testing.T, n int) ([]*Journal, []*sink) {
	t.Helper()
	js, sinks, _ := openClusterWith(t, n, nil)
	return js, sinks
}

// openClusterWith is openCluster with a hook run on each journal before
// it starts; it also returns each node's config, to open it again.
func openClusterWith(t *testing.T, n int, before func(i int, j *Journal)) ([]*Journal, []*sink, []Config) {
	t.Helper()
	var routes []string
	for range n {
		routes = append(routes, freeRoute(t))
	}
	var js []*Journal
	var sinks []*sink
	var cfgs []Config
	for i := range n {
		cfg := testConfig(t.TempDir())
		cl := &ClusterConfig{Name: fmt.Sprintf("n%d", i+1), Listen: routes[i], Replicas: n, DedupeWindow: 2 * time.Minute}
		for k, r := range routes {
			if k != i {
				cl.Routes = append(cl.Routes, &url.URL{Scheme: "nats-route", Host: r})
			}
		}
		cfg.Cluster = cl
		var hook func(*Journal)
		if before != nil {
			hook = func(j *Journal) { before(i, j) }
		}
		j, s := openWith(t, cfg, hook)
		js, sinks, cfgs = append(js, j), append(sinks, s), append(cfgs, cfg)
	}
	for _, j := range js {
		waitQuorum(t, j)
	}
	return js, sinks, cfgs
}

func waitQuorum(t *testing.T, j *Journal) {
	t.Helper()
	waitFor(t, "quorum on "+j.node, func() bool {
		j.cl.mu.Lock()
		defer j.cl.mu.Unlock()
		return j.cl.quorum && j.cl.started
	})
}

// TestClusterHistoryEveryNode: what one node writes, every node reads
// back whole, however soon it asks.
func TestClusterHistoryEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	js, sinks := openCluster(t, 3)
	for i := range 300 {
		if _, err := js[i%3].Append(fmt.Sprintf("t/%d", i%5), []byte(fmt.Sprint(i)), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 10 {
		for k, j := range js {
			var n int
			err := j.History(context.Background(), "t/#", From{Seq: 1}, 0, func(Message) error { n++; return nil })
			if err != nil || n != 300 {
				t.Fatalf("round %d, node %d: %d messages, %v", round, k+1, n, err)
			}
		}
	}
	// A Gerrit event published by every node is stored once; an old one
	// (a replay) is looked up in the journal first.
	old := []byte(fmt.Sprintf(`{"type":"ref-updated","eventCreatedOn":%d}`, time.Now().Add(-10*time.Minute).Unix()))
	if found, err := js[1].inJournal("gerrit/p/ref-updated", time.Now().Add(-11*time.Minute), old); err != nil || found {
		t.Fatalf("inJournal before = %v, %v", found, err)
	}
	for _, j := range js {
		if err := j.Publish("gerrit/p/ref-updated", old, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	if found, err := js[2].inJournal("gerrit/p/ref-updated", time.Now().Add(-11*time.Minute), old); err != nil || !found {
		t.Fatalf("inJournal after = %v, %v", found, err)
	}
	var n int
	if err := js[0].History(context.Background(), "gerrit/#", From{Seq: 1}, 0, func(Message) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("gerrit events in the journal: %d, %v", n, err)
	}
	for k, s := range sinks {
		waitFor(t, "fan-out", func() bool { return len(s.snapshot()) == 301 })
		for i, m := range s.snapshot()[:300] {
			if string(m.Payload) != fmt.Sprint(i) || m.Seq != uint64(i+1) {
				t.Fatalf("node %d fan-out %d: seq %d %q", k+1, i, m.Seq, m.Payload)
			}
		}
	}
}
