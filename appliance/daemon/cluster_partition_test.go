package daemon_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// clusterNet is a network of n namespaces, one per node, each with one
// veth link into a bridge in a hub namespace: nodes that can be cut off
// from each other with nftables, as hosts on a LAN can. The daemons'
// client sockets are made by the test in its own namespace and handed
// over, so clients reach every node whatever happens between the nodes.
type clusterNet struct {
	t     *testing.T
	hub   string
	nodes []string // namespace of node i
	addrs []string // address of node i
}

// Namespaces carry this prefix (the task that made them) and a random
// part, so that runs side by side do not meet.
const clusterNetPrefix = "clusterfail-"

func newClusterNet(t *testing.T, n int) *clusterNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partitioning cluster nodes needs network namespaces and nftables, which need root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("partitioning cluster nodes needs %s: %v", tool, err)
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	base := clusterNetPrefix + hex.EncodeToString(b)
	cn := &clusterNet{t: t, hub: base + "-hub"}
	cn.ip("netns", "add", cn.hub)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", cn.hub).Run() })
	cn.ip("-n", cn.hub, "link", "add", "br0", "type", "bridge")
	cn.ip("-n", cn.hub, "link", "set", "br0", "up")
	for i := range n {
		ns := fmt.Sprintf("%s-n%d", base, i+1)
		cn.ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		port := fmt.Sprintf("p%d", i+1)
		addr := fmt.Sprintf("10.77.0.%d", i+1)
		cn.ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", cn.hub)
		cn.ip("-n", cn.hub, "link", "set", port, "master", "br0", "up")
		cn.ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		cn.ip("-n", ns, "link", "set", "eth0", "up")
		cn.ip("-n", ns, "link", "set", "lo", "up")
		cn.nodes = append(cn.nodes, ns)
		cn.addrs = append(cn.addrs, addr)
	}
	return cn
}

func (cn *clusterNet) ip(args ...string) {
	cn.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		cn.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (cn *clusterNet) nft(ns, rules string) {
	cn.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		cn.t.Fatalf("nft in %s: %v: %s\n%s", ns, err, out, rules)
	}
}

// isolate cuts node i off from every other node: everything in or out of
// its link is dropped silently, as a broken switch or a partitioned
// network does (no resets, no unreachables).
func (cn *clusterNet) isolate(i int) {
	cn.t.Helper()
	cn.nft(cn.nodes[i], `table inet clusterfail_partition {
	chain in { type filter hook input priority -10; policy accept; iifname "eth0" drop; }
	chain out { type filter hook output priority -10; policy accept; oifname "eth0" drop; }
}
`)
}

// heal undoes isolate.
func (cn *clusterNet) heal(i int) {
	cn.t.Helper()
	cn.nft(cn.nodes[i], "delete table inet clusterfail_partition\n")
}

// startPartitionable starts n nodes, each in its own namespace of a
// clusterNet, routed to each other over it.
func startPartitionable(t *testing.T, n int, extra string) (*cluster, *clusterNet) {
	t.Helper()
	cn := newClusterNet(t, n)
	c := &cluster{t: t, extra: extra, netns: cn.nodes}
	for _, a := range cn.addrs {
		c.routes = append(c.routes, a+":6222")
	}
	return c.startAll(), cn
}

// TestClusterPartition: a 2+1 network partition that cuts off the node
// leading the journal's stream. No split brain: the single node refuses
// writes (MQTT 5: PUBACK 0x80 with the no-quorum reason; MQTT 3.1.1: the
// publisher is disconnected) and reports the lost quorum; the pair elects
// a new leader and goes on taking and delivering publishes. After the
// partition heals, every node's subscriber has received every accepted
// message exactly once, in the same order, and no refused one; every
// node's journal is the same, under the same sequence numbers.
func TestClusterPartition(t *testing.T) {
	c, cn := startPartitionable(t, 3, "")
	var subs []*sub
	for _, d := range c.nodes {
		subs = append(subs, subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#"))
	}
	accepted := []string{"before"}
	publish(t, "tcp://"+c.nodes[0].addr["mqtt"], "zuul", zuulPass, "zuul/p", "before")
	for _, s := range subs {
		s.expect("zuul/p", "before")
	}

	// Cut off the stream leader: the hardest case, as the pair must elect
	// a new one while the old one may still think it leads.
	leader := c.clusterStatus(0).Cluster.StreamLeader
	minority := -1
	for i := range c.nodes {
		if leader == fmt.Sprintf("fh%d", i+1) {
			minority = i
		}
	}
	if minority < 0 {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	var majority []int
	for i := range c.nodes {
		if i != minority {
			majority = append(majority, i)
		}
	}
	t.Logf("isolating fh%d, the stream leader", minority+1)
	cn.isolate(minority)
	lone := c.nodes[minority]

	// The pair elects a new stream leader and goes on. (Publishes made
	// during an election wait for it: TestClusterKillNode.)
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := c.clusterStatus(majority[0])
		if cs := st.Cluster; cs != nil && cs.Quorum && cs.StreamLeader != "" && cs.StreamLeader != leader {
			t.Logf("the pair's new stream leader: %s", cs.StreamLeader)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pair elected no new stream leader within 90s: %s %q %+v", st.State, st.Reasons, st.Cluster)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pub := connect(t, pahoOpts("tcp://"+c.nodes[majority[0]].addr["mqtt"], "zuul", zuulPass))
	for i := 1; i <= 50; i++ {
		m := fmt.Sprintf("majority-%d", i)
		tok := pub.Publish("zuul/p", 1, false, m)
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s on fh%d, on the majority side: %v", m, majority[0]+1, tok.Error())
		}
		accepted = append(accepted, m)
	}

	// The single node refuses writes and says why.
	code5, out5 := mosquittoPub(t, lone.addr["mqtt"], "-V", "mqttv5", "-q", "1", "-u", "zuul", "-P", zuulPass, "-t", "zuul/p", "-m", "refused5")
	t.Logf("mosquitto_pub -V mqttv5 on the isolated node: exit %d: %s", code5, out5)
	if code5 == 0 && !strings.Contains(out5, "failed") {
		t.Errorf("an MQTT 5 QoS 1 publish on the isolated node was accepted: exit %d: %s", code5, out5)
	}
	if !strings.Contains(out5, "no quorum") {
		t.Errorf("the MQTT 5 refusal does not give the no-quorum reason: %s", out5)
	}
	code3, out3 := mosquittoPub(t, lone.addr["mqtt"], "-V", "mqttv311", "-q", "1", "-u", "zuul", "-P", zuulPass, "-t", "zuul/p", "-m", "refused3")
	t.Logf("mosquitto_pub -V mqttv311 on the isolated node: exit %d: %s", code3, out3)
	if code3 == 0 {
		t.Errorf("an MQTT 3.1.1 QoS 1 publish on the isolated node was accepted: %s", out3)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		st := lone.status()
		if st.Cluster != nil && !st.Cluster.Quorum && st.State == "degraded" && strings.Contains(strings.Join(st.Reasons, "\n"), "no quorum") {
			t.Logf("the isolated node's status: %q", st.Reasons)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the isolated node does not report the lost quorum: %s %q %+v", st.State, st.Reasons, st.Cluster)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := lone.status(); st.Cluster.Refused < 2 {
		t.Errorf("the isolated node refused %d publishes, want at least 2", st.Cluster.Refused)
	}
	// Meanwhile the pair still works, and says so.
	for i := 51; i <= 60; i++ {
		m := fmt.Sprintf("majority-%d", i)
		if err := wait(pub.Publish("zuul/p", 1, false, m)); err != nil {
			t.Fatalf("publish %s on the majority side while the single node refuses: %v", m, err)
		}
		accepted = append(accepted, m)
	}
	for _, i := range majority {
		if st := c.clusterStatus(i); !st.Cluster.Quorum || st.Cluster.StreamLeader == "" || st.Cluster.StreamLeader == leader {
			t.Errorf("fh%d during the partition: quorum %v, stream leader %q (the isolated node was %q)", i+1, st.Cluster.Quorum, st.Cluster.StreamLeader, leader)
		}
	}

	// Heal: the single node catches up and takes publishes again.
	cn.heal(minority)
	c.waitQuorum(minority)
	after := connect(t, pahoOpts("tcp://"+lone.addr["mqtt"], "zuul", zuulPass))
	if tok := after.Publish("zuul/p", 1, false, "after"); !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
		t.Fatalf("the healed node takes no publish: %v", tok.Error())
	}
	accepted = append(accepted, "after")

	// Every node's subscriber: every accepted message once, in one order,
	// none refused. The isolated node's receives the majority's messages
	// late, once its fan-out reaches the stream again.
	for i, s := range subs {
		got := []string{"before"}
		for got[len(got)-1] != "after" {
			select {
			case m := <-s.msgs:
				got = append(got, string(m.Payload()))
			case <-time.After(90 * time.Second):
				t.Fatalf("fh%d's subscriber got %d messages, the last %q; want %d ending with \"after\"", i+1, len(got), got[len(got)-1], len(accepted))
			}
		}
		if !equalStrings(got, accepted) {
			t.Errorf("fh%d's subscriber got %v\nwant %v", i+1, got, accepted)
		}
		if s.lost.Load() != 0 {
			t.Errorf("fh%d's subscriber lost its connection", i+1)
		}
	}

	// Every node's journal: the same messages under the same numbers.
	// Just after healing, leadership may still move (the healed node may
	// take the stream back) and a read may fail meanwhile (503): every
	// node's journal must become readable and the same, within a minute.
	q := url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {"1000"}}
	var ref []eventLine
	deadline = time.Now().Add(60 * time.Second)
	for {
		var err error
		if ref, err = c.nodes[majority[0]].tryHistory(q); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fh%d's journal cannot be read a minute after healing: %v", majority[0]+1, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := payloads(t, ref); !equalStrings(got, accepted) {
		t.Fatalf("fh%d's journal: %v\nwant %v", majority[0]+1, got, accepted)
	}
	for i, d := range c.nodes {
		deadline := time.Now().Add(60 * time.Second)
		for {
			lines, err := d.tryHistory(q)
			same := err == nil && len(lines) == len(ref)
			for k := 0; same && k < len(lines); k++ {
				same = lines[k].Seq == ref[k].Seq && lines[k].text() == ref[k].text()
			}
			if same {
				break
			}
			if time.Now().After(deadline) {
				if err != nil {
					t.Fatalf("fh%d's journal cannot be read a minute after healing: %v", i+1, err)
				}
				t.Fatalf("fh%d's journal: %d lines, not the %d of fh%d's: %v", i+1, len(lines), len(ref), majority[0]+1, payloads(t, lines))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
