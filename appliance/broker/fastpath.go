package broker

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firehose/firehose/appliance/journal"
)

// The fast path: a journaled message is encoded once per protocol version
// (MQTT 3.1/3.1.1 share one encoding; MQTT 5 has its own, with
// firehose-seq) and the same bytes are appended to the write coalescer of
// every subscriber that would receive exactly those bytes from mochi. mochi
// would otherwise copy the packet, queue it to the client's goroutine and
// encode it again, per subscriber.
//
// Who takes the fast path, per message and subscriber: a connection of the
// broker's own (not the inline client), delivered at QoS 0 (the message's
// QoS or the subscription's is 0), with no subscription identifier, no
// no-local, no retain-as-published for a retained message, no outbound topic
// aliases, problem information allowed (else MQTT 5 drops the user
// property), and a maximum packet size, if any, that lets mochi keep the
// user property. Everyone else, and every message when the topic has shared
// subscriptions, gets the message from mochi, as before; mochi skips the
// subscribers the fast path served because the ACL check it makes per
// subscriber (OnACLCheck, read) says no for them, for this one packet only.
//
// Order. Each subscriber must see messages in journal order whichever path
// each took, and no delivery before the SUBACK of the subscription it is for:
//   - A connection counts the publishes mochi has queued for it and not yet
//     written (pending: +1 when the ACL lets one through, -1 when mochi has
//     written one, OnPacketSent). While any wait, it stays on mochi's path,
//     so fast bytes never overtake bytes still in mochi's queue (or in
//     mochi's own write buffer, which it flushes with the last of them).
//   - From a SUBSCRIBE until its SUBACK has been written (busy) it stays on
//     mochi's path too: mochi indexes a filter before it writes the SUBACK.
//   - The decision for one message and one subscriber is made once (mark),
//     so a subscriber that changes its subscriptions meanwhile gets that
//     message once, from one path.
// Slow subscribers are the coalescer's business (max_queued_bytes): the
// journal consumer never blocks on a socket.
//
// FIREHOSE_FAST_PATH=off turns it off (everything goes through mochi), for
// comparison and as a way out should it ever misbehave.

// fanConn is what the fast path keeps per connection.
type fanConn struct {
	pending atomic.Int64  // publishes mochi has queued and not yet written
	busy    atomic.Int32  // SUBSCRIBEs whose SUBACK is not written yet
	mark    atomic.Uint64 // the fan-out that served this connection last
	// expect is how many filters of the SUBSCRIBE being processed mochi
	// will ACL-check; those checks are not publishes. Only the client's
	// own goroutine touches it.
	expect int64
}

// fastPath is the broker's encode-once fan-out for journaled messages.
type fastPath struct {
	b  *Broker
	mu sync.Mutex // one fan-out at a time (the journal's consumer; DeliverLive takes mochi's path)
	id atomic.Uint64
	// The packet mochi is fanning out for the current fast fan-out: its
	// topic string (by address, unique to this delivery) and its id.
	topic atomic.Pointer[byte]
	cur   atomic.Uint64
	sent  atomic.Int64       // deliveries it made, for $SYS
	dirty []*coalescedWriter // with mu held: writers to hand to the flushers
	lists fanLists           // subscribers per topic (fanlist.go)
}

// pushGroup is how many newly dirty connections a fan-out gathers before it
// hands them to the flushers at once (one lock, one wake-up).
const pushGroup = 256

func fastPathEnabled() bool { return os.Getenv("FIREHOSE_FAST_PATH") != "off" }

// skip answers mochi's per-subscriber ACL check for a delivery (read): false
// for a subscriber the fast path has served this packet to. Otherwise the
// publish will be queued: it is counted as pending.
func (f *fastPath) skip(cl *mqtt.Client, g *fanConn, topic string) bool {
	if p := f.topic.Load(); p != nil && p == unsafe.StringData(topic) && g.mark.Load() == f.cur.Load() {
		return true
	}
	g.pending.Add(1)
	return false
}

// fanHook follows each connection's subscriptions and mochi's writes for
// the fast path.
type fanHook struct {
	mqtt.HookBase
	f *fastPath
}

func (h *fanHook) ID() string { return "firehose-fastpath" }

func (h *fanHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnSessionEstablished, mqtt.OnPacketSent}, []byte{b})
}

// OnUnsubscribed runs after mochi has taken the filters out of its index.
func (h *fanHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) { h.f.lists.changed() }

// OnSessionEstablished runs after a session taken over or resumed has
// changed the index (a clean start drops the old subscriptions). A client
// that merely disconnects changes no list: its closed connection is skipped
// (fanlist.go).
func (h *fanHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) { h.f.lists.changed() }

// OnSubscribe runs after access's (hooks run in the order added), on the
// filters mochi will process.
func (h *fanHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	g := connOf(cl)
	if g == nil {
		return pk
	}
	g.fan.busy.Add(1)
	// As processSubscribe decides which filters reach OnACLCheck.
	var n int64
	if _, inUse := cl.State.Inflight.Get(pk.PacketID); !inUse {
		for _, s := range pk.Filters {
			if mqtt.IsValidFilter(s.Filter, false) && !(s.NoLocal && mqtt.IsSharedFilter(s.Filter)) {
				n++
			}
		}
	}
	g.fan.expect = n
	return pk
}

// OnSubscribed runs after the filters' ACL checks and mochi's index
// changes, before the SUBACK.
func (h *fanHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.f.lists.changed()
	if g := connOf(cl); g != nil {
		g.fan.pending.Add(-g.fan.expect)
		g.fan.expect = 0
	}
}

func (h *fanHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, b []byte) {
	g := connOf(cl)
	if g == nil {
		return
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		// Never below zero: a QoS > 0 message resent on a resumed session
		// was never counted on this connection.
		for {
			n := g.fan.pending.Load()
			if n <= 0 || g.fan.pending.CompareAndSwap(n, n-1) {
				break
			}
		}
	case packets.Suback:
		g.fan.busy.Add(-1)
	}
}

// encoded holds one message's bytes per encoding, made on first use.
type encoded struct {
	pk     packets.Packet
	v4, v5 []byte
	// n is what mochi compares with an MQTT 5 client's maximum packet size
	// to decide whether the user property fits (Properties.Encode).
	n, userLen int
}

func (e *encoded) get(v5 bool) []byte {
	p := &e.v4
	if v5 {
		p = &e.v5
	}
	if *p == nil {
		pk := e.pk
		pk.ProtocolVersion = 4
		if v5 {
			pk.ProtocolVersion = 5
		}
		var buf bytes.Buffer
		buf.Grow(len(pk.Payload) + len(pk.TopicName) + 64)
		if err := pk.PublishEncode(&buf); err != nil {
			return nil
		}
		*p = buf.Bytes()
	}
	return *p
}

// deliverFast fans m out: the fast path's subscribers get the shared bytes,
// then mochi delivers to the rest (and keeps a retained message).
func (f *fastPath) deliverFast(m journal.Message, pk packets.Packet) {
	b := f.b
	f.mu.Lock()
	defer f.mu.Unlock()
	// A topic string of this delivery's own, so that the ACL check can tell
	// this packet from any other on the same topic.
	pk.TopicName = strings.Clone(m.Topic)
	list := f.lists.get(b.server, m.Topic)
	fast, sent, mochi := 0, 0, list.mochiOnly || list.inline || m.Retain
	if !list.mochiOnly {
		id := f.id.Add(1)
		e := &encoded{pk: pk}
		e.pk.FixedHeader.Qos, e.pk.FixedHeader.Retain, e.pk.PacketID = 0, false, 0
		if exp := b.server.Options.Capabilities.MaximumMessageExpiryInterval; exp > 0 {
			// As mochi's WritePacket: the expiry left, from now.
			e.pk.Properties.MessageExpiryInterval = uint32(exp)
		}
		e.n = 2 + len(pk.TopicName) + len(pk.Payload)
		for _, u := range e.pk.Properties.User {
			e.userLen += 5 + len(u.Key) + len(u.Val)
		}
		for i := range list.targets {
			t := &list.targets[i]
			switch t.current(b.server) {
			case targetGone:
				// mochi would keep a QoS > 0 message for the session and
				// drop a QoS 0 one.
				mochi = mochi || min(m.QoS, t.sub.Qos) > 0
				continue
			case targetMoved:
				mochi = true
				f.lists.changed()
				continue
			}
			cl, g := t.cl, t.g
			if g == nil || !fastFor(cl, g, t.sub, m) {
				mochi = true
				continue
			}
			v5 := cl.Properties.ProtocolVersion == 5
			out := e.get(v5)
			if out == nil {
				mochi = true
				continue
			}
			if max := cl.Properties.Props.MaximumPacketSize; v5 && max > 0 {
				if uint32(e.n+e.userLen+1) >= max {
					mochi = true // mochi would leave firehose-seq out: its path
					continue
				}
				if uint32(len(out)) > max {
					g.fan.mark.Store(id) // mochi drops it; so does the fast path
					continue
				}
			}
			g.fan.mark.Store(id)
			err := g.writeDeferred(out, &f.dirty)
			switch {
			case err == nil:
				fast++
				sent += len(out)
			case err == errWriterClosed:
				// Closed since it was looked up: as if gone.
				mochi = mochi || min(m.QoS, t.sub.Qos) > 0
			}
			// Hand writers to the flushers in groups, so that writing
			// starts while the fan-out goes on.
			if len(f.dirty) >= pushGroup {
				flushers.pushAll(f.dirty)
				clear(f.dirty)
				f.dirty = f.dirty[:0]
			}
		}
		flushers.pushAll(f.dirty)
		clear(f.dirty)
		f.dirty = f.dirty[:0]
		f.cur.Store(id)
		f.topic.Store(unsafe.StringData(pk.TopicName))
		defer f.topic.Store(nil)
	}
	if fast > 0 {
		info := b.server.Info
		atomic.AddInt64(&info.MessagesSent, int64(fast))
		atomic.AddInt64(&info.PacketsSent, int64(fast))
		atomic.AddInt64(&info.BytesSent, int64(sent))
		f.sent.Add(int64(fast))
	}
	if !mochi {
		// Nobody left for mochi: count the message as its OnPublished
		// would have (sysHook).
		b.sys.received.Add(1)
		return
	}
	if err := b.server.InjectPacket(b.deliverer, pk); err != nil {
		b.log.Warn("delivering a journaled message", "topic", m.Topic, "seq", m.Seq, "error", err)
	}
}

// fastFor reports whether mochi would send cl, for subscription sub, the
// bytes the fast path has for m, and whether cl may take them now (see
// Order above).
func fastFor(cl *mqtt.Client, g *guardedConn, sub packets.Subscription, m journal.Message) bool {
	if g.fan.busy.Load() != 0 || g.fan.pending.Load() > 0 {
		return false
	}
	if m.QoS > 0 && sub.Qos > 0 {
		return false
	}
	if sub.NoLocal || (m.Retain && sub.RetainAsPublished) {
		return false
	}
	for _, id := range sub.Identifiers {
		if id > 0 {
			return false
		}
	}
	switch cl.Properties.ProtocolVersion {
	case 3, 4:
		return true
	case 5:
		p := &cl.Properties.Props
		return p.TopicAliasMaximum == 0 && !(p.RequestProblemInfoFlag && p.RequestProblemInfo == 0)
	}
	return false
}

// seqProperty is the user property Deliver gives a journaled message.
func seqProperty(seq uint64) []packets.UserProperty {
	return []packets.UserProperty{{Key: SeqProperty, Val: strconv.FormatUint(seq, 10)}}
}
