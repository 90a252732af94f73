// Package broker owns the embedded MQTT broker (mochi-mqtt): the public access
// model, per-client limits, the listeners it serves (plain, TLS, websockets),
// the mosquitto-compatible $SYS topics, and the counters status reports.
// Settings that a reload may change are held in atomics and swapped whole, so
// a reload never drops a connected client. It never opens sockets itself:
// listeners are handed to it already open.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/firehose/firehose/appliance/config"
)

// Settings are the parts of the config the broker applies live.
type Settings struct {
	Publishers     []config.Publisher
	MaxClients     int
	MaxPacketSize  int
	ConnectTimeout time.Duration
	// Limits is [limits]; the zero value stands for config.Default's.
	Limits config.Limits
}

// SettingsFrom picks the broker's settings out of a config.
func SettingsFrom(c *config.Config) Settings {
	return Settings{
		Publishers:     c.Publishers,
		MaxClients:     c.Broker.MaxClients,
		MaxPacketSize:  c.Broker.MaxPacketSize,
		ConnectTimeout: c.Broker.ConnectTimeout.D(),
		Limits:         c.Limits,
	}
}

// pendingWrites bounds mochi's queue of messages for each client, ahead of
// the write coalescer; its size is also most of an idle connection's
// memory. The coalescer takes them as fast as they are encoded, so this
// queue fills only when a client's goroutine gets no CPU; the client is then
// disconnected (OnPublishDropped), never left with a silent gap.
const pendingWrites = 512

// writeBufferSize is mochi's ClientNetWriteBufferSize: when a client's queue
// has backed up, mochi gathers encoded packets up to this many bytes before
// handing them on (to the write coalescer, coalesce.go). Its default, 2 KiB,
// is under two 1 KiB messages; 16 KiB measured +20-50 % deliveries/s at
// 1,000 subscribers (bench/README.md, "Knobs tried"). The buffer exists only
// while a queue is backed up.
const writeBufferSize = 16 << 10

// Broker is the running MQTT broker.
type Broker struct {
	log     *slog.Logger
	server  *mqtt.Server
	access  *access
	sys     *sysStats
	wire    wire
	conns   tracker
	refused *refusals
	limits  atomic.Pointer[limits]

	maxClients     atomic.Int64
	connectTimeout atomic.Int64 // nanoseconds

	mu        sync.Mutex
	listeners []*Listener
	closeOnce sync.Once

	deliverer *mqtt.Client // the journal's inline client (journal.go)
	fast      *fastPath    // encode-once fan-out of journaled messages, or nil (fastpath.go)
}

// Listener describes one listener the broker serves.
type Listener struct {
	Name, Address, Source string
	TLS                   bool
}

// New builds a broker with settings s. Add listeners, then Start it.
func New(log *slog.Logger, s Settings) *Broker {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = pendingWrites
	// Offline sessions would otherwise live forever and be walked by every
	// fan-out; an hour covers a consumer's restart. Anonymous sessions are
	// held to anonymous_session_expiry (sessions.go).
	caps.MaximumSessionExpiryInterval = uint32(config.MaxSessionExpiry / time.Second)
	// max_packet_size is enforced on the wire by guardedConn, live, and
	// announced to MQTT 5 clients by OnPacketEncode.
	caps.MaximumPacketSize = 0
	// Acknowledgements must not echo the publisher's user properties
	// (the Paho test client rejects them).
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	server := mqtt.New(&mqtt.Options{
		ClientNetWriteBufferSize: writeBufferSize,
		SysTopicResendInterval:   sysMochiInterval, // $SYS is published by sys.go
		Capabilities:             caps,
		InlineClient:             true,
		// mochi logs refused packets whole: keep payloads and repetition
		// out of the log (logfilter.go).
		Logger: slog.New(newQuietHandler(log.Handler())).With("component", "mqtt"),
	})
	b := &Broker{log: log, server: server, sys: newSysStats(), refused: newRefusals()}
	b.conns.b = b
	b.access = &access{b: b}
	b.access.pw.init()
	b.access.sessions.init()
	b.Apply(s)
	for _, h := range []mqtt.Hook{b.access, &sysHook{b: b}} {
		if err := server.AddHook(h, nil); err != nil {
			panic(err) // only fails for a duplicate hook ID
		}
	}
	return b
}

// Apply swaps in new live settings. Connected clients keep their connections;
// the new publisher table and limits apply to their next packet.
func (b *Broker) Apply(s Settings) {
	l := s.Limits
	if l.MaxTopicLevels == 0 {
		l = config.Default().Limits
	}
	b.access.accounts.Store(newAccounts(s.Publishers))
	b.limits.Store(newLimits(l))
	b.maxClients.Store(int64(s.MaxClients))
	b.wire.maxPacketSize.Store(int64(s.MaxPacketSize))
	b.wire.maxQueued.Store(int64(l.MaxQueuedBytes))
	b.wire.mem.setLimit(l.MemoryLimit)
	alignGCLimit(b.wire.mem.limit.Load())
	b.connectTimeout.Store(int64(s.ConnectTimeout))
}

// Start begins serving every listener added so far, and publishing $SYS.
func (b *Broker) Start() error {
	if err := b.server.Serve(); err != nil {
		return err
	}
	b.publishSys() // at once, over the values mochi published at start
	go b.sysLoop()
	return nil
}

// Publish sends a message from the appliance itself (the Gerrit publisher);
// it bypasses the ACL and returns once the message is queued to every
// subscriber.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.server.Publish(topic, payload, retain, qos)
}

// ServeMQTT adds a listener speaking MQTT on l (already TLS-wrapped if tls).
func (b *Broker) ServeMQTT(name string, l net.Listener, source string, tls bool) error {
	b.addListener(name, l, source, tls)
	return b.server.AddListener(&streamListener{id: name, l: &admitListener{Listener: l, t: &b.conns}, b: b})
}

func (b *Broker) addListener(name string, l net.Listener, source string, tls bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listeners = append(b.listeners, &Listener{Name: name, Address: l.Addr().String(), Source: source, TLS: tls})
}

// accepted prepares a new connection: the CONNECT must arrive within
// connect_timeout (mochi sets the keepalive deadline after it), and every
// packet is held to max_packet_size.
func (b *Broker) accepted(c net.Conn) net.Conn {
	now := time.Now()
	_ = c.SetDeadline(now.Add(time.Duration(b.connectTimeout.Load())))
	g := newGuardedConn(c, &b.wire, b)
	g.acceptedAt = now
	return g
}

// Close stops accepting, disconnects every client and stops the broker,
// giving up after timeout: mochi's Close can deadlock while clients come and
// go (upstream issue 488), and a daemon asked to stop must stop.
func (b *Broker) Close(timeout time.Duration) error {
	err := errors.New("already closed")
	b.closeOnce.Do(func() {
		close(b.sys.done)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = b.server.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		select {
		case <-done:
			err = nil
		case <-ctx.Done():
			err = fmt.Errorf("broker did not stop within %s; exiting anyway", timeout)
		}
	})
	return err
}

// streamListener serves MQTT over a stream socket (TCP, or TLS over TCP).
type streamListener struct {
	id string
	l  net.Listener
	b  *Broker
}

func (s *streamListener) Init(*slog.Logger) error { return nil }
func (s *streamListener) ID() string              { return s.id }
func (s *streamListener) Address() string         { return s.l.Addr().String() }
func (s *streamListener) Protocol() string        { return "tcp" }

func (s *streamListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return // closed: the accept errors that are not are retried by listen.Resilient
		}
		go func() {
			if err := establish(s.id, s.b.accepted(c)); err != nil {
				s.b.log.Debug("client ended", "listener", s.id, "remote", c.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

func (s *streamListener) Close(closeClients listeners.CloseFn) {
	_ = s.l.Close()
	closeClients(s.id)
}
