package daemon_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// sysWatch follows every $SYS topic with Debian's mosquitto_sub, the way
// monitoring that graphed Mosquitto's $SYS did, and keeps each topic's
// publications in order.
type sysWatch struct {
	t    *testing.T
	mu   sync.Mutex
	seen map[string][]string
}

func watchSys(t *testing.T, addr string) *sysWatch {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	// A tab between topic and payload: Mosquitto's names contain spaces.
	cmd := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-t", "$SYS/#", "-F", "%t\t%p")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (install Debian's mosquitto-clients)", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	w := &sysWatch{t: t, seen: map[string][]string{}}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			topic, payload, _ := strings.Cut(sc.Text(), "\t")
			w.mu.Lock()
			w.seen[topic] = append(w.seen[topic], payload)
			w.mu.Unlock()
		}
	}()
	return w
}

// settled waits until topic was published with want twice in a row: the
// value held for a whole $SYS interval, so it is the count, not a value
// passing by on its way up.
func (w *sysWatch) settled(topic, want string) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		w.mu.Lock()
		vs := w.seen[topic]
		ok := len(vs) >= 2 && vs[len(vs)-1] == want && vs[len(vs)-2] == want
		last := vs[max(0, len(vs)-5):]
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s never settled at %q; last values %q", topic, want, last)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// $SYS counts the bus's traffic, not the broker's own bookkeeping: refused
// anonymous publishes are not "messages received", nor are the $SYS
// publications themselves; the broker's retained $SYS topics are not
// "retained messages"; the broker's internal client is not a client.
func TestSysCountsOnlyTheBusTraffic(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	addr := d.addr["mqtt"]
	w := watchSys(t, addr)

	w.settled("$SYS/broker/retained", "0")
	w.settled("$SYS/broker/retained messages/count", "0")
	w.settled("$SYS/broker/clients/total", "1") // the watcher
	w.settled("$SYS/broker/clients/connected", "1")

	pub := func(args ...string) {
		t.Helper()
		if code, out := mosquittoPub(t, addr, args...); code != 0 {
			t.Fatalf("mosquitto_pub %q: exit %d: %s", args, code, out)
		}
	}
	for i := range 5 {
		pub("-t", "zuul/spoof", "-m", fmt.Sprint(i)) // anonymous: dropped
	}
	pub("-u", "zuul", "-P", zuulPass, "-t", "zuul/build", "-m", "1")
	pub("-u", "zuul", "-P", zuulPass, "-t", "zuul/build", "-m", "2")
	pub("-u", "zuul", "-P", zuulPass, "-t", "zuul/state", "-m", "up", "-r")

	for _, topic := range []string{"$SYS/broker/messages/received", "$SYS/broker/publish/messages/received"} {
		w.settled(topic, "3")
	}
	w.settled("$SYS/broker/retained", "1")
	w.settled("$SYS/broker/retained messages/count", "1")
	st := d.status()
	if st.Messages.ReceivedTotal != 3 {
		t.Errorf("status messages received_total = %d, want 3 (the 5 refused anonymous publishes are refusals)", st.Messages.ReceivedTotal)
	}
	if st.Refusals["acl"] != 5 {
		t.Errorf("status refusals = %v, want acl: 5", st.Refusals)
	}

	// An empty retained message clears the retained one; it is a message too.
	pub("-u", "zuul", "-P", zuulPass, "-t", "zuul/state", "-n", "-r")
	w.settled("$SYS/broker/retained", "0")
	w.settled("$SYS/broker/messages/received", "4")
}
