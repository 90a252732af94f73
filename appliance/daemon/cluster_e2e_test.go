package daemon_test

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
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

// firstDifference says where got, a prefix of want with some messages
// missing, first departs from want and how many of want it lacks: a
// subscriber that skipped messages and one still waiting look alike by
// count.
func firstDifference(got, want []string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	if i == len(got) {
		return fmt.Sprintf("all %d received are the journal's first %d, in order (nothing skipped; the rest not yet delivered)", len(got), len(got))
	}
	have := map[string]bool{}
	for _, m := range got {
		have[m] = true
	}
	var missing []string
	for _, m := range want[:min(len(want), len(got)+64)] {
		if !have[m] {
			missing = append(missing, m)
		}
	}
	return fmt.Sprintf("message %d is %q, the journal's is %q; missing among the first %d: %d %v",
		i, got[i], want[i], min(len(want), len(got)+64), len(missing), missing[:min(len(missing), 40)])
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
	checkFanOutAndResume(t, c)
	st := c.clusterStatus(1)
	if st.State != "ok" || st.Cluster == nil || len(st.Cluster.Peers) != 2 || st.Cluster.StreamLeader == "" {
		t.Errorf("node 2 status: %s %q %+v", st.State, st.Reasons, st.Cluster)
	}
	for _, p := range st.Cluster.Peers {
		if !p.Connected {
			t.Errorf("node 2 says peer %+v is not connected", p)
		}
	}
	out, code := c.nodes[1].run("status", "--socket", c.nodes[1].ctl.Socket)
	if code != 0 || !strings.Contains(out, "stream leader:") {
		t.Errorf("firehosectl status on node 2 (exit %d):\n%s", code, out)
	}

	// Reload: peers may change live; the node's name may not.
	n2 := c.nodes[1]
	orig, err := os.ReadFile(n2.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	peersLine := fmt.Sprintf("peers = [\"%s\"]", strings.Join(c.routes, `", "`))
	if !strings.Contains(string(orig), peersLine) {
		t.Fatalf("no %q in the config", peersLine)
	}
	other := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n2.writeConfig(strings.Replace(string(orig), peersLine, fmt.Sprintf("peers = [%q, %q]", c.routes[0], other), 1))
	if out, code := n2.run("reload", "--socket", n2.ctl.Socket); code != 0 {
		t.Fatalf("reload with other peers: exit %d: %s", code, out)
	}
	eventually(t, "node 2 to report the new peer, not connected", func() bool {
		for _, r := range n2.status().Reasons {
			if strings.Contains(r, other) && strings.Contains(r, "not connected") {
				return true
			}
		}
		return false
	})

	n2.writeConfig(strings.Replace(string(orig), `name = "fh2"`, `name = "fh9"`, 1))
	if out, code := n2.run("reload", "--socket", n2.ctl.Socket); code == 0 || !strings.Contains(out, "cluster.name") {
		t.Fatalf("reload renaming the node: exit %d: %s", code, out)
	}
	n2.writeConfig(string(orig))
	if out, code := n2.run("reload", "--socket", n2.ctl.Socket); code != 0 {
		t.Fatalf("reload back to all peers: exit %d: %s", code, out)
	}
	c.waitQuorum(1)
}

// checkFanOutAndResume: a subscriber on node 3 receives node 1's
// publisher's messages exactly once, in order; every node's journal holds
// them under the same sequence numbers; an SSE consumer that read part of
// them from node 3 resumes on node 2 with node 3's Last-Event-ID and gets
// exactly the rest.
func checkFanOutAndResume(t *testing.T, c *cluster) {
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

	// A retained message published on node 1 is kept on every node.
	if err := wait(p1.c.Publish("zuul/ret", 1, true, "kept")); err != nil {
		t.Fatal(err)
	}
	s3.expect("zuul/ret", "kept")
	for i, d := range []*daemon{n2, n3} {
		// A subscriber that comes before the message reaches this node
		// gets it live instead; the next one must get it retained.
		for try := 0; ; try++ {
			late := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/ret")
			m := late.next()
			late.c.Disconnect(0)
			if string(m.Payload()) != "kept" {
				t.Fatalf("node %d: a new subscriber got %q", i+2, m.Payload())
			}
			if m.Retained() {
				break
			}
			if try == 1 {
				t.Fatalf("node %d: a subscriber after the message got it live, not retained", i+2)
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
	for len(got) < 82+30 {
		got = append(got, sse2.nextMessage().text())
	}
	wantRest := append(append(append([]string{}, want[120:]...), "marker", "kept"), numbered("late", 1, 30)...)
	if !equalStrings(got, wantRest) {
		t.Fatalf("resumed on node 2 after id %s: got %v\nwant %v", lastID, got, wantRest)
	}
}

// clusterPublisher publishes numbered QoS 1 messages through paho with
// several server URLs, reconnecting to the next when its node goes, and
// records which were acknowledged.
type clusterPublisher struct {
	name   string
	c      paho.Client
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	acked  []string
	failed []string
}

func startClusterPublisher(t *testing.T, name string, urls ...string) *clusterPublisher {
	o := paho.NewClientOptions().SetClientID("cluster-" + name).SetUsername("zuul").SetPassword(zuulPass).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetMaxReconnectInterval(500 * time.Millisecond).SetConnectTimeout(5 * time.Second).SetWriteTimeout(10 * time.Second)
	for _, u := range urls {
		o.AddBroker(u)
	}
	p := &clusterPublisher{name: name, c: paho.NewClient(o), stop: make(chan struct{}), done: make(chan struct{})}
	if err := wait(p.c.Connect()); err != nil {
		t.Fatalf("publisher %s: %v", name, err)
	}
	t.Cleanup(func() { p.halt(); p.c.Disconnect(0) })
	go func() {
		defer close(p.done)
		for i := 1; i <= 20000; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			payload := fmt.Sprintf("%s-%d", name, i)
			tok := p.c.Publish("zuul/"+strings.ReplaceAll(name, "-", "/"), 1, false, payload)
			ok := tok.WaitTimeout(40*time.Second) && tok.Error() == nil
			p.mu.Lock()
			if ok {
				p.acked = append(p.acked, payload)
			} else {
				p.failed = append(p.failed, payload)
			}
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *clusterPublisher) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *clusterPublisher) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// TestClusterKillNode: publishers on nodes 1 and 2 keep sending while node
// 1 is killed with SIGKILL; node 1's publisher reconnects to node 2. Every
// acknowledged message is in the journal exactly once, the subscriber on
// node 3 receives the journal's messages exactly once in its order, and
// node 1, restarted, catches up.
func TestClusterKillNode(t *testing.T) {
	checkKillNode(t, startCluster(t, 3, ""))
}

// checkKillNode is TestClusterKillNode on the three nodes of c, embedded or
// on an external NATS cluster.
func checkKillNode(t *testing.T, c *cluster) {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	s3 := subscribe(t, "tcp://"+n3.addr["mqtt"], "zuul/#")
	p1 := startClusterPublisher(t, "p1", "tcp://"+n1.addr["mqtt"], "tcp://"+n2.addr["mqtt"])
	p2 := startClusterPublisher(t, "p2", "tcp://"+n2.addr["mqtt"])
	eventually(t, "both publishers to get 50 acknowledgements", func() bool { return p1.ackedCount() >= 50 && p2.ackedCount() >= 50 })

	c.kill(0)
	before := p1.ackedCount()
	deadline := time.Now().Add(120 * time.Second)
	for p1.ackedCount() < before+50 || p2.ackedCount() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("after the kill: publisher 1 acknowledged %d more, publisher 2 %d in all", p1.ackedCount()-before, p2.ackedCount())
		}
		time.Sleep(50 * time.Millisecond)
	}
	n1 = c.start(0)
	c.waitQuorum(0)
	mid := p2.ackedCount()
	eventually(t, "publishing to go on after the restart", func() bool { return p2.ackedCount() >= mid+50 })
	p1.halt()
	p2.halt()
	marker := newQoS1Publisher(t, n2)
	marker.publish("zuul/end", "end")

	all := n2.history(url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {"10000"}})
	journal := payloads(t, all)
	if len(journal) == 0 {
		t.Fatalf("node 2's history has no messages: %+v", all)
	}
	if len(journal) >= 10000 {
		t.Fatalf("%d messages: more than one page of history", len(journal))
	}
	count := map[string]int{}
	for _, m := range journal {
		count[m]++
	}
	for _, p := range []*clusterPublisher{p1, p2} {
		for _, m := range p.acked {
			if count[m] != 1 {
				t.Errorf("acknowledged %s is in the journal %d times", m, count[m])
			}
		}
		for _, m := range p.failed {
			t.Logf("not acknowledged: %s (in the journal %d times)", m, count[m])
		}
		t.Logf("publisher %s: %d acknowledged, %d not", p.name, len(p.acked), len(p.failed))
	}
	// Node 3 was up throughout: its subscriber saw the journal, in order.
	var got []string
	for len(got) < len(journal) {
		select {
		case m := <-s3.msgs:
			got = append(got, string(m.Payload()))
			continue
		case <-time.After(20 * time.Second):
		}
		st := n3.status()
		t.Fatalf("node 3 subscriber: %d of %d messages (connection lost %d times, node 3 dropped %d, fan-out lag %d); %s; the last: %v",
			len(got), len(journal), s3.lost.Load(), st.Messages.DroppedTotal, st.Cluster.ConsumerLag, firstDifference(got, journal), got[max(0, len(got)-3):])
	}
	if !equalStrings(got, journal) {
		for i := range got {
			if got[i] != journal[i] {
				t.Fatalf("node 3 subscriber: message %d is %q, the journal's is %q", i, got[i], journal[i])
			}
		}
	}
	// Node 1 caught up: the same messages under the same numbers.
	last := n2.history(url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {"10000"}})
	eventually(t, "node 1 to catch up", func() bool {
		// A node still catching up may not answer reads yet (503).
		l, err := n1.tryHistory(url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {"10000"}})
		return err == nil && len(l) == len(last) && len(l) > 0 && l[len(l)-1].Seq == last[len(last)-1].Seq
	})
	if got := payloads(t, n1.history(url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {"10000"}})); !equalStrings(got, journal) {
		t.Errorf("node 1's journal after restart differs from node 2's (%d vs %d messages)", len(got), len(journal))
	}
}

// TestClusterQuorumLoss: with two of three nodes down, the last node's
// status is degraded and says why; QoS 1 publishes are refused (MQTT 5:
// a PUBACK with reason 0x80 and a reason string; MQTT 3.1.1: the
// publisher is disconnected); subscribers stay connected. Once a second
// node is back, publishing works again and nothing refused appears.
func TestClusterQuorumLoss(t *testing.T) {
	c := startCluster(t, 3, "")
	n1 := c.nodes[0]
	s1 := subscribe(t, "tcp://"+n1.addr["mqtt"], "zuul/#")
	publish(t, "tcp://"+n1.addr["mqtt"], "zuul", zuulPass, "zuul/q", "before")
	s1.expect("zuul/q", "before")

	c.kill(1)
	c.kill(2)
	expectQuorumLost(t, n1, s1, "peer fh2 not connected", "peer fh3 not connected")

	c.start(1)
	c.waitQuorum(0)
	publish(t, "tcp://"+n1.addr["mqtt"], "zuul", zuulPass, "zuul/q", "after")
	s1.expect("zuul/q", "after") // and neither refused message before it
}

// expectQuorumLost waits until node n reports the lost quorum (degraded,
// "no quorum" and each of reasons among its reasons, firehosectl status
// exiting 1 with NO QUORUM), then checks that QoS 1 publishes are refused
// (MQTT 5: PUBACK 0x80; MQTT 3.1.1: disconnected) and counted, and that the
// subscriber s stayed connected.
func expectQuorumLost(t *testing.T, n *daemon, s *sub, reasons ...string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := n.status()
		all := strings.Join(st.Reasons, "\n")
		ok := st.Cluster != nil && !st.Cluster.Quorum && st.State == "degraded" && strings.Contains(all, "no quorum")
		for _, r := range reasons {
			ok = ok && strings.Contains(all, r)
		}
		if ok {
			t.Logf("status without quorum: %q", st.Reasons)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node does not report the lost quorum: %s %q %+v", st.State, st.Reasons, st.Cluster)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, code := n.run("status", "--socket", n.ctl.Socket)
	if code == 0 || !strings.Contains(out, "NO QUORUM") {
		t.Errorf("firehosectl status exit %d:\n%s", code, out)
	}
	code5, out5 := mosquittoPub(t, n.addr["mqtt"], "-V", "mqttv5", "-q", "1", "-u", "zuul", "-P", zuulPass, "-t", "zuul/q", "-m", "during5")
	t.Logf("mosquitto_pub -V mqttv5: exit %d: %s", code5, out5)
	if code5 == 0 && !strings.Contains(out5, "failed") {
		t.Errorf("an MQTT 5 QoS 1 publish without quorum was accepted: exit %d: %s", code5, out5)
	}
	code3, out3 := mosquittoPub(t, n.addr["mqtt"], "-V", "mqttv311", "-q", "1", "-u", "zuul", "-P", zuulPass, "-t", "zuul/q", "-m", "during3")
	t.Logf("mosquitto_pub -V mqttv311: exit %d: %s", code3, out3)
	if code3 == 0 {
		t.Errorf("an MQTT 3.1.1 QoS 1 publish without quorum was accepted: %s", out3)
	}
	if s.lost.Load() != 0 {
		t.Errorf("the subscriber lost its connection")
	}
	if st := n.status(); st.Cluster.Refused < 2 {
		t.Errorf("refused = %d, want at least 2", st.Cluster.Refused)
	}
}

// TestClusterGerritOnce: the same Gerrit source configured on all three
// nodes puts each event on the bus once, live, and also when a node that
// was down replays the events-log after the dedupe window has passed
// (the replayed events are found in the journal and not published again).
func TestClusterGerritOnce(t *testing.T) {
	g := gerrittest.New(t, gerrittest.Options{WallClock: true, PageLimit: 1000})
	cfg := g.Config(t, t.TempDir(), "review")
	checkGerritOnce(t, g, startClusterWindow(t, 3, gerrittest.TOML(cfg)+"\n", 3*time.Second))
}

// checkGerritOnce is TestClusterGerritOnce on the three nodes of c, each
// configured with g as a Gerrit source named "review".
func checkGerritOnce(t *testing.T, g *gerrittest.Server, c *cluster) {
	n2 := c.nodes[1]
	eventually(t, "three stream-events sessions", func() bool { return g.Streaming() == 3 })
	s2 := subscribe(t, "tcp://"+n2.addr["mqtt"], "gerrit/#")
	// FIREHOSE_GERRIT_SAMPLES points at the samples outside CI's layout.
	path := gerrittest.SamplesPath
	if env := os.Getenv("FIREHOSE_GERRIT_SAMPLES"); env != "" {
		path = env
	}
	p := &producer{g: g, samples: gerrittest.ReadSamples(t, path)}
	live := p.emit(20)
	expectEvents(t, s2, "gerrit", live)

	// Node 3 goes down, events happen, the dedupe window passes.
	c.nodes[2].stop()
	eventually(t, "two sessions", func() bool { return g.Streaming() == 2 })
	missed := p.emit(10)
	expectEvents(t, s2, "gerrit", missed)
	emitted := time.Now()
	// nats-server forgets message IDs up to a window late: wait two.
	for time.Since(emitted) < 2*c.window+time.Second {
		time.Sleep(100 * time.Millisecond) // waiting for time itself to pass: the window is the subject
	}
	n3 := c.start(2)
	c.waitQuorum(2)
	eventually(t, "node 3 to replay the events-log", func() bool {
		return gerritSource(t, n3.status(), "review").Replays >= 1
	})
	more := p.emit(5)
	expectEvents(t, s2, "gerrit", more)

	// The journal, read on node 1, holds each event once.
	lines := c.nodes[0].history(url.Values{"filter": {"gerrit/#"}, "since": {"1"}, "limit": {"10000"}})
	got := payloads(t, lines)
	var want []string
	for _, e := range append(append(live, missed...), more...) {
		want = append(want, string(e))
	}
	if !equalStrings(got, want) {
		t.Fatalf("the journal holds %d gerrit events, want %d, each once", len(got), len(want))
	}
}
