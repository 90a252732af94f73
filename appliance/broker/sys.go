package broker

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firehose/firehose/appliance/apitype"
)

// The $SYS topics are published here, not by mochi: mochi's own set counts
// what the bus did not carry. Its messages/received counts refused
// publishes (it counts on decoding, before the ACL) and the $SYS messages
// published through its inline client; its retained counts the retained
// $SYS topics themselves (27 with no retained message); its clients/total
// counts the inline client. So mochi's timer is pushed out of reach
// (sysMochiInterval) and one tick here publishes mochi's names and
// Mosquitto's from counters that mean what the names say.

// sysInterval is how often the $SYS topics are published.
const sysInterval = time.Second

// sysMochiInterval is mochi's SysTopicResendInterval, in seconds: longer than
// any run, so that mochi publishes its own values only once, at start, and
// the first tick here replaces them at once.
const sysMochiInterval = 1 << 30

const sysPrefix = "$SYS/broker/"

// SysValue is one $SYS topic and the payload last published on it.
type SysValue struct {
	Topic, Payload string
}

// sysStats keeps a minute of once-a-second counter samples, from which both
// the mosquitto-style "1min" loads and status's per-second rates are taken.
type sysStats struct {
	mu      sync.Mutex
	ring    [61]sample
	n, next int

	// received counts the PUBLISH messages the bus accepted: from clients
	// past the ACL and every other check, and from the appliance itself (the
	// Gerrit bridge), but not the $SYS messages.
	received atomic.Int64

	last atomic.Pointer[[]SysValue] // the values of the last tick
	done chan struct{}
}

type sample struct {
	at                             time.Time
	recv, sent, dropped, bIn, bOut int64
}

func newSysStats() *sysStats { return &sysStats{done: make(chan struct{})} }

func (s *sysStats) add(sm sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = sm
	s.next = (s.next + 1) % len(s.ring)
	s.n = min(s.n+1, len(s.ring))
}

// perMinute returns the counters' growth over the last minute (scaled up to
// a minute while the broker is younger than that).
func (s *sysStats) perMinute() sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n < 2 {
		return sample{}
	}
	newest := s.ring[(s.next+len(s.ring)-1)%len(s.ring)]
	oldest := s.ring[(s.next+len(s.ring)-s.n)%len(s.ring)]
	span := newest.at.Sub(oldest.at)
	if span <= 0 {
		return sample{}
	}
	scale := func(a, b int64) int64 { return int64(float64(a-b) * float64(time.Minute) / float64(span)) }
	return sample{
		recv: scale(newest.recv, oldest.recv), sent: scale(newest.sent, oldest.sent),
		dropped: scale(newest.dropped, oldest.dropped),
		bIn:     scale(newest.bIn, oldest.bIn), bOut: scale(newest.bOut, oldest.bOut),
	}
}

// sysHook counts accepted messages. OnPublished runs once per message (not
// per delivery), after every check has passed, for clients and the inline
// client alike.
type sysHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *sysHook) ID() string           { return "firehose-sys" }
func (h *sysHook) Provides(b byte) bool { return b == mqtt.OnPublished }

func (h *sysHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline && strings.HasPrefix(pk.TopicName, "$SYS/") {
		return // the broker's own bookkeeping
	}
	h.b.sys.received.Add(1)
}

// sysLoop publishes the $SYS topics every sysInterval until Close.
func (b *Broker) sysLoop() {
	t := time.NewTicker(sysInterval)
	defer t.Stop()
	for {
		select {
		case <-b.sys.done:
			return
		case <-t.C:
			b.access.housekeeping(time.Now())
			b.publishSys()
		}
	}
}

// publishSys publishes one tick of $SYS topics, retained so that a new
// subscriber has them at once, as Mosquitto does.
func (b *Broker) publishSys() {
	s, info, now := b.sys, b.server.Info, time.Now()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	recv := s.received.Load()
	sent := atomic.LoadInt64(&info.MessagesSent)
	dropped := atomic.LoadInt64(&info.MessagesDropped)
	bIn, bOut := atomic.LoadInt64(&info.BytesReceived), atomic.LoadInt64(&info.BytesSent)
	s.add(sample{at: now, recv: recv, sent: sent, dropped: dropped, bIn: bIn, bOut: bOut})
	m := s.perMinute()

	connected := atomic.LoadInt64(&info.ClientsConnected)
	// Sessions, connected or kept for a client that went away; not the
	// inline client the appliance publishes through.
	total := max(int64(b.server.Clients.Len())-1, connected)
	// Every retained $SYS topic is this tick's own; none is a retained message.
	retained := int64(b.server.Topics.Retained.Len() - len(b.server.Topics.Messages("$SYS/#")))
	subs := atomic.LoadInt64(&info.Subscriptions)
	i := strconv.FormatInt

	values := []SysValue{
		// mochi's names, as published before.
		{"version", info.Version},
		{"time", i(now.Unix(), 10)},
		{"uptime", i(now.Unix()-info.Started, 10)},
		{"started", i(info.Started, 10)},
		{"load/bytes/received", i(bIn, 10)},
		{"load/bytes/sent", i(bOut, 10)},
		{"clients/connected", i(connected, 10)},
		{"clients/disconnected", i(total-connected, 10)},
		{"clients/maximum", i(atomic.LoadInt64(&info.ClientsMaximum), 10)},
		{"clients/total", i(total, 10)},
		{"packets/received", i(atomic.LoadInt64(&info.PacketsReceived), 10)},
		{"packets/sent", i(atomic.LoadInt64(&info.PacketsSent), 10)},
		{"messages/received", i(recv, 10)},
		{"messages/sent", i(sent, 10)},
		{"messages/dropped", i(dropped, 10)},
		{"messages/inflight", i(atomic.LoadInt64(&info.Inflight), 10)},
		{"retained", i(retained, 10)},
		{"subscriptions", i(subs, 10)},
		{"system/memory", i(int64(mem.HeapInuse), 10)},
		{"system/threads", i(int64(runtime.NumGoroutine()), 10)},
		// Mosquitto's names, which existing monitoring reads (mqtt_statsd,
		// the mosquitto exporter).
		{"bytes/received", i(bIn, 10)},
		{"bytes/sent", i(bOut, 10)},
		{"publish/messages/received", i(recv, 10)},
		{"publish/messages/sent", i(sent, 10)},
		{"publish/messages/dropped", i(dropped, 10)},
		{"retained messages/count", i(retained, 10)},
		{"subscriptions/count", i(subs, 10)},
		{"heap/current", i(int64(mem.HeapInuse), 10)},
		{"load/messages/received/1min", load(m.recv)},
		{"load/messages/sent/1min", load(m.sent)},
		{"load/publish/received/1min", load(m.recv)},
		{"load/publish/sent/1min", load(m.sent)},
		{"load/publish/dropped/1min", load(m.dropped)},
		{"load/bytes/received/1min", load(m.bIn)},
		{"load/bytes/sent/1min", load(m.bOut)},
		// The appliance's own: open sockets and refusals by kind.
		{"connections/open", i(b.conns.open.Load(), 10)},
	}
	// Deliveries made by the fast path (fastpath.go); 0 without the journal.
	var fast int64
	if f := b.fast; f != nil {
		fast = f.sent.Load()
	}
	values = append(values, SysValue{"fast-path/messages/sent", i(fast, 10)})
	for _, k := range refusalKinds {
		values = append(values, SysValue{"refused/" + k, i(b.refused.byKind[k].n.Load(), 10)})
	}
	for k := range values {
		values[k].Topic = sysPrefix + values[k].Topic
		_ = b.server.Publish(values[k].Topic, []byte(values[k].Payload), true, 0)
	}
	s.last.Store(&values)
}

func load(perMinute int64) string { return strconv.FormatFloat(float64(perMinute), 'f', 2, 64) }

// Sys returns the $SYS topics as last published (nil before Start).
func (b *Broker) Sys() []SysValue {
	if v := b.sys.last.Load(); v != nil {
		return *v
	}
	return nil
}

// Status is what the broker contributes to the appliance's status.
type Status struct {
	Listeners     []apitype.Listener
	Clients       int64
	Subscriptions int64
	Messages      apitype.Messages
	// Connections counts open sockets: clients, connections before
	// CONNECT, HTTP requests on websocket ports.
	Connections int64
	Refusals    map[string]int64
}

// Status reports the broker's listeners, clients and message counters.
func (b *Broker) Status() Status {
	info := b.server.Info
	perListener := map[string]int64{}
	for _, cl := range b.server.Clients.GetAll() {
		if !cl.Closed() && !cl.Net.Inline {
			perListener[cl.Net.Listener]++
		}
	}
	b.mu.Lock()
	ls := make([]apitype.Listener, len(b.listeners))
	for i, l := range b.listeners {
		ls[i] = apitype.Listener{Name: l.Name, Address: l.Address, Source: l.Source, TLS: l.TLS, Clients: perListener[l.Name]}
	}
	b.mu.Unlock()
	m := b.sys.perMinute()
	dropped := atomic.LoadInt64(&info.MessagesDropped)
	return Status{
		Listeners:     ls,
		Clients:       atomic.LoadInt64(&info.ClientsConnected),
		Subscriptions: atomic.LoadInt64(&info.Subscriptions),
		Messages: apitype.Messages{
			ReceivedTotal:  b.sys.received.Load(),
			SentTotal:      atomic.LoadInt64(&info.MessagesSent),
			DroppedTotal:   dropped,
			ReceivedPerSec: float64(m.recv) / 60,
			SentPerSec:     float64(m.sent) / 60,
			DroppedPerSec:  float64(m.dropped) / 60,
			Drops: map[string]int64{
				apitype.DropSlowSubscriber: dropped,
				apitype.DropInflight:       atomic.LoadInt64(&info.InflightDropped),
			},
		},
		Connections: b.conns.open.Load(),
		Refusals:    b.Refusals(),
	}
}
