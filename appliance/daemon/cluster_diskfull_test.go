package daemon_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterDiskFullOneNode: node 3's disk fills up (its state directory
// is on a small tmpfs). Node 3 refuses its own publishers (MQTT 5: 0x80
// with a reason naming the disk), its status is degraded and says why; the
// other nodes take publishes as before and node 3 still delivers them to
// its subscribers (its replica's writes are small). Once there is room
// again node 3 takes publishes, and no refused message is anywhere.
func TestClusterDiskFullOneNode(t *testing.T) {
	const maxWhileFull = 5000
	if os.Geteuid() != 0 {
		t.Skip("filling one node's disk needs a tmpfs, which needs root")
	}
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "clusterfail-disk", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", disk).Run() })

	c := &cluster{t: t, states: []string{"", "", filepath.Join(disk, "state")}}
	for range 3 {
		c.routes = append(c.routes, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	c.startAll()
	n1, n3 := c.nodes[0], c.nodes[2]
	s3 := subscribe(t, "tcp://"+n3.addr["mqtt"], "zuul/#")
	publish(t, "tcp://"+n3.addr["mqtt"], "zuul", zuulPass, "zuul/d", "before")
	s3.expect("zuul/d", "before")

	// Leave 4 MiB: under the journal's reserve (8 MiB), room for the
	// replica's few writes.
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-4<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	// The journal looks at the disk again at least once a second: publishes
	// made before it does are still taken (a hundred and more on a quiet
	// machine, so the journal is read below with a limit above the default).
	want := []string{"before"}
	var refused string
	deadline := time.Now().Add(30 * time.Second)
	for k := 1; refused == ""; k++ {
		if k > maxWhileFull {
			t.Fatalf("node 3 took %d publishes with its disk full", maxWhileFull)
		}
		m := fmt.Sprintf("while-full-%d", k)
		code, out := mosquittoPub(t, n3.addr["mqtt"], "-V", "mqttv5", "-q", "1", "-u", "zuul", "-P", zuulPass, "-t", "zuul/d", "-m", m)
		switch {
		case strings.Contains(out, "failed"):
			t.Logf("mosquitto_pub -V mqttv5 on the full node: exit %d: %s", code, out)
			if !strings.Contains(out, "disk is nearly full") {
				t.Errorf("the refusal does not say the disk is full: %s", out)
			}
			refused = m
		case code != 0:
			t.Fatalf("mosquitto_pub on the full node: exit %d: %s", code, out)
		default:
			want = append(want, m)
			s3.expect("zuul/d", m)
		}
		if time.Now().After(deadline) {
			t.Fatal("node 3 took every publish for 30s with its disk full")
		}
	}
	stat := n3.status()
	if reasons := strings.Join(stat.Reasons, "\n"); stat.State != "degraded" || !strings.Contains(reasons, "refuses its publishers") || !strings.Contains(reasons, "disk nearly full") {
		t.Errorf("the full node's status: %s %q", stat.State, stat.Reasons)
	}
	if stat.Cluster == nil || stat.Cluster.Refused < 1 {
		t.Errorf("the full node counts no refusal: %+v", stat.Cluster)
	}

	// The others go on, and node 3 fans out what they journal.
	publish(t, "tcp://"+n1.addr["mqtt"], "zuul", zuulPass, "zuul/d", "from-1")
	s3.expect("zuul/d", "from-1")
	if st1 := n1.status(); st1.State != "ok" {
		t.Errorf("node 1's status while node 3's disk is full: %s %q", st1.State, st1.Reasons)
	}

	// Room again: node 3 takes publishes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for n3.status().State != "ok" {
		if time.Now().After(deadline) {
			t.Fatalf("node 3 still degraded with room on its disk: %q", n3.status().Reasons)
		}
		time.Sleep(100 * time.Millisecond)
	}
	publish(t, "tcp://"+n3.addr["mqtt"], "zuul", zuulPass, "zuul/d", "after")
	s3.expect("zuul/d", "after")
	want = append(want, "from-1", "after")
	for i, d := range c.nodes {
		if got := payloads(t, d.history(url.Values{"filter": {"zuul/#"}, "since": {"1"}, "limit": {strconv.Itoa(maxWhileFull + 10)}})); !equalStrings(got, want) {
			t.Errorf("node %d's journal: %q, want %q", i+1, got, want)
		}
	}
}
