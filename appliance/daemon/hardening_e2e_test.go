package daemon_test

// End-to-end tests of the attacks in issue 10 ("Hardening the public
// surface"), one per row of its table, each against the real daemon on
// loopback with a canary feed that must stay whole throughout.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Row 1: a Will is a publish. Anonymous clients may leave none, on any
// topic, retained or not; an account none outside its topics; nothing of it
// is delivered or retained, and many large Wills cost no memory.
func TestWillForgeryRefused(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	all := subscribe(t, "tcp://"+d.addr["mqtt"], "#")
	sys := subscribe(t, "tcp://"+d.addr["mqtt"], "$SYS/forged/#")
	wild := subscribe(t, "tcp://"+d.addr["mqtt"], "w/+/#")

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"anonymous_gerrit_retained", []string{"--will-topic", "gerrit/openstack/nova/change-merged", "--will-retain"}},
		{"anonymous_gerrit_v5", []string{"-V", "5", "--will-topic", "gerrit/openstack/nova/change-merged", "--will-retain"}},
		{"anonymous_sys", []string{"--will-topic", "$SYS/forged/broker", "--will-retain"}},
		{"anonymous_w", []string{"--will-topic", "w/x/y", "--will-retain"}},
		{"account_outside_topics", []string{"-u", "zuul", "-P", zuulPass, "--will-topic", "gerrit/openstack/nova/change-merged", "--will-retain"}},
		{"account_outside_topics_v5", []string{"-V", "5", "-u", "zuul", "-P", zuulPass, "--will-topic", "gerrit/x/change-merged"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-t", "zuul/x", "-m", "x", "--will-payload", "forged"}, tc.args...)
			code, out := mosquittoPub(t, d.addr["mqtt"], args...)
			if code == 0 || !strings.Contains(strings.ToLower(out), "not authori") {
				t.Fatalf("mosquitto_pub with a forbidden Will: exit %d, %q; want refused, not authorised", code, out)
			}
		})
	}

	// A client that drops its socket right after CONNECT, the way a Will is
	// triggered, gets a refusal and leaves nothing behind.
	// mosquitto_pub will not send a Will topic with wildcards; a bare socket
	// does.
	for _, topic := range []string{"gerrit/openstack/nova/change-merged", "w/+/#", "$SYS/forged/x"} {
		raw := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 4)
		pk := connectPacket(4, "forger")
		pk.Connect.WillFlag, pk.Connect.WillRetain, pk.Connect.WillTopic, pk.Connect.WillPayload = true, true, topic, []byte("forged")
		if ack := raw.connack(pk); ack.ReasonCode != packets.Err3NotAuthorized.Code {
			t.Fatalf("Will on %s: CONNACK %#x, want 0x05 not authorised", topic, ack.ReasonCode)
		}
		raw.c.Close()
	}

	// Anonymous CONNECTs, each with a retained 64 KiB Will, leave nothing
	// that stays: after the first 400, memory holds the garbage of reading
	// them; 400 more add nothing (kept Wills would add 25 MiB a round, and
	// more for every subscriber they are delivered to).
	will := bytes.Repeat([]byte("W"), 65535) // the most MQTT carries
	flood := func(round int) {
		var refused atomic.Int64
		parallel(400, 20, func(i int) {
			c, err := net.DialTimeout("tcp", d.addr["mqtt"], 10*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			r := newRawMQTT(t, c, 4)
			pk := connectPacket(4, fmt.Sprintf("will-%d-%d", round, i))
			pk.Connect.WillFlag, pk.Connect.WillRetain, pk.Connect.WillTopic, pk.Connect.WillPayload = true, true, fmt.Sprintf("gerrit/p%d-%d/change-merged", round, i), will
			if _, err := c.Write(encodePacket(t, pk)); err != nil {
				return
			}
			if ack, err := r.tryRead(30 * time.Second); err == nil && ack.ReasonCode == packets.Err3NotAuthorized.Code {
				refused.Add(1)
			}
		})
		if refused.Load() != 400 {
			t.Fatalf("%d of 400 CONNECTs with a 64 KiB Will refused", refused.Load())
		}
	}
	before := procRSS(t, d.cmd.Process.Pid)
	flood(1)
	first := procRSS(t, d.cmd.Process.Pid)
	flood(2)
	flood(3)
	after := procRSS(t, d.cmd.Process.Pid)
	t.Logf("RSS %d MiB before, %d MiB after 400 CONNECTs with 64 KiB Wills, %d MiB after 800 more", before>>20, first>>20, after>>20)
	if first-before > 256<<20 || after-first > 32<<20 {
		t.Fatalf("RSS grew by %d MiB, then %d MiB more", (first-before)>>20, (after-first)>>20)
	}

	// Positive control: a Will inside the account's topics is delivered
	// (so the refusals above are not a broken Will path).
	clients := d.status().Clients
	killed := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", portStr(t, d.addr["mqtt"]), "-u", "zuul", "-P", zuulPass,
		"-t", "nothing", "--will-topic", "zuul/will", "--will-payload", "gone")
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "mosquitto_sub with a Will to connect", func() bool { return d.status().Clients > clients })
	_ = killed.Process.Signal(syscall.SIGKILL)
	_ = killed.Wait()
	expectIgnoring(all, "zuul/canary", "zuul/will", "gone")

	// Nothing forged was delivered (the Will above is the first message
	// after all the attempts) or kept: a new subscriber gets the marker
	// published after its SUBACK, and nothing before it.
	for _, f := range []string{"gerrit/#", "w/#", "$SYS/forged/#"} {
		fresh := make(chan paho.Message, 16)
		c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "", ""))
		if err := wait(c.SubscribeMultiple(map[string]byte{f: 0, "zuul/marker": 0}, func(_ paho.Client, m paho.Message) { fresh <- m })); err != nil {
			t.Fatal(err)
		}
		publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/marker", f)
		select {
		case m := <-fresh:
			if m.Topic() != "zuul/marker" {
				t.Fatalf("a new subscriber to %s got %s %q", f, m.Topic(), m.Payload())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no marker")
		}
		expectIgnoring(all, "zuul/canary", "zuul/marker", f)
	}
	for _, s := range []*sub{sys, wild} {
		select {
		case m := <-s.msgs:
			t.Fatalf("a subscriber got %s", m.Topic())
		default:
		}
	}
	if st := d.status(); st.Refusals["will"] != 1209 {
		t.Fatalf("refusals = %v, want 1209 will", st.Refusals)
	}
	canary.check()
}

func portStr(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Row 2: connecting with a connected client's ID takes nothing from it. A
// mosquitto_sub and the canary's publisher keep their connections; a
// publisher may still take over its own session.
func TestClientIDTheft(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	victim := mosquittoSub(t, d.addr["mqtt"], "-i", "victim-sub", "-t", "zuul/theft/#")
	eventually(t, "mosquitto_sub to subscribe", func() bool { return d.status().Subscriptions >= 2 })

	for _, id := range []string{"victim-sub", "zuul-canary"} {
		for _, url := range []string{"tcp://" + d.addr["mqtt"], "ws://" + d.addr["ws"] + "/mqtt"} {
			thief := connect(t, pahoOpts(url, "", "").SetClientID(id))
			if err := wait(thief.Subscribe("zuul/theft/#", 0, nil)); err != nil {
				t.Fatalf("the thief's own session does not work: %v", err)
			}
		}
	}
	// An MQTT 5 thief and a mosquitto_sub thief, too.
	thief := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", portStr(t, d.addr["mqtt"]), "-V", "5", "-i", "victim-sub", "-t", "zuul/theft/#")
	if err := thief.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = thief.Process.Kill(); _ = thief.Wait() })
	eventually(t, "the thieves to be refused their IDs", func() bool { return d.status().Refusals["client_id"] >= 5 })

	// The victim kept its connection: mosquitto_sub exits when its
	// connection is taken over (a DISCONNECT on MQTT 3.1.1).
	publish(t, "tcp://"+d.addr["mqtt"], "zuul", zuulPass, "zuul/theft/after", "still here")
	victim.expect("zuul/theft/after still here")

	// A publisher reconnecting takes over its own session (its old
	// connection may be half-open): allowed, and logged.
	lost := make(chan struct{}, 1)
	connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass).SetClientID("zuul-restart").
		SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} }))
	second := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass).SetClientID("zuul-restart"))
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("a publisher's new connection did not take over its session")
	}
	if err := wait(second.Publish("zuul/theft/second", 1, false, "ok")); err != nil {
		t.Fatal(err)
	}
	victim.expect("zuul/theft/second ok")
	if !strings.Contains(d.log.String(), "session taken over by a new connection of its owner") {
		t.Error("the takeover was not logged")
	}
	canary.check()
}

// Row 3: one SUBSCRIBE with a filter of 65,534 levels is refused at once,
// before the broker's topic index sees it; everyone else's SUBSCRIBE goes on.
func TestDeepFilterRefusedBeforeIndexing(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	raw := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 4)
	if ack := raw.connack(connectPacket(4, "deep")); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	for i, f := range []string{
		strings.Repeat("/", 65533),               // 65,534 levels, 64 KiB: over max_topic_length
		strings.Repeat("a/", 299) + "a",          // 300 levels in 599 bytes: over max_topic_levels
		strings.Repeat("a/", 63) + "#",           // 64 levels: allowed
		"gerrit/openstack/nova/" + "comment-add", // allowed
	} {
		start := time.Now()
		raw.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: uint16(i + 1),
			Filters: packets.Subscriptions{{Filter: f}}})
		ack := raw.read(30 * time.Second)
		took := time.Since(start)
		want := byte(0)
		if i < 2 {
			want = packets.ErrUnspecifiedError.Code
		}
		if ack.FixedHeader.Type != packets.Suback || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != want {
			t.Fatalf("filter %d (%d levels): SUBACK %v, want [%#x]", i, strings.Count(f, "/")+1, ack.ReasonCodes, want)
		}
		t.Logf("filter of %d levels answered in %s", strings.Count(f, "/")+1, took.Round(time.Millisecond))
	}
	// The same attack from many clients at once: others' SUBSCRIBEs are
	// answered meanwhile.
	var attacking sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		attacking.Add(1)
		go func() {
			defer attacking.Done()
			c, err := net.DialTimeout("tcp", d.addr["mqtt"], 10*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			r := newRawMQTT(t, c, 4)
			if _, err := c.Write(encodePacket(t, connectPacket(4, ""))); err != nil {
				return
			}
			deep := encodePacket(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
				Filters: packets.Subscriptions{{Filter: strings.Repeat("/", 65533)}}, ProtocolVersion: 4})
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write(deep); err != nil {
					return
				}
				if _, err := r.tryRead(30 * time.Second); err != nil { // CONNACK, then SUBACKs
					return
				}
			}
		}()
	}
	for i := range 20 {
		start := time.Now()
		s := subscribe(t, "tcp://"+d.addr["mqtt"], fmt.Sprintf("zuul/deep/%d", i))
		s.c.Disconnect(0)
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("a SUBSCRIBE during the attack took %s", took)
		}
	}
	close(stop)
	attacking.Wait()
	st := d.status()
	if st.Refusals["topic_length"] < 5 || st.Refusals["topic_levels"] != 1 {
		t.Fatalf("refusals = %v", st.Refusals)
	}
	canary.check()
}

// Row 4: 600 CONNECTs as a publisher with random passwords, sockets closed
// at once, from one address: the password checks stay few, the real
// publisher's CONNACK stays prompt, and an unknown username costs what a
// known one does.
func TestPasswordGuessing(t *testing.T) {
	// Hashes at a cost where bcrypt is measurable (the race detector slows
	// it about tenfold).
	costly := func(user, pass, topics string) string {
		h, err := bcryptHash(pass, 6)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("[[publisher]]\nusername = %q\npassword_hash = %q\ntopics = [%q]\n", user, h, topics)
	}
	d := startDaemon(t, daemonOpts{})
	d.writeConfig(d.configText(daemonOpts{}, costly("zuul", zuulPass, "zuul/#")+costly("gerrit", gerritPass, "gerrit/#")))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: %s", out)
	}
	canary := startCanary(t, d)

	// Timing first, from fresh addresses (each within its failure budget):
	// an unknown username is checked against a hash of the same cost.
	connackTime := func(from, user string) time.Duration {
		r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], from), 4)
		pk := connectPacket(4, "")
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte("wrong")
		start := time.Now()
		if ack := r.connack(pk); ack.ReasonCode != packets.Err3NotAuthorized.Code {
			t.Fatalf("%s with a wrong password: CONNACK %#x", user, ack.ReasonCode)
		}
		return time.Since(start)
	}
	var known, unknown []time.Duration
	for i := range 8 {
		known = append(known, connackTime("127.0.0.3", "zuul"))
		unknown = append(unknown, connackTime("127.0.0.4", fmt.Sprintf("nobody-%d", i)))
	}
	k, u := median(known), median(unknown)
	t.Logf("median CONNACK for a wrong password: known username %s, unknown %s", k, u)
	if u < k*2/5 || u > k*5/2 {
		t.Fatalf("known %s vs unknown %s: timing tells them apart", k, u)
	}

	pid := d.cmd.Process.Pid
	cpuBefore := procCPU(t, pid)
	var attack sync.WaitGroup
	attack.Add(1)
	go func() {
		defer attack.Done()
		parallel(600, 50, func(i int) {
			dl := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			c, err := dl.Dial("tcp", d.addr["mqtt"])
			if err != nil {
				return
			}
			pk := connectPacket(4, "")
			pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte("zuul")
			pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(fmt.Sprintf("guess-%d", i))
			_, _ = c.Write(encodePacket(t, pk))
			c.Close()
		})
	}()
	// During the attack: the real publisher reconnects (its password is
	// remembered), and another account that has not connected since the
	// start is checked with bcrypt; both answered promptly.
	for _, p := range []struct{ user, pass string }{{"zuul", zuulPass}, {"gerrit", gerritPass}, {"zuul", zuulPass}} {
		start := time.Now()
		c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], p.user, p.pass))
		took := time.Since(start)
		c.Disconnect(0)
		t.Logf("%s's CONNACK during the attack: %s", p.user, took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Fatalf("%s's CONNACK took %s during the attack", p.user, took)
		}
	}
	attack.Wait()
	eventually(t, "the attack's CONNECTs to be answered", func() bool {
		r := d.status().Refusals
		return r["auth"]+r["auth_rate"]+r["auth_busy"]+r["per_address"] >= 600+16
	})
	cpu := procCPU(t, pid) - cpuBefore
	st := d.status()
	t.Logf("daemon CPU for 600 guesses: %s; refusals %v", cpu, st.Refusals)
	// A guesser that waits for its answers gets ten bcrypt checks a minute
	// (auth_failures_per_address), then "server unavailable" at once.
	checked, limited := 0, 0
	for range 30 {
		r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], "127.0.0.5"), 4)
		pk := connectPacket(4, "")
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte("zuul")
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte("patient guess")
		switch ack := r.connack(pk); ack.ReasonCode {
		case packets.Err3NotAuthorized.Code:
			checked++
		case packets.Err3ServerUnavailable.Code:
			limited++
		default:
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		r.c.Close()
	}
	if checked != 10 || limited != 20 {
		t.Fatalf("30 patient guesses: %d checked, %d refused by the rate limit; want 10 and 20", checked, limited)
	}
	st = d.status()
	if st.Refusals["auth_rate"] != 20 {
		t.Fatalf("refusals = %v", st.Refusals)
	}

	// Of the 600, at most auth_failures_per_address (10 a minute) reached
	// bcrypt; the rest were refused by the rate limit, for want of a slot
	// (the client had left) or at accept (too many open from the address).
	if guessed := st.Refusals["auth"] - 16 - 10; guessed > 10 {
		t.Fatalf("%d guesses were checked with bcrypt; refusals %v", guessed, st.Refusals)
	}
	// 600 bcrypt checks at this cost would take 600 × 75 ms under -race.
	if cpu > 20*time.Second {
		t.Fatalf("the daemon used %s of CPU on 600 guesses", cpu)
	}
	canary.check()
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// Row 5: subscribers that never read while a publisher sends 3,000 × 1 KiB
// are disconnected once their queue is spent; memory stays bounded; and an
// anonymous client may not ask for keepalive 0 (it would stay for ever).
func TestNonReadingSubscribers(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[limits]\nmax_queued_bytes = \"256KiB\"\n"})
	canary := startCanary(t, d)
	const n = 100
	before := procRSS(t, d.cmd.Process.Pid)
	var conns []net.Conn
	for i := range n {
		c := dialSmallWindow(t, d.addr["mqtt"], net.IPv4(127, 0, 1, byte(1+i/50)))
		r := newRawMQTT(t, c, 4)
		if ack := r.connack(connectPacket(4, fmt.Sprintf("sleeper-%d", i))); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "zuul/flood/#"}}})
		if ack := r.read(30 * time.Second); ack.FixedHeader.Type != packets.Suback {
			t.Fatal("no SUBACK")
		}
		conns = append(conns, c) // from here on it reads nothing
	}
	fast := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/flood/#")
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	payload := strings.Repeat("x", 1<<10)
	var peak int64
	for i := range 3000 {
		qos := byte(0)
		if i%100 == 99 {
			qos = 1 // paces the publisher
		}
		if err := wait(pub.Publish("zuul/flood/x", qos, false, fmt.Sprintf("%04d", i)+payload)); err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			peak = max(peak, procRSS(t, d.cmd.Process.Pid))
		}
	}
	for i := range 3000 {
		if m := fast.next(); string(m.Payload()[:4]) != fmt.Sprintf("%04d", i) {
			t.Fatalf("the reading subscriber got %s at %d", m.Payload()[:4], i)
		}
	}
	peak = max(peak, procRSS(t, d.cmd.Process.Pid))
	eventually(t, "every non-reading subscriber to be disconnected", func() bool {
		return d.status().Refusals["slow_subscriber"] >= n
	})
	// Unbounded, they would hold 100 × 3 MiB, and the collector (GOGC 200)
	// three times that. Bounded, 100 × 256 KiB (three times 25 MiB). The
	// race detector's shadow memory is counted too.
	bound := int64(200 << 20)
	if raceEnabled {
		bound = 500 << 20
	}
	t.Logf("RSS %d MiB before, peak %d MiB", before>>20, peak>>20)
	if peak-before > bound {
		t.Fatalf("RSS grew by %d MiB for %d subscribers with a 256 KiB budget", (peak-before)>>20, n)
	}
	for _, c := range conns[:10] {
		waitClosed(t, c, 60*time.Second)
	}
	if !strings.Contains(d.log.String(), "subscriber disconnected: it stopped reading") {
		t.Error("no log line for a slow subscriber")
	}

	// Keepalive 0: refused for an anonymous MQTT 3.1.1 client (as
	// Mosquitto refuses one over max_keepalive), told max_keepalive in an
	// MQTT 5 CONNACK; a publisher account may keep it.
	// (mosquitto_pub will not send keepalive 0; paho will.)
	ka0 := paho.NewClient(pahoOpts("tcp://"+d.addr["mqtt"], "", "").SetKeepAlive(0).SetProtocolVersion(4))
	if err := wait(ka0.Connect()); err == nil || !strings.Contains(strings.ToLower(err.Error()), "identifier rejected") {
		ka0.Disconnect(0)
		t.Fatalf("anonymous paho with keepalive 0: %v; want identifier rejected", err)
	}
	r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 5)
	pk := connectPacket(5, "ka0")
	pk.Connect.Keepalive = 0
	if ack := r.connack(pk); ack.ReasonCode != 0 || !ack.Properties.ServerKeepAliveFlag || ack.Properties.ServerKeepAlive != 3600 {
		t.Fatalf("MQTT 5 keepalive 0: CONNACK %#x, server keepalive %v %d; want 3600", ack.ReasonCode,
			ack.Properties.ServerKeepAliveFlag, ack.Properties.ServerKeepAlive)
	}
	connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass).SetKeepAlive(0)).Disconnect(0)
	if st := d.status(); st.Refusals["keepalive"] != 1 {
		t.Fatalf("refusals = %v", st.Refusals)
	}
	canary.check()
}

// With every subscriber within its own budget, memory_limit still bounds
// them together: past it, backed-up subscribers are disconnected and new
// anonymous connections refused, while the publisher and a subscriber that
// keeps up go on.
func TestMemoryLimitBoundsSlowSubscribers(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[limits]\nmemory_limit = \"64MiB\"\n"})
	canary := startCanary(t, d)
	const n = 50
	before := procRSS(t, d.cmd.Process.Pid)
	for i := range n {
		c := dialSmallWindow(t, d.addr["mqtt"], nil)
		r := newRawMQTT(t, c, 4)
		if ack := r.connack(connectPacket(4, fmt.Sprintf("heavy-%d", i))); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: "zuul/heavy/#"}}})
		r.read(30 * time.Second)
	}
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	payload := strings.Repeat("h", 4<<10)
	var peak int64
	// 50 subscribers × 6 MiB each would be 300 MiB, each under its 8 MiB
	// (the kernel holds up to 4 MiB of each on loopback).
	for i := range 1500 {
		qos := byte(0)
		if i%50 == 49 {
			qos = 1
		}
		if err := wait(pub.Publish("zuul/heavy/x", qos, false, payload)); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			peak = max(peak, procRSS(t, d.cmd.Process.Pid))
		}
	}
	eventually(t, "backed-up subscribers to be disconnected", func() bool { return d.status().Refusals["slow_subscriber"] > 0 })
	peak = max(peak, procRSS(t, d.cmd.Process.Pid))
	t.Logf("RSS %d MiB before, peak %d MiB; refusals %v", before>>20, peak>>20, d.status().Refusals)
	// The Go runtime's memory is held near 64 MiB; RSS adds what it has not
	// yet returned, and the race detector's shadow.
	bound := int64(192 << 20)
	if raceEnabled {
		bound = 480 << 20
	}
	if peak-before > bound {
		t.Fatalf("RSS grew by %d MiB with memory_limit 64 MiB", (peak-before)>>20)
	}
	canary.check()
}

// Row 6: connections to the websocket port that never upgrade are closed
// by the HTTP timeouts (or at once, after a plain GET), and count in status,
// against max_clients and against the per-address limit meanwhile; they
// cost bounded memory.
func TestIdleHTTPConnections(t *testing.T) {
	d := startDaemon(t, daemonOpts{broker: "connect_timeout = \"3s\"\nmax_clients = 250", extra: "[limits]\nmax_connections_per_address = 100\n"})
	canary := startCanary(t, d)
	before := procRSS(t, d.cmd.Process.Pid)
	dial := func(from net.IP) net.Conn {
		dl := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: from}}
		c, err := dl.Dial("tcp", d.addr["ws"])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// 150 from one address: 100 are taken, 50 closed at once.
	var one []net.Conn
	for range 150 {
		one = append(one, dial(net.IPv4(127, 0, 3, 100)))
	}
	eventually(t, "the per-address limit", func() bool { return d.status().Refusals["per_address"] == 50 })
	for _, c := range one {
		c.Close()
	}
	eventually(t, "closed connections to be released", func() bool { return d.status().Connections <= 3 })

	// A plain request is answered, and the connection closed: the page at
	// / and the websocket endpoint alike.
	for path, status := range map[string]string{"/": "HTTP/1.1 200", "/mqtt": "HTTP/1.1 426"} {
		get := dial(nil)
		if _, err := io.WriteString(get, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = get.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := io.ReadAll(get)
		if err != nil || !strings.HasPrefix(string(resp), status) {
			t.Fatalf("GET %s: %.200q, %v; want %q and the connection closed", path, resp, err, status)
		}
	}
	// Answered requests are no refusal: the server closing them after the
	// answer is not a timeout.
	if n := d.status().Refusals["http_timeout"]; n != 0 {
		t.Fatalf("answered GETs counted as %d http_timeout refusals", n)
	}

	// 300 that send part of a request, or nothing, from three addresses:
	// counted against max_clients from accept (250, plus a margin for
	// CONNACKs that say so), then closed by the header timeout.
	var idle []net.Conn
	for i := range 300 {
		c := dial(net.IPv4(127, 0, 3, byte(1+i/100)))
		if i%2 == 0 {
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		}
		idle = append(idle, c)
	}
	eventually(t, "max_clients to refuse connections at accept", func() bool { return d.status().Refusals["max_clients"] > 0 })
	st := d.status()
	t.Logf("while they wait: %d connections in status, refusals %v", st.Connections, st.Refusals)
	if st.Connections < 250 {
		t.Fatalf("status counts %d connections with 300 HTTP connections waiting", st.Connections)
	}
	if c := paho.NewClient(pahoOpts("tcp://"+d.addr["mqtt"], "", "")); wait(c.Connect()) == nil {
		c.Disconnect(0)
		t.Fatal("an MQTT client connected while HTTP connections fill max_clients")
	}
	for _, c := range idle {
		waitClosed(t, c, 30*time.Second)
	}
	after := procRSS(t, d.cmd.Process.Pid)
	eventually(t, "connections to be released", func() bool { return d.status().Connections <= 3 })
	st = d.status()
	t.Logf("refusals %v; RSS %d MiB before, %d MiB after", st.Refusals, before>>20, after>>20)
	if st.Refusals["http_timeout"] < 200 {
		t.Fatalf("refusals = %v, want the header timeouts counted", st.Refusals)
	}
	subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#") // capacity is back
	if after-before > 64<<20 {
		t.Fatalf("RSS grew by %d MiB", (after-before)>>20)
	}
	canary.check()
}

// Past memory_limit, new anonymous connections, subscriptions and retained
// messages are refused; the publisher and connected subscribers go on, and
// once memory is freed, clients are let in again.
func TestMemoryLimitRefusesNewClients(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[limits]\nmemory_limit = \"64MiB\"\nmax_retained_messages = 100000\nmax_retained_bytes = \"1GiB\"\n"})
	canary := startCanary(t, d)
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	payload := strings.Repeat("r", 16<<10)
	n := 0
	for ; n < 10000 && d.status().Refusals["memory"] == 0; n++ { // at most 160 MiB
		if err := wait(pub.Publish(fmt.Sprintf("zuul/fill/%d", n), 1, true, payload)); err != nil {
			t.Fatal(err)
		}
	}
	if d.status().Refusals["memory"] == 0 {
		t.Fatal("160 MiB of retained messages never reached memory_limit = 64MiB")
	}
	t.Logf("memory_limit reached after %d retained messages of 16 KiB", n)
	c := paho.NewClient(pahoOpts("tcp://"+d.addr["mqtt"], "", ""))
	err := wait(c.Connect())
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
		c.Disconnect(0)
		t.Fatalf("anonymous CONNECT over memory_limit: %v, want server unavailable", err)
	}
	// Free it: empty retained messages delete them.
	for i := range n {
		if err := wait(pub.Publish(fmt.Sprintf("zuul/fill/%d", i), 1, true, "")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		c := paho.NewClient(pahoOpts("tcp://"+d.addr["mqtt"], "", ""))
		if wait(c.Connect()) == nil {
			c.Disconnect(0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("clients still refused two minutes after the memory was freed")
		}
		time.Sleep(time.Second)
	}
	canary.check()
}

// Row 7: one client subscribing 50,000 distinct filters gets
// max_subscriptions_per_client of them; with clean session off, its session
// and subscriptions go anonymous_session_expiry after it leaves.
func TestManyFilters(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[limits]\nanonymous_session_expiry = \"3s\"\n"})
	canary := startCanary(t, d)
	before := procRSS(t, d.cmd.Process.Pid)
	for _, version := range []byte{4, 5} {
		r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), version)
		pk := connectPacket(version, fmt.Sprintf("hoarder-%d", version))
		pk.Connect.Clean = false
		if version == 5 {
			pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 86400, true
		}
		ack := r.connack(pk)
		if ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		if version == 5 && (!ack.Properties.SessionExpiryIntervalFlag || ack.Properties.SessionExpiryInterval != 3) {
			t.Fatalf("MQTT 5 CONNACK session expiry %v %d, want 3", ack.Properties.SessionExpiryIntervalFlag, ack.Properties.SessionExpiryInterval)
		}
		granted, refused := 0, 0
		for p := range 50 {
			filters := make(packets.Subscriptions, 1000)
			for i := range filters {
				filters[i].Filter = fmt.Sprintf("hoard/%d/%d", p, i)
			}
			r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: uint16(p + 1), Filters: filters})
			ack := r.read(60 * time.Second)
			for _, c := range ack.ReasonCodes {
				switch {
				case c == 0:
					granted++
				case version == 4 && c == 0x80, version == 5 && c == packets.ErrQuotaExceeded.Code:
					refused++
				default:
					t.Fatalf("MQTT %d SUBACK code %#x", version, c)
				}
			}
		}
		if granted != 1000 || refused != 49000 {
			t.Fatalf("MQTT %d: %d filters granted, %d refused; want 1000 and 49000", version, granted, refused)
		}
		r.c.Close()
	}
	after := procRSS(t, d.cmd.Process.Pid)
	t.Logf("RSS %d MiB before, %d MiB after 100,000 SUBSCRIBE filters", before>>20, after>>20)
	if after-before > 100<<20 {
		t.Fatalf("RSS grew by %d MiB", (after-before)>>20)
	}
	if st := d.status(); st.Refusals["subscriptions"] != 98000 {
		t.Fatalf("refusals = %v", st.Refusals)
	}
	eventually(t, "the departed clients' sessions to expire", func() bool { return d.status().Subscriptions <= 1 })
	canary.check()
}

// Row 8: twenty anonymous QoS 1 PUBLISHes of 500 KB (and a publisher's
// oversized packet) grow the log by a few lines, never by their payloads.
func TestRefusedPublishesDoNotInflateTheLog(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	logBefore := len(d.log.String())
	payload := strings.Repeat("P", 500_000)
	for _, version := range []uint{3, 4} {
		for range 10 {
			o := pahoOpts("tcp://"+d.addr["mqtt"], "", "").SetProtocolVersion(version)
			c := connect(t, o)
			_ = wait(c.Publish("zuul/spoof", 1, false, payload))
			_ = wait(c.Publish("$SYS/spoof", 1, true, payload))
			c.Disconnect(0)
		}
	}
	// MQTT 5, on a bare socket: refused with a PUBACK "not authorized".
	r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 5)
	r.connack(connectPacket(5, "v5-spoof"))
	for i := range 5 {
		r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: uint16(i + 1), TopicName: "zuul/spoof", Payload: []byte(payload)})
		if ack := r.read(30 * time.Second); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != packets.ErrNotAuthorized.Code {
			t.Fatalf("MQTT 5 anonymous publish: packet %d reason %#x", ack.FixedHeader.Type, ack.ReasonCode)
		}
	}
	grown := len(d.log.String()) - logBefore
	t.Logf("log grew by %d bytes for 45 refused 500 KB publishes", grown)
	if strings.Contains(d.log.String()[logBefore:], "PPPPPPPP") || grown > 64<<10 {
		t.Fatalf("log grew by %d bytes", grown)
	}
	if st := d.status(); st.Refusals["acl"] < 25 {
		t.Fatalf("refusals = %v", st.Refusals)
	}
	canary.check()
}

// MQTT details: the MQTT 5 CONNACK states max_packet_size (and libmosquitto
// honours it); a packet over it closes the client with a log line naming
// client, size and limit; acknowledgements carry no user properties.
func TestMQTTDetails(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 5)
	pk := connectPacket(5, "details")
	pk.Connect.UsernameFlag, pk.Connect.Username, pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte("zuul"), true, []byte(zuulPass)
	ack := r.connack(pk)
	if ack.ReasonCode != 0 || ack.Properties.MaximumPacketSize != 1<<20 {
		t.Fatalf("MQTT 5 CONNACK %#x, maximum packet size %d; want 1048576", ack.ReasonCode, ack.Properties.MaximumPacketSize)
	}
	r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "zuul/props",
		Payload: []byte("x"), Properties: packets.Properties{User: []packets.UserProperty{{Key: "k", Val: "v"}}}})
	if ack := r.read(30 * time.Second); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != 0 || len(ack.Properties.User) != 0 {
		t.Fatalf("PUBACK %#x with user properties %v; want success and none", ack.ReasonCode, ack.Properties.User)
	}

	// libmosquitto reads the limit from the CONNACK and refuses to send more.
	big := strings.Repeat("B", 1<<20)
	bigFile := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(bigFile, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	// An MQTT 3.1.1 client is told no maximum, sends, and is closed; an
	// MQTT 5 one holds the message back: only one reaches the broker.
	for _, v := range []string{"5", "311"} {
		mosquittoPub(t, d.addr["mqtt"], "-V", v, "-t", "zuul/big", "-f", bigFile)
	}
	eventually(t, "the MQTT 3.1.1 oversized packet", func() bool { return d.status().Refusals["packet_size"] >= 1 })
	if n := d.status().Refusals["packet_size"]; n != 1 {
		t.Fatalf("%d oversized packets reached the broker; the MQTT 5 client should have read the CONNACK's maximum", n)
	}

	// A publisher sending 1 MiB of payload (over max_packet_size with its
	// header) is closed, and the log says who, how big, what limit.
	lost := make(chan error, 1)
	c := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass).SetClientID("zuul-big").
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err }))
	c.Publish("zuul/big", 1, false, big)
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("an oversized publish did not close the publisher")
	}
	eventually(t, "the oversized packet's log line", func() bool {
		l := d.log.String()
		return strings.Contains(l, "packet larger than max_packet_size") && strings.Contains(l, "client=zuul-big") &&
			strings.Contains(l, "size=1048592") && strings.Contains(l, "limit=1048576")
	})
	// MQTT 5 is told why.
	r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "zuul/big", Payload: []byte(big)})
	for {
		pk, err := r.tryRead(30 * time.Second)
		if err != nil {
			t.Fatalf("no DISCONNECT before the close: %v", err)
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			if pk.ReasonCode != packets.ErrPacketTooLarge.Code {
				t.Fatalf("DISCONNECT %#x, want 0x95", pk.ReasonCode)
			}
			break
		}
	}
	if st := d.status(); st.Refusals["packet_size"] != 3 {
		t.Fatalf("refusals = %v", st.Refusals)
	}

	// An anonymous MQTT 5 subscriber asking for 65,535 topic aliases (a
	// table the broker keeps for it) is given 32.
	a := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 5)
	pk = connectPacket(5, "aliases")
	pk.Properties.TopicAliasMaximum = 65535
	a.connack(pk)
	a.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1, Filters: packets.Subscriptions{{Filter: "zuul/alias/#"}}})
	a.read(30 * time.Second)
	aliasPub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	for i := range 100 {
		if err := wait(aliasPub.Publish(fmt.Sprintf("zuul/alias/%d", i), 0, false, "x")); err != nil {
			t.Fatal(err)
		}
	}
	aliased := 0
	for range 100 {
		m := a.read(30 * time.Second)
		if m.Properties.TopicAliasFlag {
			aliased++
			if m.Properties.TopicAlias > 32 {
				t.Fatalf("topic alias %d", m.Properties.TopicAlias)
			}
		}
	}
	if aliased != 32 {
		t.Fatalf("%d of 100 topics given an alias, want 32", aliased)
	}
	canary.check()
}

// mqttjsBurst is run by node: n MQTT.js websocket subscribers; on "pause
// MS" the whole process stops (reads nothing) for MS milliseconds; it prints
// "ready" once all have subscribed and a JSON report once each has
// received count messages in order or lost its connection.
const mqttjsBurst = `
const mqtt = require('mqtt');
const [url, n, count] = [process.argv[2], +process.argv[3], +process.argv[4]];
const got = new Array(n).fill(0), bad = new Array(n).fill(0), closed = new Array(n).fill(false);
let ready = 0, finished = false;
const check = () => {
  if (finished || !got.every((g, i) => g === count || closed[i])) return;
  finished = true;
  console.log(JSON.stringify({got, bad, closed: closed.filter((c) => c).length}));
  process.exit(0);
};
for (let i = 0; i < n; i++) {
  const c = mqtt.connect(url, {clientId: 'mqttjs-' + i, reconnectPeriod: 0, keepalive: 60, protocolVersion: 4});
  c.on('connect', () => c.subscribe('zuul/burst', {qos: 0}, (err) => {
    if (err) console.log('subscribe error ' + err.message);
    else if (++ready === n) console.log('ready');
  }));
  c.on('message', (topic, p) => {
    const k = parseInt(p.toString('latin1', 0, 8), 10);
    if (k !== got[i]) bad[i]++;
    got[i] = k + 1;
    check();
  });
  c.on('close', () => { closed[i] = true; if (ready === n) check(); });
  c.on('error', (e) => console.log('error ' + i + ' ' + e.message));
}
process.stdin.on('data', (d) => {
  for (const cmd of d.toString().trim().split('\n')) {
    if (cmd.startsWith('pause ')) {
      console.log('paused');
      // Blocks the only thread, without burning a core as a busy loop would.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(cmd.slice(6)));
    }
  }
});
`

// The websocket burst of issue 10: MQTT.js subscribers over websockets
// whose process stops reading for the length of a burst of 1,000 × 4 KiB
// lose nothing with the default limits (max_queued_bytes holds the burst;
// with 1 MiB it does not, and they are disconnected, never given gaps).
func TestWebsocketBurstMQTTJS(t *testing.T) {
	modules, err := filepath.Abs("../../.cache/node/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "mqtt", "package.json")); err != nil {
		t.Skip("MQTT.js is not installed in .cache/node: run make deps")
	}
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	const subscribers, burst = 200, 1000
	script := filepath.Join(t.TempDir(), "burst.js")
	if err := os.WriteFile(script, []byte(mqttjsBurst), 0o644); err != nil {
		t.Fatal(err)
	}
	node := exec.Command("node", script, "ws://"+d.addr["ws"]+"/mqtt", fmt.Sprint(subscribers), fmt.Sprint(burst))
	node.Env = append(os.Environ(), "NODE_PATH="+modules)
	stdin, err := node.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	node.Stderr = node.Stdout
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Process.Kill(); _ = node.Wait() })
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	await := func(prefix string, limit time.Duration) string {
		t.Helper()
		deadline := time.After(limit)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("node exited before %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
				t.Logf("node: %s", l)
			case <-deadline:
				t.Fatalf("no %q from node within %s", prefix, limit)
			}
		}
	}
	await("ready", 120*time.Second)

	// The burst is sent while the subscribers' process reads nothing.
	const pause = 25 * time.Second
	if _, err := fmt.Fprintf(stdin, "pause %d\n", pause.Milliseconds()); err != nil {
		t.Fatal(err)
	}
	await("paused", 30*time.Second)
	paused := time.Now()
	// A busy machine may keep the daemon from reading the publisher for a
	// while: the burst's writes wait as long as they need.
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass).SetWriteTimeout(0))
	payload := strings.Repeat("b", 4<<10-8)
	start := time.Now()
	for i := range burst {
		qos := byte(0)
		if i == burst-1 {
			qos = 1
		}
		if tok := pub.Publish("zuul/burst", qos, false, fmt.Sprintf("%08d", i)+payload); !tok.WaitTimeout(120*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	t.Logf("burst of %d × 4 KiB published in %s", burst, time.Since(start).Round(time.Millisecond))
	if time.Since(paused) > pause {
		t.Logf("the burst outlasted the pause: only part of it met subscribers that were not reading")
	}
	report := await("{", 180*time.Second)
	var r struct {
		Got, Bad []int
		Closed   int
	}
	if err := json.Unmarshal([]byte(report), &r); err != nil {
		t.Fatalf("report %q: %v", report, err)
	}
	if r.Closed != 0 {
		t.Fatalf("%d subscribers lost their connection; refusals %v", r.Closed, d.status().Refusals)
	}
	for i := range r.Got {
		if r.Got[i] != burst || r.Bad[i] != 0 {
			t.Fatalf("subscriber %d: %d received, %d out of order; report %s", i, r.Got[i], r.Bad[i], report)
		}
	}
	if st := d.status(); st.Refusals["slow_subscriber"] != 0 {
		t.Fatalf("refusals = %v", st.Refusals)
	}
	canary.check()
}

// Refusals are counted by kind in status (JSON and the human view) and in
// $SYS; [limits] change live on reload, for connected clients too, and a
// reload with a bad limit changes nothing and names file, line and key.
func TestRefusalCountsAndLiveLimits(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	canary := startCanary(t, d)
	sys := mosquittoSub(t, d.addr["mqtt"], "-t", "$SYS/broker/refused/will")
	sys.expect("$SYS/broker/refused/will 0")
	if code, _ := mosquittoPub(t, d.addr["mqtt"], "-t", "zuul/x", "-m", "x", "--will-topic", "zuul/x", "--will-payload", "w"); code == 0 {
		t.Fatal("an anonymous Will was accepted")
	}
	for {
		select {
		case l := <-sys.lines:
			if l == "$SYS/broker/refused/will 1" {
				goto counted
			}
			if l != "$SYS/broker/refused/will 0" {
				t.Fatalf("$SYS: %q", l)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("$SYS/broker/refused/will never said 1")
		}
	}
counted:
	out, _ := d.run("status", "--socket", d.ctl.Socket)
	if !regexp.MustCompile(`(?m)^refused: +will 1$`).MatchString(out) {
		t.Fatalf("human status does not show the refusal:\n%s", out)
	}

	r := newRawMQTT(t, dialFrom(t, d.addr["mqtt"], ""), 4)
	r.connack(connectPacket(4, "live"))
	subscribeRaw := func(pid uint16, filters ...string) []byte {
		t.Helper()
		subs := make(packets.Subscriptions, len(filters))
		for i, f := range filters {
			subs[i].Filter = f
		}
		r.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: pid, Filters: subs})
		return r.read(30 * time.Second).ReasonCodes
	}
	if codes := subscribeRaw(1, "a/1"); !bytes.Equal(codes, []byte{0}) {
		t.Fatalf("SUBACK %v", codes)
	}
	limits := func(l string) string { return "[limits]\n" + l + "\n" }
	d.writeConfig(d.configText(daemonOpts{extra: limits("max_subscriptions_per_client = 2")}, zuulPublisher(t)))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: %s", out)
	}
	if codes := subscribeRaw(2, "a/2", "a/3", "a/4"); !bytes.Equal(codes, []byte{0, 0x80, 0x80}) {
		t.Fatalf("after max_subscriptions_per_client = 2: SUBACK %v, want [0 0x80 0x80]", codes)
	}
	d.writeConfig(d.configText(daemonOpts{extra: limits("max_subscriptions_per_client = 10\nmax_topic_levels = 0")}, zuulPublisher(t)))
	out, code := d.run("reload", "--socket", d.ctl.Socket)
	if code != 1 || !regexp.MustCompile(`firehose\.toml:\d+: limits\.max_topic_levels: must be between`).MatchString(out) {
		t.Fatalf("reload with a bad limit: exit %d: %s", code, out)
	}
	if codes := subscribeRaw(3, "a/5"); !bytes.Equal(codes, []byte{0x80}) {
		t.Fatalf("a rejected reload changed the limits: SUBACK %v", codes)
	}
	if st := d.status(); st.Refusals["subscriptions"] != 3 || st.Refusals["will"] != 1 {
		t.Fatalf("refusals = %v", st.Refusals)
	}
	canary.check()
}
