package broker

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// errPacketTooLarge closes a client whose packet is over max_packet_size.
var errPacketTooLarge = errors.New("packet larger than max_packet_size")

// errQueueCount ends a client whose mochi queue (pendingWrites) is full.
var errQueueCount = errors.New("subscriber too slow: its queue of messages is full")

// errMalformedLength closes a client whose length field is not valid MQTT.
var errMalformedLength = errors.New("malformed packet length")

// wire holds the settings every connection reads on every packet, live.
type wire struct {
	maxPacketSize atomic.Int64
	maxQueued     atomic.Int64
	mem           memWatch
}

// guardedConn is every MQTT client's connection as mochi sees it. It
// enforces max_packet_size on the byte stream the client sends, before the
// broker buffers a packet: the limit is read per packet, so a reload changes
// it for connected clients too, and a client that announces an oversized
// packet is closed before its body is read. Writes go to the write coalescer
// (coalesce.go), which holds each subscriber to max_queued_bytes. It also
// carries what the access hooks know of the client across packets.
type guardedConn struct {
	net.Conn
	wire  *wire
	b     *Broker      // nil in tests of the connection alone
	track *trackedConn // nil when not accepted through a tracker
	frame framer
	out   coalescedWriter

	acceptedAt time.Time                 // when connect_timeout began
	who        atomic.Pointer[identity]  // set at CONNECT
	approved   atomic.Bool               // OnConnect let it in
	ended      atomic.Bool               // why it ended is already counted and logged
	announce   atomic.Int64              // MQTT 5 anonymous: session expiry the CONNACK states, plus one
	subFix     atomic.Pointer[subackFix] // SUBACK codes to correct (see OnPacketEncode)
	fan        fanConn                   // the fast path's view of it (fastpath.go)
}

func newGuardedConn(c net.Conn, w *wire, b *Broker) *guardedConn {
	g := &guardedConn{Conn: c, wire: w, b: b, track: unwrap[*trackedConn](c)}
	g.out.init(c, w)
	return g
}

// connOf returns the broker's connection under a client, or nil (the
// inline client has none).
func connOf(cl *mqtt.Client) *guardedConn {
	g, _ := cl.Net.Conn.(*guardedConn)
	return g
}

// NetConn returns the connection underneath.
func (c *guardedConn) NetConn() net.Conn { return c.Conn }

// Write hands p to the write coalescer. A subscriber whose queue passes its
// budget is disconnected there; it is counted and logged here, once.
func (c *guardedConn) Write(p []byte) (int, error) {
	n, err := c.out.Write(p)
	if se, ok := err.(*slowError); ok {
		c.endSlow(se)
		_ = c.Conn.Close() // the client is not reading: nothing more would reach it
	}
	return n, err
}

// writeDeferred is Write for the fast path's fan-out: a writer that must
// go to the flushers is added to dirty instead of pushed on its own.
func (c *guardedConn) writeDeferred(p []byte, dirty *[]*coalescedWriter) error {
	push, err := c.out.write(p)
	if push {
		*dirty = append(*dirty, &c.out)
	}
	if se, ok := err.(*slowError); ok {
		c.endSlow(se)
		_ = c.Conn.Close()
	}
	return err
}

// endSlow counts and logs a subscriber disconnected for being slow.
func (c *guardedConn) endSlow(err error) {
	if c.b == nil || !c.ended.CompareAndSwap(false, true) {
		return
	}
	who := c.identity()
	c.b.refuseAccount(c.account(who), who.id, RefusedSlowSubscriber, "subscriber disconnected: it stopped reading and its queue is full",
		"client", short(who.id), "remote", c.RemoteAddr().String(), "reason", err.Error())
}

// identity is who a connection belongs to, once CONNECT has been read. It
// is a copy, so that the connection holds nothing of mochi's client.
type identity struct {
	id, user string
	version  byte
}

func (c *guardedConn) identity() identity {
	if w := c.who.Load(); w != nil {
		return *w
	}
	return identity{}
}

// account is the publisher account the client proved it is, or "".
func (c *guardedConn) account(who identity) string {
	if c.approved.Load() {
		return who.user
	}
	return ""
}

// Close lets buffered bytes go out, briefly, then closes the connection.
func (c *guardedConn) Close() error { return c.out.close(c.Conn.Close) }

func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		limit := c.wire.maxPacketSize.Load()
		if ferr := c.frame.feed(p[:n], limit); ferr != nil {
			c.tooLarge(ferr, limit)
			return 0, ferr
		}
	}
	return n, err
}

// tooLarge logs and counts a client closed for its packet's size and tells
// an MQTT 5 client why (DISCONNECT, "packet too large").
func (c *guardedConn) tooLarge(err error, limit int64) {
	if c.b == nil || !c.ended.CompareAndSwap(false, true) {
		return
	}
	who := c.identity()
	kind, msg := RefusedPacketSize, "client closed: packet larger than max_packet_size"
	if err == errMalformedLength {
		msg = "client closed: malformed packet length"
	}
	c.b.refuseAccount(c.account(who), who.id, kind, msg, "client", short(who.id), "user", short(who.user), "remote", c.RemoteAddr().String(),
		"size", c.frame.announced, "limit", limit)
	if who.version == 5 && err == errPacketTooLarge {
		_, _ = c.out.Write([]byte{0xe0, 0x02, packets.ErrPacketTooLarge.Code, 0x00})
	}
}

// framer follows MQTT fixed headers through a byte stream: a type byte, a
// variable-length "remaining length" of one to four bytes, then the body.
type framer struct {
	announced int64 // size of the last packet announced, header included
	body      int   // bytes of the current body still to come
	inLength  bool  // reading the remaining-length field
	length    int
	shift     uint
	lenBytes  int
}

// feed advances through b and fails as soon as a packet's total size, as
// announced by its header, is over max.
func (f *framer) feed(b []byte, max int64) error {
	for len(b) > 0 {
		if f.body > 0 {
			k := min(len(b), f.body)
			f.body -= k
			b = b[k:]
			continue
		}
		if !f.inLength {
			f.inLength, f.length, f.shift, f.lenBytes = true, 0, 0, 0
			b = b[1:]
			continue
		}
		c := b[0]
		b = b[1:]
		f.length |= int(c&0x7f) << f.shift
		f.shift += 7
		f.lenBytes++
		if c&0x80 != 0 {
			if f.lenBytes == 4 {
				return errMalformedLength
			}
			continue
		}
		f.inLength = false
		f.announced = int64(1 + f.lenBytes + f.length)
		if f.announced > max {
			return errPacketTooLarge
		}
		f.body = f.length
	}
	return nil
}
