package main

// Subscribers and the publisher. Each subscriber is one connection and one
// reading goroutine that decodes PUBLISH packets and records, per message,
// the sequence number and the latency from the timestamp the publisher put
// in the payload. Counters and latency samples are per subscriber so that
// ten thousand goroutines never contend on one cache line.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	benchTopic  = "bench/fan"
	benchFilter = "bench/#"
	// payloadHeader is seq (8 bytes) then send time (8 bytes, ns since epoch0).
	payloadHeader = 16
	// subKeepalive is long enough that no run needs a PINGREQ.
	subKeepalive = 900
)

// epoch0 anchors the monotonic clock shared by the publisher and subscribers,
// which live in this one process: no wall-clock steps can skew a latency.
var epoch0 = time.Now()

func monoNow() int64 { return int64(time.Since(epoch0)) }

// dialer spreads connections over loopback source addresses. A bound source
// port is held for the whole TIME_WAIT after a run, so 10,000 connections per
// run from one address would exhaust the ephemeral range within a few runs.
type dialer struct {
	next    atomic.Uint64
	perAddr uint64
}

func (d *dialer) localAddr() *net.TCPAddr {
	n := d.next.Add(1) / d.perAddr
	// 127.0.0.2 .. 127.0.0.251; all of 127/8 is local on Linux.
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n%250))}
}

func (d *dialer) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	nd := net.Dialer{LocalAddr: d.localAddr(), Timeout: 10 * time.Second}
	return nd.DialContext(ctx, "tcp", addr)
}

// wsStream turns a websocket connection into a byte stream: MQTT packets may
// span or share websocket messages (MQTT 3.1.1 section 6).
type wsStream struct {
	c *websocket.Conn
	r io.Reader
}

func (w *wsStream) Read(p []byte) (int, error) {
	for {
		if w.r == nil {
			_, r, err := w.c.NextReader()
			if err != nil {
				return 0, err
			}
			w.r = r
		}
		n, err := w.r.Read(p)
		if err == io.EOF {
			w.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (w *wsStream) Write(p []byte) (int, error) {
	if err := w.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsStream) Close() error { return w.c.Close() }

func (w *wsStream) SetDeadline(t time.Time) error {
	if err := w.c.SetReadDeadline(t); err != nil {
		return err
	}
	return w.c.SetWriteDeadline(t)
}

func (d *dialer) dialWS(ctx context.Context, addr string) (*wsStream, error) {
	wd := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return d.dialTCP(ctx, a)
		},
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  512, // subscribers write only CONNECT and SUBSCRIBE
	}
	c, resp, err := wd.DialContext(ctx, "ws://"+addr+"/", http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket handshake: %s: %w", resp.Status, err)
		}
		return nil, err
	}
	if c.Subprotocol() != "mqtt" {
		c.Close()
		return nil, fmt.Errorf("websocket: broker chose subprotocol %q, want mqtt", c.Subprotocol())
	}
	return &wsStream{c: c}, nil
}

type conn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// subscriber is one connected, subscribed client.
type subscriber struct {
	idx int
	c   conn
	pr  *packetReader

	warm     atomic.Bool  // the warm-up message arrived
	closing  atomic.Bool  // we are disconnecting: read errors are expected
	received atomic.Int64 // measured messages delivered
	lastAt   atomic.Int64 // monoNow of the last measured delivery

	// Owned by the reading goroutine; read only after it has exited.
	lat      []int64  // ns, one per measured delivery, preallocated
	seen     []uint64 // a bit per sequence number 1..expect: repeats are duplicates
	lastSeq  uint64
	reorders int64 // deliveries of a number below one already seen (not a repeat)
	dups     int64 // deliveries of a number already delivered
	err      error
}

// connectSubscriber dials, connects anonymously and subscribes to benchFilter.
// expect sizes the latency buffer: the messages the run will publish.
func connectSubscriber(ctx context.Context, d *dialer, addr, transport, clientID string, idx, expect int) (*subscriber, error) {
	var c conn
	var err error
	switch transport {
	case "tcp":
		var nc net.Conn
		nc, err = d.dialTCP(ctx, addr)
		c = nc
	case "ws":
		c, err = d.dialWS(ctx, addr)
	default:
		return nil, fmt.Errorf("unknown transport %q", transport)
	}
	if err != nil {
		return nil, err
	}
	s := &subscriber{idx: idx, c: c, pr: newPacketReader(c, 4096)}
	if expect > 0 {
		s.lat = make([]int64, 0, expect)
		s.seen = make([]uint64, expect/64+1)
	}
	// The handshake is bounded; the reading loop afterwards is not, since idle
	// subscribers must stay connected as long as the scenario needs.
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(connectPacket(clientID, "", "", subKeepalive)); err != nil {
		c.Close()
		return nil, err
	}
	if err := expectConnack(s.pr); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Write(subscribePacket(1, benchFilter, 0)); err != nil {
		c.Close()
		return nil, err
	}
	if err := expectSuback(s.pr, 1); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return s, nil
}

// run reads until the connection closes. Sequence 0 is the warm-up message.
func (s *subscriber) run() {
	for {
		h, body, err := s.pr.next()
		if err != nil {
			// Once we hang up, however the broker ends its side is no error.
			if !s.closing.Load() && !errors.Is(err, net.ErrClosed) {
				s.err = err
			}
			return
		}
		if h>>4 != pktPublish {
			continue
		}
		p, ok := publishPayload(h, body)
		if !ok || len(p) < payloadHeader {
			continue
		}
		now := monoNow()
		seq := binary.BigEndian.Uint64(p)
		if seq == 0 {
			s.warm.Store(true)
			continue
		}
		s.lat = append(s.lat, now-int64(binary.BigEndian.Uint64(p[8:])))
		if w := seq / 64; w < uint64(len(s.seen)) {
			bit := uint64(1) << (seq % 64)
			if s.seen[w]&bit != 0 {
				s.dups++
			} else {
				s.seen[w] |= bit
				if seq < s.lastSeq {
					s.reorders++
				}
			}
		} else if seq <= s.lastSeq {
			s.reorders++
		}
		s.lastSeq = max(s.lastSeq, seq)
		s.received.Add(1)
		s.lastAt.Store(now)
	}
}

// fleet is the set of subscribers of one run.
type fleet struct {
	subs []*subscriber
	wg   sync.WaitGroup
}

// connectFleet connects n subscribers with bounded parallelism: a connect
// storm larger than the broker's listen backlog only adds SYN retries.
// expect is the number of messages each will be sent (0 when idle).
func connectFleet(ctx context.Context, d *dialer, addr, transport string, n, expect int, runID string) (*fleet, error) {
	f := &fleet{subs: make([]*subscriber, n)}
	const parallel = 64
	var (
		mu       sync.Mutex
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
				s, err := connectSubscriber(ctx, d, addr, transport, fmt.Sprintf("%s-s%d", runID, i), i, expect)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("subscriber %d of %d: %w", i, n, err)
					}
					mu.Unlock()
					return
				}
				f.subs[i] = s
			}
		}()
	}
	wg.Wait()
	for _, s := range f.subs {
		if s != nil {
			f.wg.Add(1)
			go func() { defer f.wg.Done(); s.run() }()
		}
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		f.close()
		return nil, firstErr
	}
	return f, nil
}

func (f *fleet) received() (total int64, last int64) {
	for _, s := range f.subs {
		total += s.received.Load()
		if t := s.lastAt.Load(); t > last {
			last = t
		}
	}
	return total, last
}

func (f *fleet) warmCount() int {
	n := 0
	for _, s := range f.subs {
		if s.warm.Load() {
			n++
		}
	}
	return n
}

// close disconnects everyone and waits for the reading goroutines, after
// which the per-subscriber fields may be read.
func (f *fleet) close() {
	for _, s := range f.subs {
		if s != nil {
			s.closing.Store(true)
			_, _ = s.c.Write(disconnectPacket())
			s.c.Close()
		}
	}
	f.wg.Wait()
}

// pubSpec says what the publisher sends.
type pubSpec struct {
	topic string
	size  int  // payload bytes
	json  bool // a JSON event (jsonPayload) instead of the binary header
	qos   byte // 0 or 1
}

// pubWindow bounds unacknowledged QoS 1 PUBLISHes below the 65,535 packet
// identifiers, so an identifier is never reused while in flight. A burst
// smaller than this is never held back.
const pubWindow = 60000

// publisher is the one authenticated publishing connection.
type publisher struct {
	c      net.Conn
	pkt    []byte
	off    int // payload offset in pkt
	idOff  int // packet identifier offset in pkt; -1 at QoS 0
	json   bool
	seqOff int // JSON: seq field in the payload
	sentAt int // JSON: sent_us field in the payload
	nextID uint16
	window chan struct{} // QoS 1: a token per unacknowledged PUBLISH
	acked  atomic.Int64
	pong   chan struct{}
}

func connectPublisher(ctx context.Context, d *dialer, addr, user, pass, clientID string, ps pubSpec) (*publisher, error) {
	if ps.topic == "" {
		ps.topic = benchTopic
	}
	p := &publisher{json: ps.json, pong: make(chan struct{}, 1)}
	var payload []byte
	if ps.json {
		var err error
		if payload, p.seqOff, p.sentAt, err = jsonPayload(ps.size); err != nil {
			return nil, err
		}
	} else {
		payload = make([]byte, max(ps.size, payloadHeader))
		for i := payloadHeader; i < len(payload); i++ {
			payload[i] = 'x'
		}
	}
	p.pkt, p.idOff, p.off = publishPacketQoS(ps.topic, payload, ps.qos)
	if ps.qos > 0 {
		p.window = make(chan struct{}, pubWindow)
	}

	c, err := d.dialTCP(ctx, addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(connectPacket(clientID, user, pass, subKeepalive)); err != nil {
		c.Close()
		return nil, err
	}
	if err := expectConnack(newPacketReader(c, 64)); err != nil {
		c.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	p.c = c
	// Read whatever the broker sends the publisher (PINGRESP, PUBACK) so a
	// full receive buffer can never stall it.
	go func() {
		pr := newPacketReader(c, 512)
		for {
			h, _, err := pr.next()
			if err != nil {
				return
			}
			switch h >> 4 {
			case pktPingresp:
				select {
				case p.pong <- struct{}{}:
				default:
				}
			case pktPuback:
				p.acked.Add(1)
				select {
				case <-p.window:
				default:
				}
			}
		}
	}()
	return p, nil
}

// sync sends PINGREQ and waits for PINGRESP: a broker handles one
// connection's packets in order, so everything published before has been
// processed by then.
func (p *publisher) sync(timeout time.Duration) error {
	if _, err := p.c.Write([]byte{pktPingreq << 4, 0}); err != nil {
		return err
	}
	select {
	case <-p.pong:
		return nil
	case <-time.After(timeout):
		return errors.New("no PINGRESP")
	}
}

// send stamps seq and the send time into the payload and writes one PUBLISH.
// Each message is its own write so the timestamp is the moment it leaves.
// The binary header carries monoNow (same-process subscribers); a JSON event
// carries wall-clock microseconds, for subscribers in another process.
func (p *publisher) send(seq uint64) error {
	if p.window != nil {
		select {
		case p.window <- struct{}{}:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no PUBACK for 30 s with %d PUBLISHes unacknowledged", len(p.window))
		}
		p.nextID++
		if p.nextID == 0 {
			p.nextID = 1
		}
		binary.BigEndian.PutUint16(p.pkt[p.idOff:], p.nextID)
	}
	if p.json {
		putPadded(p.pkt[p.off+p.seqOff:p.off+p.seqOff+jsonNumWidth], seq)
		putPadded(p.pkt[p.off+p.sentAt:p.off+p.sentAt+jsonNumWidth], uint64(time.Now().UnixMicro()))
	} else {
		binary.BigEndian.PutUint64(p.pkt[p.off:], seq)
		binary.BigEndian.PutUint64(p.pkt[p.off+8:], uint64(monoNow()))
	}
	_, err := p.c.Write(p.pkt)
	return err
}

func (p *publisher) close() {
	_, _ = p.c.Write(disconnectPacket())
	p.c.Close()
}

// probe reports whether addr accepts an MQTT CONNECT: readiness means the
// broker answers the protocol, not merely that its port is open.
func probe(ctx context.Context, addr string) error {
	nd := net.Dialer{Timeout: time.Second}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(connectPacket(fmt.Sprintf("bench-probe-%d", time.Now().UnixNano()), "", "", 10)); err != nil {
		return err
	}
	if err := expectConnack(newPacketReader(c, 64)); err != nil {
		return err
	}
	_, _ = c.Write(disconnectPacket())
	return nil
}
