package broker

import (
	"errors"
	"net"
	"sync/atomic"
)

// errPacketTooLarge closes a client whose packet is over max_packet_size.
var errPacketTooLarge = errors.New("packet larger than max_packet_size")

// errMalformedLength closes a client whose length field is not valid MQTT.
var errMalformedLength = errors.New("malformed packet length")

// guardedConn enforces max_packet_size on the byte stream a client sends,
// before the broker buffers a packet: the limit is read per packet from an
// atomic, so a reload changes it for connected clients too, and a client that
// announces an oversized packet is closed before its body is read.
type guardedConn struct {
	net.Conn
	max   *atomic.Int64
	frame framer
	out   coalescedWriter
}

func newGuardedConn(c net.Conn, max *atomic.Int64) *guardedConn {
	g := &guardedConn{Conn: c, max: max}
	g.out.init(c)
	return g
}

// Write hands p to the write coalescer (coalesce.go).
func (c *guardedConn) Write(p []byte) (int, error) { return c.out.Write(p) }

// Close lets buffered bytes go out, briefly, then closes the connection.
func (c *guardedConn) Close() error { return c.out.close(c.Conn.Close) }

func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if ferr := c.frame.feed(p[:n], c.max.Load()); ferr != nil {
			return 0, ferr
		}
	}
	return n, err
}

// framer follows MQTT fixed headers through a byte stream: a type byte, a
// variable-length "remaining length" of one to four bytes, then the body.
type framer struct {
	body     int  // bytes of the current body still to come
	inLength bool // reading the remaining-length field
	length   int
	shift    uint
	lenBytes int
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
		if int64(1+f.lenBytes+f.length) > max {
			return errPacketTooLarge
		}
		f.body = f.length
	}
	return nil
}
