package broker

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// tracker counts every open socket on the broker's listeners, in all and per
// source address, from accept to close: MQTT clients, connections that have
// not sent CONNECT yet, and HTTP requests on the websocket ports alike, so
// that none of them escapes max_clients or max_connections_per_address.
type tracker struct {
	b       *Broker
	open    atomic.Int64
	mu      sync.Mutex
	perAddr map[netip.Prefix]int32
}

// States of a tracked connection, for counting what ended it.
const (
	stateRaw       int32 = iota // accepted; HTTP on websocket ports
	stateServed                 // a whole HTTP request arrived in time (the page, the events API)
	stateUpgraded               // a websocket, no CONNECT yet
	stateConnected              // an MQTT client past CONNECT
)

// trackedConn is an accepted connection, released from the counts once on
// Close. It remembers a read deadline passing, so that a connection closed
// for want of a request or a CONNECT is counted as such.
type trackedConn struct {
	net.Conn
	t        *tracker
	ip       netip.Addr
	key      netip.Prefix
	counted  bool // in perAddr
	http     bool // accepted on a websocket port
	state    atomic.Int32
	timedOut atomic.Bool
	once     sync.Once
}

// admit decides on a newly accepted connection: refused (closed) past
// max_connections_per_address or well past max_clients, else tracked.
func (t *tracker) admit(c net.Conn, http bool) *trackedConn {
	b := t.b
	lim := b.limits.Load()
	tc := &trackedConn{Conn: c, t: t, http: http}
	tc.ip = addrOf(c.RemoteAddr())
	tc.key = keyOf(tc.ip)
	// Past max_clients, a connection is still accepted for a while so that
	// an MQTT client reads a CONNACK saying why; this bounds the rest.
	maxOpen := b.maxClients.Load()
	maxOpen += max(16, maxOpen/10)
	if t.open.Add(1) > maxOpen {
		t.open.Add(-1)
		b.refuse(RefusedMaxClients, "connection refused at accept: too many open connections (max_clients)",
			"remote", c.RemoteAddr().String(), "open", maxOpen)
		_ = c.Close()
		return nil
	}
	if tc.key.IsValid() && !lim.exempted(tc.ip) {
		t.mu.Lock()
		if t.perAddr == nil {
			t.perAddr = map[netip.Prefix]int32{}
		}
		n := t.perAddr[tc.key]
		if int(n) >= lim.MaxConnectionsPerAddress {
			t.mu.Unlock()
			t.open.Add(-1)
			b.refuse(RefusedPerAddress, "connection refused at accept: too many connections from one address (max_connections_per_address)",
				"remote", c.RemoteAddr().String(), "address", tc.key.String(), "limit", lim.MaxConnectionsPerAddress)
			_ = c.Close()
			return nil
		}
		t.perAddr[tc.key] = n + 1
		tc.counted = true
		t.mu.Unlock()
	}
	return tc
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	return n, err
}

// Close releases the connection from the counts, and counts what ended it,
// before the peer can see it closed.
func (c *trackedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func (c *trackedConn) release() {
	t := c.t
	t.open.Add(-1)
	if c.counted {
		t.mu.Lock()
		if n := t.perAddr[c.key] - 1; n > 0 {
			t.perAddr[c.key] = n
		} else {
			delete(t.perAddr, c.key)
		}
		t.mu.Unlock()
	}
	if !c.timedOut.Load() {
		return
	}
	switch c.state.Load() {
	case stateRaw:
		if c.http {
			t.b.refuse(RefusedHTTPTimeout, "websocket port: connection closed: no complete HTTP request or upgrade within connect_timeout",
				"remote", c.RemoteAddr().String())
			return
		}
		fallthrough
	case stateUpgraded:
		t.b.refuse(RefusedConnectTimeout, "connection closed: no CONNECT within connect_timeout", "remote", c.RemoteAddr().String())
	}
}

// NetConn returns the connection underneath, as tls.Conn does.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// SyscallConn exposes the socket when the connection is a plain one, so that
// the write coalescer can write to it without blocking; a TLS connection
// has none to offer.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// admitListener admits each accepted connection through the tracker.
type admitListener struct {
	net.Listener
	t    *tracker
	http bool
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.t.admit(c, l.http); tc != nil {
			return tc, nil
		}
	}
}

// unwrap finds a connection of type T under c (through guardedConn, wsConn,
// trackedConn, tls.Conn), or nil.
func unwrap[T any](c net.Conn) T {
	var zero T
	for range 8 {
		if t, ok := c.(T); ok {
			return t
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return zero
		}
		c = u.NetConn()
	}
	return zero
}

// tcpEstablished is TCP_ESTABLISHED from linux/tcp_states.h.
const tcpEstablished = 1

// peerGone reports whether the client at the far end of c has closed or
// reset its connection, which the kernel knows before anyone reads: a
// password check that waits for a slot gives up on clients that left.
func peerGone(c net.Conn) bool {
	tcp := unwrap[*net.TCPConn](c)
	if tcp == nil {
		return false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	if cerr := raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		gone = err != nil || info.State != tcpEstablished
	}); cerr != nil {
		return true
	}
	return gone
}
