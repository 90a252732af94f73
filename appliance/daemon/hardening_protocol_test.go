package daemon_test

// End-to-end tests of issue 10 ("Hardening the public surface") on the
// protocol's details: refused publishes that must not flood the log, MQTT
// details (maximum packet size, acks), refusal counts and limits changed
// live.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

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
