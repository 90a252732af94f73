package daemon_test

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// cluster is several real daemons whose embedded nats-servers are routed
// to each other on loopback.
type cluster struct {
	t      *testing.T
	nodes  []*daemon
	routes []string // route listen address of each node
	extra  string   // TOML every node gets
	states []string
	window time.Duration // the stream's dedupe window; 0: the default
	netns  []string      // when set, node i runs in network namespace netns[i]
	// natsURLs, when set, puts the nodes on that external NATS cluster
	// instead of routing their embedded servers (routes then only count
	// the nodes).
	natsURLs []string
}

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts n nodes, fh1..fhn, each with its own ports and state
// directory, and waits until every one reports a quorum.
func startCluster(t *testing.T, n int, extra string) *cluster {
	t.Helper()
	return startClusterWindow(t, n, extra, 0)
}

func startClusterWindow(t *testing.T, n int, extra string, window time.Duration) *cluster {
	t.Helper()
	c := &cluster{t: t, extra: extra, window: window}
	for range n {
		c.routes = append(c.routes, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	return c.startAll()
}

// startAll starts the nodes of c, whose routes (and network namespaces, if
// any) are set, and waits until every one reports a quorum.
func (c *cluster) startAll() *cluster {
	c.t.Helper()
	n := len(c.routes)
	for len(c.states) < n {
		c.states = append(c.states, "")
	}
	for i := range c.states {
		if c.states[i] == "" { // a test may have chosen where some go
			c.states[i] = filepath.Join(c.t.TempDir(), "state")
		}
	}
	for i := range n {
		c.nodes = append(c.nodes, c.start(i))
	}
	for i := range n {
		c.waitQuorum(i)
	}
	return c
}

func (c *cluster) clusterTOML(i int) string {
	s := fmt.Sprintf("[cluster]\nname = \"fh%d\"\nlisten = %q\npeers = [\"%s\"]\n", i+1, c.routes[i], strings.Join(c.routes, `", "`))
	if c.natsURLs != nil {
		s = fmt.Sprintf("[cluster]\nname = \"fh%d\"\nnats_urls = [\"%s\"]\n", i+1, strings.Join(c.natsURLs, `", "`))
	}
	if c.window > 0 {
		s += fmt.Sprintf("dedupe_window = %q\n", c.window.String())
	}
	return s
}

// start starts node i (again, after a stop or a kill) on its state dir.
func (c *cluster) start(i int) *daemon {
	c.t.Helper()
	o := daemonOpts{stateDir: c.states[i], extra: c.extra + "\n" + c.clusterTOML(i)}
	if c.netns != nil {
		o.netns = c.netns[i]
	}
	d := startDaemon(c.t, o)
	if i < len(c.nodes) {
		c.nodes[i] = d
	}
	return d
}

// kill ends node i with SIGKILL, as a crash or power loss would.
func (c *cluster) kill(i int) {
	d := c.nodes[i]
	_ = d.cmd.Process.Kill()
	<-d.done
}

// clusterStatus polls node i's status.
func (c *cluster) clusterStatus(i int) *apitype.Status {
	return c.nodes[i].status()
}

// waitQuorum waits until node i's journal has a quorum and its fan-out
// runs. An election takes up to ~10 s; the deadline is generous for a busy
// machine.
func (c *cluster) waitQuorum(i int) {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := c.clusterStatus(i)
		if cs := st.Cluster; cs != nil && cs.Quorum && cs.StreamLeader != "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node fh%d: no quorum within 90s: %+v %q", i+1, st.Cluster, st.Reasons)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
