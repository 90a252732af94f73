package daemon_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// canaryFeed is a publisher account sending numbered messages every 50 ms
// to one paho subscriber for the length of an attack; check asserts that
// every one arrived, in order, and that neither end lost its connection.
type canaryFeed struct {
	t          *testing.T
	sub, pub   paho.Client
	stop, done chan struct{}
	sent       atomic.Int64
	next       atomic.Int64 // next sequence number the subscriber expects
	disorder   atomic.Int64
	lost       atomic.Int64
	publishErr atomic.Value
}

// startCanary starts the feed on zuul/canary with the publisher's client ID
// "zuul-canary" (an attack may try to take it).
func startCanary(t *testing.T, d *daemon) *canaryFeed {
	t.Helper()
	c := &canaryFeed{t: t, stop: make(chan struct{}), done: make(chan struct{})}
	url := "tcp://" + d.addr["mqtt"]
	lost := func(paho.Client, error) { c.lost.Add(1) }
	c.sub = connect(t, pahoOpts(url, "", "").SetConnectionLostHandler(lost))
	if err := wait(c.sub.Subscribe("zuul/canary", 0, func(_ paho.Client, m paho.Message) {
		n, err := strconv.ParseInt(string(m.Payload()), 10, 64)
		if err != nil || !c.next.CompareAndSwap(n, n+1) {
			c.disorder.Add(1)
		}
	})); err != nil {
		t.Fatal(err)
	}
	c.pub = connect(t, pahoOpts(url, "zuul", zuulPass).SetClientID("zuul-canary").SetConnectionLostHandler(lost))
	go func() {
		defer close(c.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(5 * time.Minute); time.Now().Before(end); {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			n := c.sent.Load()
			if err := wait(c.pub.Publish("zuul/canary", 1, false, strconv.FormatInt(n, 10))); err != nil {
				c.publishErr.Store(err)
				return
			}
			c.sent.Add(1)
		}
	}()
	eventually(t, "the canary's first message", func() bool { return c.next.Load() > 0 })
	t.Cleanup(func() {
		select {
		case <-c.stop:
		default:
			close(c.stop)
		}
		<-c.done
	})
	return c
}

// check stops the feed and asserts that it was whole throughout.
func (c *canaryFeed) check() {
	c.t.Helper()
	close(c.stop)
	<-c.done
	if err, _ := c.publishErr.Load().(error); err != nil {
		c.t.Fatalf("canary: the publisher failed: %v", err)
	}
	sent := c.sent.Load()
	eventually(c.t, "the canary's last message", func() bool { return c.next.Load() >= sent })
	if c.next.Load() != sent || c.disorder.Load() != 0 || c.lost.Load() != 0 {
		c.t.Fatalf("canary: %d sent, %d received in order, %d out of order, %d connections lost",
			sent, c.next.Load(), c.disorder.Load(), c.lost.Load())
	}
	c.t.Logf("canary: %d messages, all delivered in order", sent)
}

// procRSS is a process's resident memory from /proc, in bytes.
func procRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// procCPU is the CPU time a process has used, from /proc.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// rawMQTT is a client on a bare socket: packets are encoded and decoded by
// mochi's codec, so malformed and hostile input can be sent as is.
type rawMQTT struct {
	t       *testing.T
	c       net.Conn
	r       *bufio.Reader
	version byte
}

// dialFrom connects to addr from the loopback address from ("" = any).
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newRawMQTT(t *testing.T, c net.Conn, version byte) *rawMQTT {
	return &rawMQTT{t: t, c: c, r: bufio.NewReader(c), version: version}
}

// connectPacket is a CONNECT with a clean session and keepalive 60.
func connectPacket(version byte, id string) packets.Packet {
	name := "MQTT"
	if version == 3 {
		name = "MQIsdp"
	}
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte(name), Clean: true, Keepalive: 60, ClientIdentifier: id}}
}

func encodePacket(t testing.TB, pk packets.Packet) []byte {
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&b)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&b)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&b)
	default:
		t.Fatalf("no encoder for packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (r *rawMQTT) send(pk packets.Packet) {
	r.t.Helper()
	pk.ProtocolVersion = r.version
	if _, err := r.c.Write(encodePacket(r.t, pk)); err != nil {
		r.t.Fatalf("send: %v", err)
	}
}

// read returns the next packet from the server, or fails the test after
// limit.
func (r *rawMQTT) read(limit time.Duration) packets.Packet {
	r.t.Helper()
	pk, err := r.tryRead(limit)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return pk
}

func (r *rawMQTT) tryRead(limit time.Duration) (packets.Packet, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(limit))
	var pk packets.Packet
	b, err := r.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	if pk.FixedHeader.Remaining, _, err = packets.DecodeLength(r.r); err != nil {
		return pk, err
	}
	body := make([]byte, pk.FixedHeader.Remaining)
	if _, err := io.ReadFull(r.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = r.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

// connack connects with pk and returns the server's CONNACK.
func (r *rawMQTT) connack(pk packets.Packet) packets.Packet {
	r.t.Helper()
	r.send(pk)
	ack := r.read(30 * time.Second)
	if ack.FixedHeader.Type != packets.Connack {
		r.t.Fatalf("got packet type %d, want CONNACK", ack.FixedHeader.Type)
	}
	return ack
}

// parallel runs f(i) for i in [0, n) on at most width goroutines.
func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range width {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// expectIgnoring is sub.expect, skipping messages on topic ignore.
func expectIgnoring(s *sub, ignore, topic, payload string) {
	s.t.Helper()
	for {
		m := s.next()
		if m.Topic() == ignore {
			continue
		}
		if m.Topic() != topic || string(m.Payload()) != payload {
			s.t.Fatalf("got %s %q, want %s %q", m.Topic(), m.Payload(), topic, payload)
		}
		return
	}
}

// bcryptHash hashes pass at cost.
func bcryptHash(pass string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), cost)
	return string(h), err
}

// dialSmallWindow connects from the loopback address from (nil: any) with
// a 4 KiB receive buffer, set before the handshake so that the window is
// small: a subscriber that stops reading then backs up into the broker
// rather than into the kernel's socket buffers.
func dialSmallWindow(t *testing.T, addr string, from net.IP) net.Conn {
	t.Helper()
	dl := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	if from != nil {
		dl.LocalAddr = &net.TCPAddr{IP: from}
	}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
