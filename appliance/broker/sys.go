package broker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/system"

	"github.com/firehose/firehose/appliance/apitype"
)

// sysStats keeps a minute of once-a-second counter samples, from which both
// the mosquitto-style "1min" loads and status's per-second rates are taken.
type sysStats struct {
	mu      sync.Mutex
	ring    [61]sample
	n, next int

	// injected counts the $SYS messages published here: mochi counts them as
	// received, but they are not traffic, so they are subtracted.
	injected atomic.Int64
}

type sample struct {
	at                             time.Time
	recv, sent, dropped, bIn, bOut int64
}

func newSysStats() *sysStats { return &sysStats{} }

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

// publishSys adds, once a second, the mosquitto names that existing
// monitoring reads, and the refusal counts by kind.
func (b *Broker) publishSys(info *system.Info) {
	s := b.sys
	s.add(sample{at: time.Now(), recv: info.MessagesReceived - s.injected.Load(), sent: info.MessagesSent,
		dropped: info.MessagesDropped, bIn: info.BytesReceived, bOut: info.BytesSent})
	m := s.perMinute()
	for _, kv := range [...]struct {
		topic string
		value string
	}{
		{"$SYS/broker/subscriptions/count", strconv.FormatInt(info.Subscriptions, 10)},
		{"$SYS/broker/heap/current", strconv.FormatInt(info.MemoryAlloc, 10)},
		{"$SYS/broker/load/messages/received/1min", load(m.recv)},
		{"$SYS/broker/load/messages/sent/1min", load(m.sent)},
		{"$SYS/broker/load/bytes/received/1min", load(m.bIn)},
		{"$SYS/broker/load/bytes/sent/1min", load(m.bOut)},
		{"$SYS/broker/load/publish/dropped/1min", load(m.dropped)},
		{"$SYS/broker/connections/open", strconv.FormatInt(b.conns.open.Load(), 10)},
	} {
		b.injectSys(kv.topic, kv.value)
	}
	for _, k := range refusalKinds {
		b.injectSys("$SYS/broker/refused/"+k, strconv.FormatInt(b.refused.byKind[k].n.Load(), 10))
	}
}

func (b *Broker) injectSys(topic, value string) {
	if b.server.Publish(topic, []byte(value), true, 0) == nil {
		b.sys.injected.Add(1)
	}
}

func load(perMinute int64) string { return strconv.FormatFloat(float64(perMinute), 'f', 2, 64) }

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
	return Status{
		Listeners:     ls,
		Clients:       atomic.LoadInt64(&info.ClientsConnected),
		Subscriptions: atomic.LoadInt64(&info.Subscriptions),
		Messages: apitype.Messages{
			ReceivedTotal:  atomic.LoadInt64(&info.MessagesReceived) - b.sys.injected.Load(),
			SentTotal:      atomic.LoadInt64(&info.MessagesSent),
			DroppedTotal:   atomic.LoadInt64(&info.MessagesDropped),
			ReceivedPerSec: float64(m.recv) / 60,
			SentPerSec:     float64(m.sent) / 60,
			DroppedPerSec:  float64(m.dropped) / 60,
		},
		Connections: b.conns.open.Load(),
		Refusals:    b.Refusals(),
	}
}
