package broker

import (
	"bytes"
	"io"
	"net"
	"os"
	"testing"
)

// testWire is the settings of a connection tested alone.
func testWire(maxPacket, maxQueued int64) *wire {
	w := &wire{}
	w.maxPacketSize.Store(maxPacket)
	w.maxQueued.Store(maxQueued)
	return w
}

func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return server, client
}

// stream writes packets of varying sizes through a guarded connection, the
// peer starting to read only after some are written, and checks that every
// byte arrives once and in order.
func testStream(t *testing.T, server, client net.Conn) {
	g := newGuardedConn(server, testWire(1<<20, 64<<20), nil)

	var want bytes.Buffer
	for i := range 6000 {
		p := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 1+i%700)
		want.Write(p)
	}
	all := want.Bytes()

	halfway := make(chan struct{})
	writeErr := make(chan error, 1)
	go func() {
		started := halfway
		off, i := 0, 0
		for off < len(all) {
			n := 2 * (1 + i%700)
			if _, err := g.Write(all[off : off+n]); err != nil {
				writeErr <- err
				return
			}
			off += n
			i++
			if off >= 32<<10 && started != nil {
				close(started)
				started = nil
			}
		}
		writeErr <- g.Close()
	}()
	<-halfway
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all) {
		t.Fatalf("got %d bytes, want %d (equal prefix %d)", len(got), len(all), commonPrefix(got, all))
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func TestCoalescedWriterTCP(t *testing.T) {
	s, c := tcpPair(t)
	defer c.Close()
	testStream(t, s, c)
}

// net.Pipe has no socket: the blocking path (TLS, websockets) carries it all.
func TestCoalescedWriterNoSocket(t *testing.T) {
	s, c := net.Pipe()
	defer c.Close()
	testStream(t, s, c)
}

// A write after Close fails, and what was written before Close arrives.
func TestCoalescedWriterClose(t *testing.T) {
	s, c := tcpPair(t)
	defer c.Close()
	g := newGuardedConn(s, testWire(1<<20, 64<<20), nil)
	if _, err := g.Write([]byte("connack")); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("late")); err == nil {
		t.Fatal("write after close succeeded")
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "connack" {
		t.Fatalf("got %q", got)
	}
}

// A peer that has gone makes writes fail instead of buffering forever.
func TestCoalescedWriterPeerGone(t *testing.T) {
	s, c := tcpPair(t)
	g := newGuardedConn(s, testWire(1<<20, 64<<20), nil)
	defer g.Close()
	_ = c.Close()
	p := make([]byte, 1024)
	for i := 0; ; i++ {
		if _, err := g.Write(p); err != nil {
			return
		}
		if i > 1<<20 {
			t.Fatal("writes to a closed peer never failed")
		}
	}
}

func TestMemTotal(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo")
	}
	if n := memTotal(); n < 1<<20 {
		t.Fatalf("memTotal = %d", n)
	}
}
