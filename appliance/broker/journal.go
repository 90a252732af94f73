package broker

import (
	"bytes"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firehose/firehose/appliance/journal"
)

// SeqProperty is the MQTT 5 user property that carries a message's journal
// sequence number to subscribers.
const SeqProperty = "firehose-seq"

// Journal is what the broker needs of the journal: write a publisher's
// message, and hand over one it could not write.
type Journal interface {
	Append(topic string, payload []byte, retain bool, qos byte) (uint64, error)
	DeliverLive(topic string, payload []byte, retain bool, qos byte)
}

// journalFrom is a journal that names a QoS > 0 publish by its client and
// packet ID, so that the publisher's resend of it through another node of
// a cluster is stored once.
type journalFrom interface {
	AppendFrom(client string, packetID uint16, topic string, payload []byte, retain bool, qos byte) (uint64, error)
}

// UseJournal routes every publish from a client through j before any
// subscriber sees it: the message is journaled, a QoS 1 publish is
// acknowledged once it is, and it reaches subscribers through Deliver, fed
// by the journal's consumer in journal order. Call it before Start.
func (b *Broker) UseJournal(j Journal) error {
	b.deliverer = b.server.NewClient(nil, mqtt.LocalListener, "firehose-journal", true)
	if err := b.server.AddHook(&journalHook{b: b, j: j}, nil); err != nil {
		return err
	}
	if !fastPathEnabled() {
		return nil
	}
	f := &fastPath{b: b}
	if err := b.server.AddHook(&fanHook{f: f}, nil); err != nil {
		return err
	}
	b.fast = f
	return nil
}

// Deliver hands one message to the local subscribers (and the retained
// store, for a retained message) as the broker's own publish: it bypasses
// the ACL, which checked the publisher when the message was journaled.
// MQTT 5 subscribers receive the sequence number as the user property
// firehose-seq. It is the one step from the journal to the subscribers.
func (b *Broker) Deliver(m journal.Message) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    uint16(m.QoS), // mochi checks that a QoS > 0 publish has one
	}
	if m.Seq > 0 {
		pk.Properties.User = seqProperty(m.Seq)
		if b.fast != nil {
			// Journaled messages come one at a time, in order, from the
			// journal's consumer: the fast path (fastpath.go).
			b.fast.deliverFast(m, pk)
			return
		}
	}
	if err := b.server.InjectPacket(b.deliverer, pk); err != nil {
		b.log.Warn("delivering a journaled message", "topic", m.Topic, "seq", m.Seq, "error", err)
	}
}

// Clients is the number of connected clients, read without walking them.
func (b *Broker) Clients() int64 { return atomic.LoadInt64(&b.server.Info.ClientsConnected) }

// ReceivedPerMinute is how many messages publishers sent over the last
// minute.
func (b *Broker) ReceivedPerMinute() float64 { return float64(b.sys.perMinute().recv) }

// journalHook journals every publish from a client. mochi calls OnPublish
// after the ACL has allowed the publish and before it acknowledges or fans
// it out; returning ErrRejectPacket stops both, so the hook writes the
// acknowledgement itself once the message is journaled.
type journalHook struct {
	mqtt.HookBase
	b *Broker
	j Journal
}

func (h *journalHook) ID() string { return "firehose-journal" }

func (h *journalHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish}, []byte{b})
}

func (h *journalHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	// The broker's own publishes ($SYS, and Deliver itself) stay local.
	if cl.Net.Inline || strings.HasPrefix(pk.TopicName, "$") {
		return pk, nil
	}
	qos := pk.FixedHeader.Qos
	var err error
	if jf, ok := h.j.(journalFrom); ok && qos > 0 {
		_, err = jf.AppendFrom(cl.ID, pk.PacketID, pk.TopicName, pk.Payload, pk.FixedHeader.Retain, qos)
	} else {
		_, err = h.j.Append(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, qos)
	}
	if err != nil {
		// Fan-out goes on without the journal; the publisher is told the
		// message is not safely kept, so it may send it again.
		h.j.DeliverLive(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, qos)
		if qos > 0 {
			h.refuse(cl, pk, err)
		}
		return pk, packets.ErrRejectPacket
	}
	switch qos {
	case 1:
		_ = cl.WritePacket(ack(packets.Puback, pk.PacketID, packets.CodeSuccess))
	case 2:
		// As mochi does: the PUBREC is held in flight until the client's
		// PUBREL, which mochi answers with PUBCOMP.
		rec := ack(packets.Pubrec, pk.PacketID, packets.CodeSuccess)
		cl.State.Inflight.DecreaseReceiveQuota()
		if cl.State.Inflight.Set(rec) {
			atomic.AddInt64(&h.b.server.Info.Inflight, 1)
		}
		_ = cl.WritePacket(rec)
	}
	return pk, packets.ErrRejectPacket
}

// refuse tells a QoS > 0 publisher that its message was not journaled: an
// MQTT 5 client gets a negative acknowledgement, an MQTT 3 client (which
// has none) is disconnected, so that neither takes the message as kept.
func (h *journalHook) refuse(cl *mqtt.Client, pk packets.Packet, err error) {
	if cl.Properties.ProtocolVersion < 5 {
		cl.Stop(packets.ErrUnspecifiedError)
		return
	}
	typ := packets.Puback
	if pk.FixedHeader.Qos == 2 {
		typ = packets.Pubrec
	}
	a := ack(typ, pk.PacketID, packets.ErrUnspecifiedError)
	a.Properties.ReasonString = journal.RefusalReason(err)
	_ = cl.WritePacket(a)
}

func ack(typ byte, id uint16, reason packets.Code) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: id, ReasonCode: reason.Code}
}
