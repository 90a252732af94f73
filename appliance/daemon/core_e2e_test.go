package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firehose/firehose/appliance/apitype"
)

func TestAnonymousSubscriberGetsPublishersMessages(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	mq := mosquittoSub(t, d.addr["mqtt"], "-t", "zuul/#")
	ws := subscribe(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul/#")
	wsRoot := subscribe(t, "ws://"+d.addr["ws"]+"/", "zuul/#")
	eventually(t, "mosquitto_sub to subscribe", func() bool { return d.status().Subscriptions >= 3 })

	if code, out := mosquittoPub(t, d.addr["mqtt"], "-u", "zuul", "-P", zuulPass, "-t", "zuul/build/1", "-m", "started"); code != 0 {
		t.Fatalf("mosquitto_pub as zuul: exit %d: %s", code, out)
	}
	mq.expect("zuul/build/1 started")
	ws.expect("zuul/build/1", "started")
	wsRoot.expect("zuul/build/1", "started")

	// Over websockets too, from a publisher.
	publish(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul", zuulPass, "zuul/build/2", "done")
	mq.expect("zuul/build/2 done")
	ws.expect("zuul/build/2", "done")
}

func TestAnonymousPublishReachesNobody(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "#")

	// QoS 0 from an anonymous client is dropped silently...
	if code, out := mosquittoPub(t, d.addr["mqtt"], "-t", "zuul/spoof", "-m", "anon", "-q", "0"); code != 0 {
		t.Fatalf("anonymous QoS 0 publish: exit %d: %s", code, out)
	}
	// ...and so is QoS 1: MQTT 3.1.1 has no negative PUBACK, so it is
	// acknowledged (MQTT-3.3.5-2, as Mosquitto does) and the client stays.
	c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "", ""))
	if err := wait(c.Publish("zuul/spoof", 1, false, "anon-qos1")); err != nil {
		t.Fatalf("anonymous QoS 1 publish on MQTT 3.1.1: %v, want a positive PUBACK", err)
	}
	if !c.IsConnectionOpen() {
		t.Fatal("the anonymous publisher was disconnected")
	}
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/marker", "after")
	s.expect("zuul/marker", "after")
	if st := d.status(); st.Messages.SentTotal != 1 || st.Refusals["acl"] != 2 {
		t.Errorf("sent_total = %d, refusals = %v; want 1 (only the marker) and 2 acl", st.Messages.SentTotal, st.Refusals)
	}
}

func TestWrongPasswordAndUnknownUserRefused(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, tc := range []struct{ name, user, pass string }{
		{"wrong_password", "zuul", "not-the-password"},
		{"unknown_user", "mallory", zuulPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := mosquittoPub(t, d.addr["mqtt"], "-u", tc.user, "-P", tc.pass, "-t", "zuul/x", "-m", "x")
			if code == 0 || !strings.Contains(strings.ToLower(out), "not authori") {
				t.Fatalf("mosquitto_pub exit %d, output %q; want a refused connection", code, out)
			}
			c := paho.NewClient(pahoOpts("ws://"+d.addr["ws"]+"/mqtt", tc.user, tc.pass))
			if err := wait(c.Connect()); err == nil {
				c.Disconnect(0)
				t.Fatal("paho connected over websockets with bad credentials")
			}
		})
	}
}

func TestPublisherOutsideItsTopicsRefused(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "#")
	if code, out := mosquittoPub(t, d.addr["mqtt"], "-u", "zuul", "-P", zuulPass, "-t", "gerrit/spoof", "-m", "x", "-q", "0"); code != 0 {
		t.Fatalf("QoS 0 publish outside topics: exit %d: %s", code, out)
	}
	// QoS 1 on MQTT 3.1.1: acknowledged and dropped (MQTT-3.3.5-2).
	c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	if err := wait(c.Publish("gerrit/spoof", 1, false, "qos1")); err != nil {
		t.Fatalf("QoS 1 publish outside the publisher's topics: %v, want a positive PUBACK", err)
	}
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/ok", "inside")
	s.expect("zuul/ok", "inside")
	if !c.IsConnectionOpen() {
		t.Fatal("the publisher was disconnected for a publish outside its topics")
	}
}

func TestReloadAddsPublisherWithoutDroppingSubscribers(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	tcp := subscribe(t, "tcp://"+d.addr["mqtt"], "#")
	ws := subscribe(t, "ws://"+d.addr["ws"]+"/mqtt", "#")

	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/a", "1")
	tcp.expect("zuul/a", "1")
	ws.expect("zuul/a", "1")
	if code, _ := mosquittoPub(t, d.addr["mqtt"], "-u", "gerrit", "-P", gerritPass, "-t", "gerrit/x", "-m", "early"); code == 0 {
		t.Fatal("gerrit could publish before it was configured")
	}

	d.writeConfig(d.configText(daemonOpts{}, zuulPublisher(t)+gerritPublisher(t)))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	// systemd's notify-reload protocol: RELOADING=1 with MONOTONIC_USEC, then READY=1.
	d.waitNotify("RELOADING=1\nMONOTONIC_USEC=")
	d.waitNotify("READY=1")

	publish(t, "tcp://"+d.addr["mqtt"], "gerrit", gerritPass, "gerrit/x", "2")
	tcp.expect("gerrit/x", "2")
	ws.expect("gerrit/x", "2")
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/a", "3")
	tcp.expect("zuul/a", "3")
	ws.expect("zuul/a", "3")
	if tcp.lost.Load() != 0 || ws.lost.Load() != 0 || !tcp.c.IsConnectionOpen() || !ws.c.IsConnectionOpen() {
		t.Fatal("a subscriber lost its connection during the reload")
	}
	if st := d.status(); st.LastReload == nil || !st.LastReload.OK || len(st.Publishers) != 2 {
		t.Fatalf("status after reload: %+v publishers %v", st.LastReload, st.Publishers)
	}
}

func TestInvalidReloadRejectedOldConfigServes(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "#")

	// A publisher without topics, with the zuul account removed: if any of it
	// applied, zuul could no longer publish.
	d.writeConfig(d.configText(daemonOpts{}, "[[publisher]]\nusername = \"gerrit\"\npassword_hash = \""+hash(t, gerritPass)+"\"\n"))
	out, code := d.run("reload", "--socket", d.ctl.Socket)
	if code != 1 || !strings.Contains(out, "firehose.toml:") || !strings.Contains(out, "publisher[0].topics") {
		t.Fatalf("reload of a broken config: exit %d, output:\n%s\nwant exit 1 naming file, line and key", code, out)
	}
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/still", "serving")
	s.expect("zuul/still", "serving")

	out, code = d.run("status", "--socket", d.ctl.Socket)
	if code != 1 || !strings.Contains(out, "degraded") || !strings.Contains(out, "publisher[0].topics") {
		t.Fatalf("status after a rejected reload: exit %d:\n%s", code, out)
	}
	// A listener address cannot change live: refused by name.
	d.writeConfig(d.configText(daemonOpts{broker: `websocket = "127.0.0.1:1"`}, zuulPublisher(t)))
	out, code = d.run("reload", "--socket", d.ctl.Socket)
	if code != 1 || !strings.Contains(out, "reload not supported for broker.websocket") {
		t.Fatalf("reload changing a listener: exit %d:\n%s", code, out)
	}
	// Fixing the file and reloading clears the degraded state.
	d.writeConfig(d.configText(daemonOpts{}, zuulPublisher(t)))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	if out, code := d.run("status", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("status after a good reload: exit %d:\n%s", code, out)
	}
}

func TestStatusJSONReflectsClients(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for range 3 {
		subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")
	}
	for range 2 {
		subscribe(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul/#")
	}
	out, code := d.run("status", "--json", "--socket", d.ctl.Socket)
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, out)
	}
	var st apitype.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json is not the API's JSON: %v\n%s", err, out)
	}
	if st.Clients != 5 || st.Subscriptions != 5 || st.State != apitype.StateOK {
		t.Fatalf("clients=%d subscriptions=%d state=%s, want 5, 5, ok", st.Clients, st.Subscriptions, st.State)
	}
	byName := map[string]apitype.Listener{}
	for _, l := range st.Listeners {
		byName[l.Name] = l
	}
	for name, want := range map[string]int64{"mqtt": 3, "ws": 2} {
		l := byName[name]
		if l.Source != apitype.SourceSystemd || l.Clients != want || l.Address != d.addr[name] {
			t.Errorf("listener %s = %+v, want from systemd at %s with %d clients", name, l, d.addr[name], want)
		}
	}
	if out, _ := d.run("status", "--socket", d.ctl.Socket); !strings.Contains(out, "systemd") {
		t.Errorf("human status does not show where sockets came from:\n%s", out)
	}
}

func TestStatusWhenNotRunning(t *testing.T) {
	cmd := []string{"status", "--socket", t.TempDir() + "/none.sock"}
	d := &daemon{t: t}
	out, code := d.run(cmd...)
	if code != 3 || !strings.Contains(out, "not running") || !strings.Contains(out, "systemctl start") {
		t.Fatalf("status with no daemon: exit %d:\n%s", code, out)
	}
}

func TestSIGTERMExitsPromptlyWhileClientsChurn(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var connected, ended int64
	var mu sync.Mutex
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := "tcp://" + d.addr["mqtt"]
			if w%2 == 1 {
				url = "ws://" + d.addr["ws"] + "/mqtt"
			}
			for i := 0; i < 500; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				c := paho.NewClient(pahoOpts(url, "", "").SetConnectTimeout(2 * time.Second))
				if c.Connect().WaitTimeout(3*time.Second) && c.IsConnected() {
					mu.Lock()
					connected++
					mu.Unlock()
					c.Subscribe("zuul/#", 0, nil).WaitTimeout(time.Second)
					c.Disconnect(0)
				} else {
					mu.Lock()
					ended++
					mu.Unlock()
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	eventually(t, "clients to churn", func() bool { mu.Lock(); defer mu.Unlock(); return connected >= 50 })

	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon still running 15s after SIGTERM")
	}
	if d.exitErr != nil {
		t.Fatalf("daemon exited with %v after SIGTERM", d.exitErr)
	}
	d.waitNotify("STOPPING=1")
	t.Logf("stopped in %s with clients churning", time.Since(start).Round(time.Millisecond))
}

func TestConnectTimeoutClosesSilentClients(t *testing.T) {
	d := startDaemon(t, daemonOpts{broker: `connect_timeout = "1s"`})
	for _, name := range []string{"mqtt", "ws"} {
		t.Run(name, func(t *testing.T) {
			c := rawConn(t, d.addr[name])
			waitClosed(t, c, 15*time.Second)
		})
	}
	// A client that did CONNECT is held to its keepalive, not connect_timeout.
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")
	deadline := time.Now().Add(1500 * time.Millisecond)
	eventually(t, "connect_timeout to pass", func() bool { return time.Now().After(deadline) })
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/alive", "yes")
	s.expect("zuul/alive", "yes")
}

func TestOversizedPacketClosesOnlyThatClient(t *testing.T) {
	d := startDaemon(t, daemonOpts{broker: `max_packet_size = 1024`})
	s := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")
	for _, url := range []string{"tcp://" + d.addr["mqtt"], "ws://" + d.addr["ws"] + "/mqtt"} {
		lost := make(chan struct{}, 1)
		big := connect(t, pahoOpts(url, "zuul", zuulPass).SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} }))
		big.Publish("zuul/big", 0, false, strings.Repeat("x", 2000))
		select {
		case <-lost:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: a client sending a 2000-byte packet with max_packet_size 1024 was not closed", url)
		}
	}
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/small", strings.Repeat("y", 900))
	m := s.next()
	if m.Topic() != "zuul/small" {
		t.Fatalf("subscriber got %s, want zuul/small (the oversized one must not arrive)", m.Topic())
	}
	if s.lost.Load() != 0 {
		t.Fatal("the subscriber lost its connection")
	}
}

// A subscriber that stops reading must not hold up the others: once its
// queue passes max_queued_bytes it is disconnected (never given a silent
// gap), while a subscriber that keeps up receives everything, in order. It asks for QoS 1, which
// anonymous subscribers are not granted: a stalled QoS 1 subscriber would
// block the publishing goroutine on its lock.
func TestSlowSubscriberDoesNotStallOthers(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	slow := rawConn(t, d.addr["mqtt"])
	// CONNECT (MQTT 3.1.1, clean session, client id "slow") and SUBSCRIBE zuul/# at QoS 1.
	connectPkt := []byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 4, 's', 'l', 'o', 'w'}
	subscribePkt := []byte{0x82, 0x0b, 0, 1, 0, 6, 'z', 'u', 'u', 'l', '/', '#', 1}
	if _, err := slow.Write(append(connectPkt, subscribePkt...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4+5)
	if _, err := io.ReadFull(slow, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 || ack[4] != 0x90 {
		t.Fatalf("CONNACK+SUBACK = % x, %v", ack, err)
	}
	if granted := ack[8]; granted != 0 {
		t.Fatalf("anonymous subscriber granted QoS %d, want 0", granted)
	}
	// From here on the slow subscriber reads nothing.

	fast := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	const n = 1200
	payload := strings.Repeat("x", 20<<10) // 24 MiB in all: more than max_queued_bytes and the socket buffers
	for i := range n {
		if err := wait(pub.Publish("zuul/load", 1, false, fmt.Sprintf("%05d", i)+payload)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i := range n {
		m := fast.next()
		if got := string(m.Payload()[:5]); got != fmt.Sprintf("%05d", i) {
			t.Fatalf("fast subscriber got message %s, want %05d", got, i)
		}
	}
	waitClosed(t, slow, 60*time.Second)
	if st := d.status(); st.Refusals["slow_subscriber"] != 1 {
		t.Fatalf("refusals = %v, want one slow_subscriber", st.Refusals)
	}
}

// On SIGTERM an MQTT 3.1.1 client is closed without a DISCONNECT packet,
// which only clients may send in 3.1.1: libmosquitto treats one as a
// protocol error and stops reconnecting, so a restart would lose every
// mosquitto-based subscriber for good.
func TestShutdownSendsNoDisconnectToMQTT3Clients(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	c := rawConn(t, d.addr["mqtt"])
	connectPkt := []byte{0x10, 0x0f, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 3, 'v', '3', 'c'}
	if _, err := c.Write(connectPkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("CONNACK = % x, %v", ack, err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	rest, err := io.ReadAll(c)
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("connection not closed within 20s of SIGTERM")
	}
	if len(rest) > 0 {
		t.Fatalf("the server sent % x before closing an MQTT 3.1.1 connection; want nothing", rest)
	}
}

// `firehosectl sub` is how people check the bus: over TCP and websockets.
func TestFirehosectlSub(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"tcp", []string{"-p", strconv.Itoa(portOf(t, d.addr["mqtt"]))}},
		{"ws", []string{"--ws", "-p", strconv.Itoa(portOf(t, d.addr["ws"]))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.status().Subscriptions
			cmd := exec.Command(binary, append(append([]string{"sub", "-h", "127.0.0.1"}, tc.args...), "-t", "zuul/#", "-v", "-C", "1")...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "firehosectl sub to subscribe", func() bool { return d.status().Subscriptions > before })
			publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/sub/"+tc.name, "hello")
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil || strings.TrimSpace(out.String()) != "zuul/sub/"+tc.name+" hello" {
					t.Fatalf("firehosectl sub: %v, printed %q", err, out.String())
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("firehosectl sub -C 1 did not exit; printed %q", out.String())
			}
		})
	}
}

// Monitoring that read Mosquitto's $SYS topics keeps working: each name is
// published (retained, so a new subscriber gets it at once) with a number.
func TestMosquittoSysTopics(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, name := range []string{
		"$SYS/broker/clients/total", "$SYS/broker/subscriptions/count", "$SYS/broker/heap/current",
		"$SYS/broker/load/messages/received/1min", "$SYS/broker/load/messages/sent/1min",
		"$SYS/broker/load/bytes/received/1min", "$SYS/broker/load/bytes/sent/1min",
		"$SYS/broker/load/publish/dropped/1min",
	} {
		s := subscribe(t, "tcp://"+d.addr["mqtt"], name)
		m := s.next()
		if _, err := strconv.ParseFloat(string(m.Payload()), 64); err != nil || m.Topic() != name {
			t.Errorf("%s: got %s %q, want a number", name, m.Topic(), m.Payload())
		}
	}
}

// max_clients refuses the connection past the limit, and a reload raises it
// for the next CONNECT without touching the connected clients.
func TestMaxClientsLiveLimit(t *testing.T) {
	o := daemonOpts{broker: "max_clients = 2"}
	d := startDaemon(t, o)
	url := "tcp://" + d.addr["mqtt"]
	a := subscribe(t, url, "zuul/#")
	subscribe(t, url, "zuul/#")
	third := paho.NewClient(pahoOpts(url, "", ""))
	if err := wait(third.Connect()); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
		third.Disconnect(0)
		t.Fatalf("third client with max_clients = 2: %v, want server unavailable", err)
	}
	d.writeConfig(d.configText(daemonOpts{broker: "max_clients = 3"}, zuulPublisher(t)))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: %d %s", code, out)
	}
	subscribe(t, url, "zuul/#")
	if a.lost.Load() != 0 {
		t.Fatal("a connected client was dropped by the reload")
	}
}
