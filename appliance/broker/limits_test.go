package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firehose/firehose/appliance/config"
)

func testLimits(edit func(*config.Limits)) *limits {
	l := config.Default().Limits
	if edit != nil {
		edit(&l)
	}
	return newLimits(l)
}

func TestTopicShape(t *testing.T) {
	lim := testLimits(func(l *config.Limits) { l.MaxTopicLevels, l.MaxTopicLength = 3, 20 })
	for _, tc := range []struct{ in, want string }{
		{"a/b/c", ""}, {"a/b/c/d", RefusedTopicLevels}, {"a/+/#", ""}, {"///", RefusedTopicLevels},
		{strings.Repeat("x", 20), ""}, {strings.Repeat("x", 21), RefusedTopicLength},
		{strings.Repeat("/", 65533), RefusedTopicLength},
	} {
		if got := topicShape(tc.in, lim); got != tc.want {
			t.Errorf("topicShape(%.20q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAddressKeysAndExemptions(t *testing.T) {
	lim := testLimits(func(l *config.Limits) { l.ExemptAddresses = []string{"10.0.0.0/8", "2001:db8::7"} })
	for _, tc := range []struct {
		addr   string
		key    string
		exempt bool
	}{
		{"192.0.2.1:1883", "192.0.2.1/32", false},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3/32", true},
		{"[2001:db8::7]:80", "2001:db8::/64", true},
		{"[2001:db8::8]:80", "2001:db8::/64", false},
		{"[fe80::1%eth0]:80", "fe80::/64", false},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		ip := addrOf(net.TCPAddrFromAddrPort(ap))
		if got := keyOf(ip).String(); got != tc.key {
			t.Errorf("key of %s = %s, want %s", tc.addr, got, tc.key)
		}
		if got := lim.exempted(ip); got != tc.exempt {
			t.Errorf("%s exempt = %v, want %v", tc.addr, got, tc.exempt)
		}
	}
	if k := keyOf(addrOf(pipeAddr{})); k.IsValid() {
		t.Errorf("a pipe has key %v", k)
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// FuzzAddressMatching: any peer address gives a key that contains it (or no
// key), and an exemption holds exactly when one of the prefixes contains it.
func FuzzAddressMatching(f *testing.F) {
	f.Add("192.0.2.7:1", "192.0.2.0/24")
	f.Add("[2001:db8::1]:1883", "2001:db8::/48")
	f.Add("[::ffff:10.0.0.1]:80", "10.0.0.0/8")
	f.Add("[fe80::1%lo]:5", "fe80::/10")
	f.Fuzz(func(t *testing.T, addr, prefix string) {
		ip := addrOf(stringAddr(addr))
		key := keyOf(ip)
		if !ip.IsValid() {
			if key.IsValid() {
				t.Fatalf("no address but key %v", key)
			}
			return
		}
		if !key.Contains(ip) || (key.Bits() != 32 && key.Bits() != 64) || ip.Is4In6() || ip.Zone() != "" {
			t.Fatalf("address %v has key %v", ip, key)
		}
		p, err := config.ParsePrefix(prefix)
		if err != nil {
			return
		}
		lim := testLimits(func(l *config.Limits) { l.ExemptAddresses = []string{prefix} })
		if got := lim.exempted(ip); got != p.Contains(ip) {
			t.Fatalf("%v exempt by %v = %v", ip, p, got)
		}
	})
}

type stringAddr string

func (stringAddr) Network() string  { return "tcp" }
func (a stringAddr) String() string { return string(a) }

func TestTrackerPerAddressAndRelease(t *testing.T) {
	b := New(slog.New(slog.DiscardHandler), Settings{MaxClients: 1000, MaxPacketSize: 1024,
		Limits: testLimits(func(l *config.Limits) { l.MaxConnectionsPerAddress = 2 }).Limits})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	al := &admitListener{Listener: l, t: &b.conns}
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := al.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	first, second := <-accepted, <-accepted
	// The third is refused: closed at once, without a byte.
	_ = clients[2].SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := clients[2].Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("third connection from one address: read %d, %v; want EOF", n, err)
	}
	if got := b.Refusals()[RefusedPerAddress]; got != 1 || b.conns.open.Load() != 2 {
		t.Fatalf("per_address refusals %d, open %d; want 1 and 2", got, b.conns.open.Load())
	}
	first.Close()
	first.Close() // released once
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case third := <-accepted:
		third.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a connection was not admitted after another from its address closed")
	}
	second.Close()
	if b.conns.open.Load() != 0 {
		t.Fatalf("open = %d after every connection closed", b.conns.open.Load())
	}
}

func TestPeerGone(t *testing.T) {
	s, c := tcpPair(t)
	defer s.Close()
	if peerGone(s) {
		t.Fatal("an open connection counted as gone")
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !peerGone(s) {
		if time.Now().After(deadline) {
			t.Fatal("a closed peer never counted as gone")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p1, _ := net.Pipe(); peerGone(p1) {
		t.Fatal("a pipe (no socket) counted as gone")
	}
}

// A subscriber that does not read is cut off once max_queued_bytes wait for
// it, with a *slowError, its connection closed; what it had read is whole.
func TestQueueBudgetDisconnects(t *testing.T) {
	s, c := tcpPair(t)
	defer c.Close()
	g := newGuardedConn(s, testWire(1<<20, 256<<10), nil)
	defer g.Close()
	p := bytes.Repeat([]byte("x"), 1024)
	var err error
	for i := 0; err == nil; i++ {
		_, err = g.Write(p)
		if i > 64<<10 {
			t.Fatal("64 MiB written to a subscriber that reads nothing, budget 256 KiB")
		}
	}
	var se *slowError
	if !errors.As(err, &se) || se.limit != 256<<10 || se.memory {
		t.Fatalf("err = %v, want a slowError at 256 KiB", err)
	}
	if _, err := g.Write(p); err == nil {
		t.Fatal("a write after the budget was spent succeeded")
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	if len(got)%1024 != 0 && bytes.Count(got, []byte("x")) != len(got) {
		t.Fatalf("read %d bytes, not whole writes of x", len(got))
	}
}

// Over memory_limit, a subscriber with more than memoryFloor waiting is cut
// off even within its own budget; one keeping up is not.
func TestQueueMemoryPressure(t *testing.T) {
	s, c := tcpPair(t)
	defer c.Close()
	w := testWire(1<<20, 64<<20)
	w.mem.limit.Store(1) // every process is over one byte
	g := newGuardedConn(s, w, nil)
	defer g.Close()
	if _, err := g.Write([]byte("small")); err != nil {
		t.Fatalf("a first write under pressure: %v", err)
	}
	p := make([]byte, 16<<10)
	var err error
	for i := 0; err == nil; i++ {
		_, err = g.Write(p)
		if i > 4096 {
			t.Fatal("64 MiB queued while over memory_limit")
		}
	}
	var se *slowError
	if !errors.As(err, &se) || !se.memory {
		t.Fatalf("err = %v, want a slowError for memory", err)
	}
}

func TestRetainedBook(t *testing.T) {
	lim := testLimits(func(l *config.Limits) { l.MaxRetainedMessages, l.MaxRetainedBytes = 2, 100 })
	var r retainedBook
	for _, step := range []struct {
		topic string
		n     int
		admit bool
	}{
		{"a", 60, true}, {"b", 40, true}, {"c", 1, false}, // count
		{"a", 61, false}, {"a", 10, true}, {"b", 90, true}, // bytes, replacing counts the old one as gone
		{"a", 0, true}, {"c", 10, true}, // deleting frees a place
	} {
		if got := step.n == 0 || r.admit(step.topic, step.n, lim); got != step.admit {
			t.Fatalf("admit(%s, %d) = %v, want %v (book %v, %d bytes)", step.topic, step.n, got, step.admit, r.size, r.bytes)
		}
		if step.admit {
			r.set(step.topic, step.n)
		}
	}
	if len(r.size) != 2 || r.bytes != 100 {
		t.Fatalf("book %v %d bytes", r.size, r.bytes)
	}
}

func TestBucket(t *testing.T) {
	r := config.Rate{Count: 3, Per: time.Minute}
	now := time.Unix(1000, 0)
	var b bucket
	b.refill(r, now)
	for range 3 {
		if b.tokens < 1 {
			t.Fatal("limited before three failures")
		}
		b.tokens--
	}
	b.refill(r, now.Add(time.Second))
	if b.tokens >= 1 {
		t.Fatalf("tokens %.2f one second after three failures at 3/minute", b.tokens)
	}
	b.refill(r, now.Add(21*time.Second))
	if b.tokens < 1 {
		t.Fatalf("tokens %.2f twenty seconds later", b.tokens)
	}
	b.refill(r, now.Add(time.Hour))
	if b.tokens != 3 {
		t.Fatalf("tokens %.2f after an hour, want full", b.tokens)
	}
}

// The mochi log never carries a payload or a client's long strings, and a
// message repeated in a burst is written quietBurst times, then counted.
func TestQuietHandler(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(newQuietHandler(slog.NewTextHandler(&out, nil))).With("component", "mqtt")
	secret := strings.Repeat("PAYLOAD", 100000)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "t", Payload: []byte(secret)}
	for range 50 {
		log.Warn("error processing packet", "pk", pk, "ptr", &pk, "client", strings.Repeat("c", 70000),
			"will", mqtt.Will{TopicName: "w", Payload: []byte(secret)}, "raw", []byte(secret))
	}
	if strings.Contains(out.String(), "PAYLOAD") {
		t.Fatal("a payload reached the log")
	}
	if n := strings.Count(out.String(), "\n"); n != quietBurst {
		t.Fatalf("%d lines for 50 identical messages, want %d", n, quietBurst)
	}
	if out.Len() > quietBurst*2048 {
		t.Fatalf("%d bytes of log for %d lines", out.Len(), quietBurst)
	}
	if !strings.Contains(out.String(), "pk.payload_bytes=700000") {
		t.Fatalf("the packet summary is missing:\n%.500s", out.String())
	}
	// After the window, the next line says how many were left out.
	h := newQuietHandler(slog.NewTextHandler(&out, nil)).(*quietHandler)
	start := time.Now()
	for i := range quietBurst + 7 {
		_ = h.Handle(context.Background(), slog.NewRecord(start.Add(time.Duration(i)), slog.LevelWarn, "again", 0))
	}
	out.Reset()
	_ = h.Handle(context.Background(), slog.NewRecord(start.Add(quietWindow+time.Second), slog.LevelWarn, "again", 0))
	if !strings.Contains(out.String(), "like_lines_not_logged=7") {
		t.Fatalf("line after the window: %q", out.String())
	}
}

// Refusals are all counted, but logged once per refusalLogEvery per kind,
// the next line saying how many were not logged.
func TestRefusalLog(t *testing.T) {
	var out bytes.Buffer
	b := New(slog.New(slog.NewTextHandler(&out, nil)), Settings{MaxClients: 10, MaxPacketSize: 1024})
	out.Reset()
	for range 1000 {
		b.refuse(RefusedACL, "publish refused", "topic", "x")
	}
	if n := strings.Count(out.String(), "\n"); n != 1 || b.Refusals()[RefusedACL] != 1000 {
		t.Fatalf("%d lines, %d counted; want 1 and 1000:\n%s", n, b.Refusals()[RefusedACL], out.String())
	}
	b.refused.byKind[RefusedACL].lastLog.Store(0) // as if refusalLogEvery had passed
	b.refuse(RefusedACL, "publish refused")
	if !strings.Contains(out.String(), "like_refusals_not_logged=999") {
		t.Fatalf("second line does not count the rest:\n%s", out.String())
	}
	// A publisher account's refusal is logged even while anonymous ones
	// of the same kind are being held back.
	out.Reset()
	b.refuseAccount("zuul", "zuul-1", RefusedACL, "publish refused")
	b.refuseAccount("zuul", "zuul-1", RefusedACL, "publish refused")
	b.refuseAccount("zuul", "zuul-2", RefusedACL, "publish refused")
	if n := strings.Count(out.String(), "account=zuul"); n != 2 {
		t.Fatalf("%d lines for two clients of an account:\n%s", n, out.String())
	}
	if len(b.Refusals()) != len(refusalKinds) {
		t.Fatalf("Refusals has %d kinds, want all %d", len(b.Refusals()), len(refusalKinds))
	}
}
