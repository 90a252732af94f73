package daemon_test

// End-to-end tests of issue 10 ("Hardening the public surface") against
// who a client claims to be: forged Wills, stolen client IDs, password
// guessing. Each runs the real daemon on loopback with a canary feed that
// must stay whole throughout (hardening_helpers_test.go).

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
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
