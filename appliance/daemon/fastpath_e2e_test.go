package daemon_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	be "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firehose/firehose/appliance/tlsconf/tlstest"
)

// Tests of the broker's fast path (appliance/broker/fastpath.go): journaled
// messages encoded once and written to many subscribers, bypassing mochi's
// per-subscriber copy, queue and encoding, for subscribers that would have
// received exactly those bytes.

// wireClient is an MQTT client that keeps every packet's bytes as they
// came off the wire, over TCP, TLS or websockets.
type wireClient struct {
	t       *testing.T
	c       io.ReadWriteCloser
	r       *bufio.Reader
	version byte
	setDL   func(time.Time)
}

// wsStream is a websocket as a byte stream: binary messages back to back.
type wsStream struct {
	ws *websocket.Conn
	r  io.Reader
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			_, r, err := s.ws.NextReader()
			if err != nil {
				return 0, err
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if errors.Is(err, io.EOF) {
			s.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (s *wsStream) Write(p []byte) (int, error) {
	return len(p), s.ws.WriteMessage(websocket.BinaryMessage, p)
}

func (s *wsStream) Close() error { return s.ws.Close() }

// dialWire connects over transport ("tcp", "tls", "ws", "wss") to addr.
func dialWire(t *testing.T, transport, addr string, roots *x509.CertPool, version byte) *wireClient {
	t.Helper()
	w := &wireClient{t: t, version: version}
	switch transport {
	case "tcp", "tls":
		var c net.Conn
		var err error
		if transport == "tls" {
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		} else {
			c, err = net.DialTimeout("tcp", addr, 30*time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
		w.c, w.setDL = c, func(d time.Time) { _ = c.SetReadDeadline(d) }
	case "ws", "wss":
		scheme := "ws"
		if transport == "wss" {
			scheme = "wss"
		}
		dl := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 30 * time.Second, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
		ws, _, err := dl.Dial(scheme+"://"+addr+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		w.c, w.setDL = &wsStream{ws: ws}, func(d time.Time) { _ = ws.SetReadDeadline(d) }
	default:
		t.Fatalf("transport %q", transport)
	}
	w.r = bufio.NewReader(w.c)
	t.Cleanup(func() { w.c.Close() })
	return w
}

func (w *wireClient) send(pk packets.Packet) {
	w.t.Helper()
	pk.ProtocolVersion = w.version
	if _, err := w.c.Write(encodePacket(w.t, pk)); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

// next returns the next packet's raw bytes and its decoded form, or fails
// the test (call it from the test's goroutine).
func (w *wireClient) next(limit time.Duration) ([]byte, packets.Packet) {
	w.t.Helper()
	raw, pk, err := w.tryNext(limit)
	if err != nil {
		w.t.Fatal(err)
	}
	return raw, pk
}

func (w *wireClient) tryNext(limit time.Duration) ([]byte, packets.Packet, error) {
	w.setDL(time.Now().Add(limit))
	var raw bytes.Buffer
	var pk packets.Packet
	b, err := w.r.ReadByte()
	if err != nil {
		return nil, pk, fmt.Errorf("read: %w", err)
	}
	raw.WriteByte(b)
	if err := pk.FixedHeader.Decode(b); err != nil {
		return nil, pk, err
	}
	n, mult := 0, 1
	for {
		c, err := w.r.ReadByte()
		if err != nil {
			return nil, pk, fmt.Errorf("read: %w", err)
		}
		raw.WriteByte(c)
		n += int(c&0x7f) * mult
		mult *= 128
		if c&0x80 == 0 {
			break
		}
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(w.r, body); err != nil {
		return nil, pk, fmt.Errorf("read: %w", err)
	}
	raw.Write(body)
	pk.ProtocolVersion = w.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	}
	if err != nil {
		return nil, pk, fmt.Errorf("decode packet type %d: %w", pk.FixedHeader.Type, err)
	}
	return raw.Bytes(), pk, nil
}

// connect connects (as user, if not empty) and checks the CONNACK.
func (w *wireClient) connect(id, user, pass string) {
	w.t.Helper()
	pk := connectPacket(w.version, id)
	if user != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(pass)
	}
	w.send(pk)
	_, ack := w.next(60 * time.Second)
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		w.t.Fatalf("CONNACK: type %d code %#x", ack.FixedHeader.Type, ack.ReasonCode)
	}
}

// subscribe sends a client's first SUBSCRIBE and requires its SUBACK to be
// the very next packet: nothing for the new subscription may come before it.
func (w *wireClient) subscribe(pid uint16, subs ...packets.Subscription) []byte {
	w.t.Helper()
	w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: pid, Filters: subs})
	_, ack := w.next(60 * time.Second)
	if ack.FixedHeader.Type != packets.Suback || ack.PacketID != pid {
		w.t.Fatalf("waiting for SUBACK %d: got packet type %d", pid, ack.FixedHeader.Type)
	}
	return ack.ReasonCodes
}

// seqOf is a PUBLISH's firehose-seq (MQTT 5), or 0.
func seqOf(pk packets.Packet) uint64 {
	for _, u := range pk.Properties.User {
		if u.Key == "firehose-seq" {
			n, _ := strconv.ParseUint(u.Val, 10, 64)
			return n
		}
	}
	return 0
}

// normaliseExpiry blanks an MQTT 5 PUBLISH's message expiry interval when it
// is the broker's maximum (86,400 s) or a second under it: mochi computes it
// from the clock when it writes, so two deliveries of one message may differ
// there by the tick of a second, whichever path they take.
func normaliseExpiry(raw []byte) []byte {
	out := append([]byte(nil), raw...)
	i := 1
	for out[i]&0x80 != 0 {
		i++
	}
	i++
	tl := int(be.BigEndian.Uint16(out[i:]))
	i += 2 + tl
	if out[0]&0x06 != 0 {
		i += 2 // packet ID
	}
	for out[i]&0x80 != 0 { // property length
		i++
	}
	i++
	if i+5 <= len(out) && out[i] == 0x02 {
		if v := be.BigEndian.Uint32(out[i+1:]); v == 86400 || v == 86399 {
			copy(out[i+1:i+5], []byte{0, 0, 0, 0})
		}
	}
	return out
}

// fastPathCapture starts a daemon with the fast path on or off, subscribes
// a raw client per transport and MQTT version, publishes a fixed set of
// messages, and returns each client's PUBLISH packets as they arrived.
func fastPathCapture(t *testing.T, fast bool) map[string][][]byte {
	if fast {
		t.Setenv("FIREHOSE_FAST_PATH", "on")
	} else {
		t.Setenv("FIREHOSE_FAST_PATH", "off")
	}
	ca := tlstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile, _ := ca.IssueFiles(t, dir, "server", 90*24*time.Hour)
	d := startDaemon(t, daemonOpts{
		sockets: allSockets,
		host:    tlstest.LocalhostIP(t),
		extra:   fmt.Sprintf("[tls]\nmode = \"files\"\ncert_file = %q\nkey_file = %q\n", certFile, keyFile),
	})
	addrs := map[string]string{"tcp": d.addr["mqtt"], "tls": localhostAddr(d.addr["mqtts"]), "ws": d.addr["ws"], "wss": localhostAddr(d.addr["wss"])}
	clients := map[string]*wireClient{}
	for _, tr := range []string{"tcp", "tls", "ws", "wss"} {
		for _, v := range []byte{4, 5} {
			key := fmt.Sprintf("%s/v%d", tr, v)
			w := dialWire(t, tr, addrs[tr], ca.Pool, v)
			w.connect("fp-"+strings.ReplaceAll(key, "/", "-"), "", "")
			if codes := w.subscribe(1, packets.Subscription{Filter: "zuul/fp/#"}); len(codes) != 1 || codes[0] != 0 {
				t.Fatalf("%s: SUBACK %v", key, codes)
			}
			clients[key] = w
		}
	}
	// Payloads of several sizes (the remaining length takes one to three
	// bytes), published at QoS 0 and 1, retained or not.
	sizes := []int{0, 1, 100, 127, 200, 16383, 20000}
	pub := newQoS1Publisher(t, d)
	n := 0
	for i, size := range sizes {
		for _, qos := range []byte{0, 1} {
			payload := strings.Repeat(string(rune('a'+i)), size)
			if err := wait(pub.c.Publish(fmt.Sprintf("zuul/fp/%d/%d", i, qos), qos, qos == 1 && i%2 == 0, payload)); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	got := map[string][][]byte{}
	for key, w := range clients {
		for range n {
			raw, pk := w.next(60 * time.Second)
			if pk.FixedHeader.Type != packets.Publish {
				t.Fatalf("%s: got packet type %d, want PUBLISH", key, pk.FixedHeader.Type)
			}
			got[key] = append(got[key], raw)
		}
	}
	// The fast path's own count says which path carried them.
	want := int64(0)
	if fast {
		want = int64(n * len(clients))
	}
	eventually(t, fmt.Sprintf("$SYS fast-path count %d", want), func() bool {
		return sysValue(d, "$SYS/broker/fast-path/messages/sent") == strconv.FormatInt(want, 10) || (!fast && sysValue(d, "$SYS/broker/fast-path/messages/sent") == "")
	})
	return got
}

// sysValue is a retained $SYS topic's value as mosquitto_sub reads it, or
// "" when there is none.
func sysValue(d *daemon, topic string) string {
	host, port, _ := net.SplitHostPort(d.addr["mqtt"])
	out, _ := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-t", topic, "-C", "1", "-W", "5", "--retained-only").Output()
	return strings.TrimSpace(string(out))
}

// TestFastPathBytesMatchMochi: with the fast path, MQTT 3.1.1 and MQTT 5
// subscribers over TCP, TLS and websockets (plain and TLS) receive exactly
// the bytes mochi sends them with the fast path off, message for message.
func TestFastPathBytesMatchMochi(t *testing.T) {
	off := fastPathCapture(t, false)
	on := fastPathCapture(t, true)
	for key, want := range off {
		have := on[key]
		if len(have) != len(want) {
			t.Fatalf("%s: %d packets with the fast path, %d without", key, len(have), len(want))
		}
		for i := range want {
			a, b := want[i], have[i]
			if strings.HasSuffix(key, "v5") {
				a, b = normaliseExpiry(a), normaliseExpiry(b)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s message %d: fast path sent\n% x\nmochi sent\n% x", key, i, b, a)
			}
		}
	}
}

// readUntilEnd reads PUBLISH packets until one carries payload "end",
// giving each to f (which stops the reading by returning an error); a QoS 1
// PUBLISH is acknowledged, other packets (SUBACK, UNSUBACK) are skipped. It
// may run on any goroutine.
func (w *wireClient) readUntilEnd(f func(pk packets.Packet) error) error {
	for {
		_, pk, err := w.tryNext(120 * time.Second)
		if err != nil {
			return err
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		if pk.FixedHeader.Qos == 1 {
			if _, err := w.c.Write([]byte{0x40, 0x02, byte(pk.PacketID >> 8), byte(pk.PacketID)}); err != nil {
				return err
			}
		}
		if string(pk.Payload) == "end" {
			return nil
		}
		if err := f(pk); err != nil {
			return err
		}
	}
}

// TestFastPathOrderAcrossSubscribeRace: subscribers connect and subscribe
// (and half of them subscribe again, to an overlapping filter, midway) while
// messages are published without pause. Each sees the SUBACK before any
// delivery and then a contiguous run of messages in journal order, with no
// gap or duplicate, whichever path each message took.
func TestFastPathOrderAcrossSubscribeRace(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	const total, subscribers = 3000, 24
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		for i := 1; i <= total; i++ {
			tok := pub.Publish("zuul/race/x", 0, false, strconv.Itoa(i))
			if i%100 == 0 {
				if err := wait(tok); err != nil {
					pubDone <- err
					return
				}
			}
			published.Store(int64(i))
		}
		pubDone <- wait(pub.Publish("zuul/race/x", 1, false, "end"))
	}()
	errs := make(chan error, subscribers)
	for k := range subscribers {
		// Stagger the subscriptions through the stream.
		for published.Load() < int64(k*total/subscribers) {
			time.Sleep(time.Millisecond)
		}
		version := byte(4 + k%2)
		w := dialWire(t, "tcp", d.addr["mqtt"], nil, version)
		w.connect(fmt.Sprintf("race-%d", k), "", "")
		w.subscribe(1, packets.Subscription{Filter: "zuul/race/#"})
		go func() {
			errs <- func() error {
				var prev, n int
				var prevSeq uint64
				again := k%4 < 2
				err := w.readUntilEnd(func(pk packets.Packet) error {
					i, _ := strconv.Atoi(string(pk.Payload))
					if prev != 0 && i != prev+1 {
						return fmt.Errorf("subscriber %d (MQTT v%d): message %d after %d", k, version, i, prev)
					}
					if s := seqOf(pk); version == 5 && prevSeq != 0 && s != prevSeq+1 {
						return fmt.Errorf("subscriber %d: seq %d after %d", k, s, prevSeq)
					}
					prev, prevSeq = i, seqOf(pk)
					n++
					if again && n == 20 {
						sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2, ProtocolVersion: version,
							Filters: packets.Subscriptions{{Filter: "zuul/+/x"}}}
						var b bytes.Buffer
						if err := sub.SubscribeEncode(&b); err != nil {
							return err
						}
						if _, err := w.c.Write(b.Bytes()); err != nil {
							return err
						}
					}
					return nil
				})
				if err == nil && prev != 0 && prev != total {
					err = fmt.Errorf("subscriber %d: last message %d, want %d", k, prev, total)
				}
				return err
			}()
		}()
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	for range subscribers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if v, _ := strconv.Atoi(sysValue(d, "$SYS/broker/fast-path/messages/sent")); v == 0 {
		t.Error("the fast path delivered nothing")
	}
}

// TestFastPathSwitchToMochiAndBack: a publisher account's subscriber takes
// the fast path at QoS 0, moves to mochi's when it subscribes at QoS 1 and
// when it adds a subscription identifier (MQTT 5), and back when it drops
// both, while QoS 1 messages flow: every message arrives once, in order, and
// each phase shows the path it took (QoS, identifier).
func TestFastPathSwitchToMochiAndBack(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			d := startDaemon(t, daemonOpts{})
			const total = 600
			w := dialWire(t, "tcp", d.addr["mqtt"], nil, version)
			w.connect("switcher", "zuul", zuulPass)
			w.subscribe(1, packets.Subscription{Filter: "zuul/sw/#", Qos: 0})
			pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
			pubDone := make(chan error, 1)
			go func() {
				for i := 1; i <= total; i++ {
					if err := wait(pub.Publish("zuul/sw/x", 1, false, strconv.Itoa(i))); err != nil {
						pubDone <- err
						return
					}
				}
				pubDone <- wait(pub.Publish("zuul/sw/x", 1, false, "end"))
			}()
			phase := 0
			seen := map[int]int{} // phase -> messages seen in it with its mark
			var prev int
			err := w.readUntilEnd(func(pk packets.Packet) error {
				i, _ := strconv.Atoi(string(pk.Payload))
				if i != prev+1 {
					return fmt.Errorf("message %d after %d", i, prev)
				}
				prev = i
				ids := pk.Properties.SubscriptionIdentifier
				switch {
				case phase == 1 && pk.FixedHeader.Qos == 1,
					phase == 2 && pk.FixedHeader.Qos == 1 && (version < 5 || len(ids) == 1 && ids[0] == 7),
					phase == 3 && pk.FixedHeader.Qos == 0 && len(ids) == 0:
					seen[phase]++
				}
				switch i {
				case 150:
					phase = 1
					w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2,
						Filters: packets.Subscriptions{{Filter: "zuul/sw/#", Qos: 1}}})
				case 300:
					phase = 2
					sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 3,
						Filters: packets.Subscriptions{{Filter: "zuul/sw/+", Identifier: 7}}}
					if version == 5 {
						sub.Properties.SubscriptionIdentifier = []int{7}
					}
					w.send(sub)
				case 450:
					phase = 3
					w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 4,
						Filters: packets.Subscriptions{{Filter: "zuul/sw/+"}}})
					w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 5,
						Filters: packets.Subscriptions{{Filter: "zuul/sw/#", Qos: 0}}})
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := <-pubDone; err != nil {
				t.Fatal(err)
			}
			if prev != total {
				t.Fatalf("last message %d, want %d", prev, total)
			}
			// Each phase's path must show by the end of it (each phase has
			// 150 messages; the first few may still be in flight when the
			// switch is asked for).
			for p := 1; p <= 3; p++ {
				if seen[p] < 50 {
					t.Errorf("phase %d: only %d of 150 messages showed its path (QoS, identifier): %v", p, seen[p], seen)
				}
			}
			// Phases 0 and 3 (about 300 messages) took the fast path; 1 and 2
			// could not.
			eventually(t, "the fast path's count covering phases 0 and 3", func() bool {
				v, _ := strconv.Atoi(sysValue(d, "$SYS/broker/fast-path/messages/sent"))
				return v >= 250 && v <= 320
			})
		})
	}
}

// TestFastPathFollowsSessions: the fast path keeps each topic's subscriber
// list between subscription changes (appliance/broker/fanlist.go). A
// subscriber that unsubscribes gets nothing more on the topic, one that
// subscribes again gets it again, a resumed session gets its messages on the
// new connection, and a clean start under the same client ID gets nothing of
// the old session's subscriptions; every message once, in order.
func TestFastPathFollowsSessions(t *testing.T) {
	for _, version := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			d := startDaemon(t, daemonOpts{})
			pub := newQoS1Publisher(t, d)
			dial := func(clean, present bool) *wireClient {
				w := dialWire(t, "tcp", d.addr["mqtt"], nil, version)
				pk := connectPacket(version, "follower")
				pk.Connect.Clean = clean
				pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte("zuul")
				pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(zuulPass)
				if version == 5 {
					pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 300, true
				}
				w.send(pk)
				_, ack := w.next(60 * time.Second)
				if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
					t.Fatalf("CONNACK: type %d code %#x", ack.FixedHeader.Type, ack.ReasonCode)
				}
				if ack.SessionPresent != present {
					t.Fatalf("clean start %v: session present %v, want %v", clean, ack.SessionPresent, present)
				}
				return w
			}
			// expect requires the next packets to be PUBLISHes of exactly
			// these payloads, in this order.
			expect := func(w *wireClient, payloads ...string) {
				t.Helper()
				for _, want := range payloads {
					_, pk := w.next(60 * time.Second)
					if pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != want {
						t.Fatalf("got packet type %d %q, want PUBLISH %q", pk.FixedHeader.Type, pk.Payload, want)
					}
				}
			}
			w := dial(false, false)
			w.subscribe(1, packets.Subscription{Filter: "zuul/fs/a"}, packets.Subscription{Filter: "zuul/fs/mark"})
			pub.publish("zuul/fs/a", "a1")
			pub.publish("zuul/fs/mark", "m1")
			expect(w, "a1", "m1")

			w.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
				Filters: packets.Subscriptions{{Filter: "zuul/fs/a"}}})
			if _, ack := w.next(60 * time.Second); ack.FixedHeader.Type != packets.Unsuback {
				t.Fatalf("got packet type %d, want UNSUBACK", ack.FixedHeader.Type)
			}
			pub.publish("zuul/fs/a", "a2")
			pub.publish("zuul/fs/mark", "m2")
			expect(w, "m2")

			w.subscribe(3, packets.Subscription{Filter: "zuul/fs/a"})
			pub.publish("zuul/fs/a", "a3")
			expect(w, "a3")

			// The session resumed on a new connection (the old one is
			// taken over if the broker has not seen it close yet).
			w.c.Close()
			w = dial(false, true)
			pub.publish("zuul/fs/a", "a4")
			pub.publish("zuul/fs/mark", "m4")
			expect(w, "a4", "m4")

			// A clean start drops the session's subscriptions.
			w.c.Close()
			w = dial(true, false)
			w.subscribe(4, packets.Subscription{Filter: "zuul/fs/mark"})
			pub.publish("zuul/fs/a", "a5")
			pub.publish("zuul/fs/mark", "m5")
			expect(w, "m5")
			// 7 deliveries to this subscriber, all at QoS 0 with no
			// identifier: the fast path's ($SYS is published each second).
			eventually(t, "the fast path's count of 7", func() bool {
				return sysValue(d, "$SYS/broker/fast-path/messages/sent") == "7"
			})
		})
	}
}
