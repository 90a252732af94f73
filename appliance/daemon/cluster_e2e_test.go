package daemon_test

import (
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"
)

// collect reads n messages from s, failing on a timeout.
func (s *sub) collect(n int) []string {
	s.t.Helper()
	out := make([]string, 0, n)
	for range n {
		out = append(out, string(s.next().Payload()))
	}
	return out
}

// noMore fails if s receives anything before a marker published after
// everything else arrives.
func (s *sub) quiet(marker string) {
	s.t.Helper()
	for {
		m := s.next()
		if string(m.Payload()) == marker {
			return
		}
		s.t.Fatalf("unexpected extra message %s %q before the marker", m.Topic(), m.Payload())
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestClusterFanOutAndResume: three daemons clustered through their
// embedded servers. A subscriber on node 3 receives node 1's publisher's
// messages exactly once, in order; every node's journal holds them under
// the same sequence numbers; an SSE consumer that read part of them from
// node 3 resumes on node 2 with node 3's Last-Event-ID and gets exactly
// the rest.
func TestClusterFanOutAndResume(t *testing.T) {
	c := startCluster(t, 3, "")
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	s3 := subscribe(t, "tcp://"+n3.addr["mqtt"], "zuul/#")
	sse3 := n3.sse(url.Values{"filter": {"zuul/#"}}, "")
	p1 := newQoS1Publisher(t, n1)
	want := numbered("m", 1, 200)
	for _, m := range want {
		p1.publish("zuul/a", m)
	}
	if got := s3.collect(len(want)); !equalStrings(got, want) {
		t.Fatalf("node 3 subscriber got %v", got)
	}
	p1.publish("zuul/a", "marker")
	s3.quiet("marker")

	// The same journal, the same numbers, on every node.
	var ref []eventLine
	for i, d := range c.nodes {
		lines := d.history(url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {"1000"}})
		if got := payloads(t, lines); !equalStrings(got, append(append([]string{}, want...), "marker")) {
			t.Fatalf("node %d history: %v", i+1, got)
		}
		if i == 0 {
			ref = lines
			continue
		}
		for k := range lines {
			if lines[k].Seq != ref[k].Seq {
				t.Fatalf("node %d: %q has seq %d, node 1 says %d", i+1, lines[k].text(), lines[k].Seq, ref[k].Seq)
			}
		}
	}

	// Resume on node 2 where node 3's stream left off.
	var lastID string
	for range 120 {
		e := sse3.nextMessage()
		lastID = strconv.FormatUint(e.Seq, 10)
	}
	sse3.close()
	for _, m := range numbered("late", 1, 30) {
		p1.publish("zuul/a", m)
	}
	sse2 := n2.sse(url.Values{"filter": {"zuul/#"}}, lastID)
	var got []string
	for len(got) < 81+30 {
		got = append(got, sse2.nextMessage().text())
	}
	wantRest := append(append(append([]string{}, want[120:]...), "marker"), numbered("late", 1, 30)...)
	if !equalStrings(got, wantRest) {
		t.Fatalf("resumed on node 2 after id %s: got %v\nwant %v", lastID, got, wantRest)
	}
	st := c.clusterStatus(1)
	if st.State != "ok" || st.Cluster == nil || len(st.Cluster.Peers) != 2 || st.Cluster.StreamLeader == "" {
		t.Errorf("node 2 status: %s %q %+v", st.State, st.Reasons, st.Cluster)
	}
	for _, p := range st.Cluster.Peers {
		if !p.Connected {
			t.Errorf("node 2 says peer %+v is not connected", p)
		}
	}
	out, code := n2.run("status", "--socket", n2.ctl.Socket)
	t.Logf("firehosectl status on node 2 (exit %d):\n%s", code, out)
	_ = fmt.Sprint
	_ = time.Second
}
