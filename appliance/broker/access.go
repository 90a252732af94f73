package broker

import (
	"bytes"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firehose/firehose/appliance/topic"
)

// access is the broker's only hook: mochi ORs auth and ACL hooks together
// and its ledger hook lets a wrong password through when a catch-all rule
// exists, so the whole access model and every [limits] check live here.
// Anyone connects anonymously and reads everything; a publisher account,
// password checked, may publish (and leave a Will) only under its own
// filters; nothing anonymous is ever delivered or stored.
type access struct {
	mqtt.HookBase
	b        *Broker
	accounts atomic.Pointer[accounts]
	pw       passwords
	sessions sessions
	retained retainedBook
}

func (h *access) ID() string { return "firehose-access" }

func (h *access) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished,
		mqtt.OnDisconnect, mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnSubscribe,
		mqtt.OnUnsubscribe, mqtt.OnPublish, mqtt.OnPublishDropped, mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
		mqtt.OnWill, mqtt.OnClientExpired,
	}, []byte{b})
}

// CONNACK reason codes: MQTT 5's, and the MQTT 3.1.1 return code for each.
var (
	codeConnectionRate = packets.Code{Code: 0x9f, Reason: "connection rate exceeded"}
	refuseAuth         = [2]packets.Code{packets.ErrBadUsernameOrPassword, packets.Err3NotAuthorized}
	refuseAuthRate     = [2]packets.Code{codeConnectionRate, packets.Err3ServerUnavailable}
	refuseBusy         = [2]packets.Code{packets.ErrServerBusy, packets.Err3ServerUnavailable}
	refuseWill         = [2]packets.Code{packets.ErrNotAuthorized, packets.Err3NotAuthorized}
	refuseWillTopic    = [2]packets.Code{packets.ErrTopicNameInvalid, packets.Err3NotAuthorized}
	// Mosquitto's answer to an MQTT 3 keepalive past max_keepalive.
	refuseKeepalive = [2]packets.Code{packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid}
)

// maxAnonymousTopicAliases bounds the outbound topic aliases of an
// anonymous MQTT 5 client (it may ask for 65,535, each holding a topic).
const maxAnonymousTopicAliases = 32

// refuseConnect answers a CONNECT with a refusal and counts it. Returning
// the code from OnConnect ends the connection without another CONNACK.
// account is the publisher account when its password was checked.
func (h *access) refuseConnect(cl *mqtt.Client, codes [2]packets.Code, account, kind, msg string, attrs ...any) error {
	code := codes[0]
	if cl.Properties.ProtocolVersion < 5 {
		code = codes[1]
	}
	// Counted before the client can read the answer.
	h.b.refuseAccount(account, cl.ID, kind, msg, append([]any{"client", short(cl.ID), "user", short(string(cl.Properties.Username)), "remote", cl.Net.Remote}, attrs...)...)
	_ = h.b.server.SendConnack(cl, code, false, nil)
	return code
}

// accountOf is the account a connected client is authenticated as, or "".
func accountOf(cl *mqtt.Client) string { return string(cl.Properties.Username) }

// OnConnect decides every CONNECT: the password (bounded in time and rate),
// the Will, capacity, and an anonymous client's keepalive and session.
// OnConnectAuthenticate only reports what was decided here, because only
// here can the CONNACK carry the reason.
func (h *access) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	g := connOf(cl)
	if g != nil {
		g.who.Store(&identity{id: cl.ID, user: string(pk.Connect.Username), version: cl.Properties.ProtocolVersion})
	}
	lim := h.b.limits.Load()
	if len(pk.Connect.Username) != 0 {
		acct, err := h.checkPassword(cl, g, pk.Connect.Username, pk.Connect.Password, lim)
		if err != nil {
			return err
		}
		if pk.Connect.WillFlag {
			t := pk.Connect.WillTopic
			if kind := topicShape(t, lim); kind != "" {
				return h.refuseConnect(cl, refuseWillTopic, string(pk.Connect.Username), kind, "CONNECT refused: Will topic too long or deep", "topic", short(t))
			}
			if !topic.ValidName(t) || !acct.mayPublish(t) {
				return h.refuseConnect(cl, refuseWill, string(pk.Connect.Username), RefusedWill, "CONNECT refused: a Will outside the account's topics", "topic", short(t))
			}
		}
	} else {
		if len(pk.Connect.Password) != 0 {
			return h.refuseConnect(cl, refuseAuth, "", RefusedAuth, "CONNECT refused: a password without a username")
		}
		if pk.Connect.WillFlag {
			// A Will is a publish, and anonymous clients publish nothing.
			return h.refuseConnect(cl, refuseWill, "", RefusedWill, "CONNECT refused: anonymous clients may not leave a Will",
				"topic", short(pk.Connect.WillTopic), "will_bytes", len(pk.Connect.WillPayload))
		}
		if open := h.b.conns.open.Load(); open > h.b.maxClients.Load() {
			return h.refuseConnect(cl, refuseBusy, "", RefusedMaxClients, "CONNECT refused: max_clients reached", "open", open)
		}
		if h.b.wire.mem.overLimit() {
			return h.refuseConnect(cl, refuseBusy, "", RefusedMemory, "CONNECT refused: the broker is over memory_limit",
				"used", h.b.wire.mem.used.Load(), "limit", h.b.wire.mem.limit.Load())
		}
		if ka := pk.Connect.Keepalive; ka == 0 || ka > lim.maxKeepalive {
			if cl.Properties.ProtocolVersion < 5 {
				return h.refuseConnect(cl, refuseKeepalive, "", RefusedKeepalive, "CONNECT refused: keepalive 0 or over max_keepalive",
					"keepalive", ka, "max_keepalive", lim.maxKeepalive)
			}
			// MQTT 5 lets the CONNACK set the client's keepalive.
			cl.State.Keepalive = lim.maxKeepalive
			cl.State.ServerKeepalive = true
		}
		// The topic aliases an MQTT 5 client accepts are a table the broker
		// keeps for it, one entry per topic it is sent: kept small.
		if p := &cl.Properties.Props; p.TopicAliasMaximum > maxAnonymousTopicAliases {
			p.TopicAliasMaximum = maxAnonymousTopicAliases
			cl.State.TopicAliases.Outbound = mqtt.NewOutboundTopicAliases(maxAnonymousTopicAliases)
		}
		if p := &cl.Properties.Props; cl.Properties.ProtocolVersion == 5 && p.SessionExpiryInterval > lim.anonExpiry {
			p.SessionExpiryInterval, p.SessionExpiryIntervalFlag = lim.anonExpiry, true
			if g != nil {
				g.announce.Store(int64(lim.anonExpiry) + 1)
			}
		}
	}
	if g != nil {
		g.approved.Store(true)
		if g.track != nil {
			g.track.state.Store(stateConnected)
		}
	}
	return nil
}

// OnConnectAuthenticate admits what OnConnect approved.
func (h *access) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	g := connOf(cl)
	return g != nil && g.approved.Load()
}

// topicShape is the refusal kind for a topic or filter over
// max_topic_length or max_topic_levels, or "". The length is checked first
// and bounds the level count's scan.
func topicShape(s string, lim *limits) string {
	if len(s) > lim.MaxTopicLength {
		return RefusedTopicLength
	}
	if strings.Count(s, "/") >= lim.MaxTopicLevels {
		return RefusedTopicLevels
	}
	return ""
}

// mayWrite reports whether cl may publish to t, and if not, the kind of
// refusal.
func (h *access) mayWrite(cl *mqtt.Client, t string) (bool, string) {
	if len(cl.Properties.Username) == 0 {
		return false, RefusedACL
	}
	if kind := topicShape(t, h.b.limits.Load()); kind != "" {
		return false, kind
	}
	acct := h.accounts.Load().byName[string(cl.Properties.Username)]
	if acct == nil || !acct.mayPublish(t) {
		return false, RefusedACL
	}
	return true, ""
}

// OnACLCheck runs for every delivery to every subscriber (write == false):
// that path must stay cheap. It is where mochi learns which subscribers the
// fast path has already served (fastpath.go).
func (h *access) OnACLCheck(cl *mqtt.Client, t string, write bool) bool {
	if !write {
		if f := h.b.fast; f != nil {
			if g := connOf(cl); g != nil && f.skip(cl, &g.fan, t) {
				return false
			}
		}
		return true
	}
	ok, kind := h.mayWrite(cl, t)
	if !ok {
		h.b.refuseAccount(accountOf(cl), cl.ID, kind, "publish refused", "client", short(cl.ID), "user", short(string(cl.Properties.Username)),
			"remote", cl.Net.Remote, "topic", short(t))
	}
	return ok
}

// OnPacketRead answers a refused QoS 1 or 2 PUBLISH from an MQTT 3.1.1
// client with a positive acknowledgement and lets it go on as QoS 0, which
// the ACL then drops (and counts). MQTT 3.1.1 has no negative PUBACK, and
// mochi would instead send a DISCONNECT that 3.1.1 does not define for
// servers; MQTT-3.3.5-2 allows the positive answer, and Mosquitto gives it.
func (h *access) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || cl.Properties.ProtocolVersion >= 5 {
		return pk, nil
	}
	if ok, _ := h.mayWrite(cl, pk.TopicName); ok {
		return pk, nil
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec // its PUBREL then finds nothing in flight and gets a PUBCOMP
	}
	_ = cl.WritePacket(ack)
	pk.FixedHeader.Qos, pk.FixedHeader.Dup, pk.PacketID = 0, false, 0
	return pk, nil
}

// OnPacketEncode adds to MQTT 5 acknowledgements what mochi does not say:
// the CONNACK's maximum packet size and an anonymous client's shortened
// session, and the SUBACK's "quota exceeded" for filters refused for the
// subscription count or memory. A PUBLISH, the common case, returns first.
func (h *access) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return pk
	case packets.Connack:
		if cl.Properties.ProtocolVersion == 5 && pk.ReasonCode == packets.CodeSuccess.Code {
			pk.Properties.MaximumPacketSize = uint32(h.b.wire.maxPacketSize.Load())
			if g := connOf(cl); g != nil {
				if a := g.announce.Load(); a > 0 {
					pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = uint32(a-1), true
				}
			}
		}
	case packets.Suback:
		g := connOf(cl)
		if g == nil {
			return pk
		}
		if fix := g.subFix.Swap(nil); fix != nil && fix.pid == pk.PacketID && cl.Properties.ProtocolVersion == 5 {
			codes := append([]byte(nil), pk.ReasonCodes...)
			for _, i := range fix.quota {
				if i < len(codes) {
					codes[i] = packets.ErrQuotaExceeded.Code
				}
			}
			pk.ReasonCodes = codes
		}
	}
	return pk
}

// subackFix names the filters of one SUBSCRIBE refused for quota.
type subackFix struct {
	pid   uint16
	quota []int
}

// OnSubscribe holds every filter to the topic limits, the client's
// subscription count and the memory limit before mochi indexes it: mochi
// indexes a filter of n levels in O(n²) under one lock for everybody. A
// refused filter is emptied, which mochi answers in the SUBACK as invalid
// (MQTT 3.1.1: 0x80; MQTT 5: 0x8F, or 0x97 for quota). Anonymous
// subscribers are granted QoS 0 (the SUBACK says so, as MQTT allows):
// delivering at QoS 1 takes the subscriber's lock on the publishing
// goroutine (mochi's NextPacketID), so one stalled QoS 1 subscriber would
// stall every delivery behind it. Publisher accounts are trusted with QoS 1.
func (h *access) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	lim := h.b.limits.Load()
	anonymous := len(cl.Properties.Username) == 0
	filters := make(packets.Subscriptions, len(pk.Filters))
	copy(filters, pk.Filters)
	have := cl.State.Subscriptions.Len()
	var fix *subackFix
	for i := range filters {
		f := &filters[i]
		if anonymous {
			f.Qos = 0
		}
		kind := topicShape(f.Filter, lim)
		if kind == "" {
			if _, exists := cl.State.Subscriptions.Get(f.Filter); !exists {
				switch {
				case have >= lim.MaxSubscriptionsPerClient:
					kind = RefusedSubscriptions
				case h.b.wire.mem.overLimit():
					kind = RefusedMemory
				default:
					have++
				}
			}
		}
		if kind == "" {
			continue
		}
		h.b.refuseAccount(accountOf(cl), cl.ID, kind, "subscription refused", "client", short(cl.ID), "remote", cl.Net.Remote,
			"filter", short(f.Filter), "subscriptions", have, "max_subscriptions_per_client", lim.MaxSubscriptionsPerClient)
		f.Filter = ""
		if kind == RefusedSubscriptions || kind == RefusedMemory {
			if fix == nil {
				fix = &subackFix{pid: pk.PacketID}
			}
			fix.quota = append(fix.quota, i)
		}
	}
	if g := connOf(cl); g != nil && fix != nil {
		g.subFix.Store(fix)
	}
	pk.Filters = filters
	return pk
}

// OnUnsubscribe empties filters no SUBSCRIBE could have made, so mochi does
// not walk a deep one.
func (h *access) OnUnsubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	lim := h.b.limits.Load()
	var filters packets.Subscriptions
	for i := range pk.Filters {
		if topicShape(pk.Filters[i].Filter, lim) == "" {
			continue
		}
		if filters == nil {
			filters = append(packets.Subscriptions(nil), pk.Filters...)
		}
		filters[i].Filter = ""
	}
	if filters != nil {
		pk.Filters = filters
	}
	return pk
}

// OnPublish keeps retained messages within max_retained_messages,
// max_retained_bytes and memory_limit: past them a message is delivered but
// not kept. The broker's own messages ($SYS, Gerrit) are not counted.
func (h *access) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.FixedHeader.Retain || len(pk.Payload) == 0 || cl.Net.Inline {
		return pk, nil
	}
	if kind := h.retainable(pk.TopicName, len(pk.Payload)); kind != "" {
		pk.FixedHeader.Retain = false
		h.b.refuseAccount(accountOf(cl), cl.ID, kind, "retained message delivered but not kept", "client", short(cl.ID),
			"user", short(string(cl.Properties.Username)), "topic", short(pk.TopicName), "payload_bytes", len(pk.Payload))
	}
	return pk, nil
}

// retainable is "" when a retained message of n bytes may be kept on t, else
// the refusal kind.
func (h *access) retainable(t string, n int) string {
	if h.b.wire.mem.overLimit() {
		return RefusedMemory
	}
	if !h.retained.admit(t, n, h.b.limits.Load()) {
		return RefusedRetained
	}
	return ""
}

func (h *access) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if cl.Net.Inline {
		return
	}
	h.retained.set(pk.TopicName, len(pk.Payload))
}

func (h *access) OnRetainedExpired(filter string) { h.retained.set(filter, 0) }

// OnWill checks a Will again as it is sent, since a reload may have taken
// the account's right to publish it, and keeps it to the retained limits.
// mochi publishes whatever this returns, so a Will that may not go out is
// emptied: with no topic it reaches nobody and is not retained.
func (h *access) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if ok, _ := h.mayWrite(cl, will.TopicName); !ok {
		h.b.refuseAccount(accountOf(cl), cl.ID, RefusedWill, "Will not sent: the client may not publish it", "client", short(cl.ID),
			"user", short(string(cl.Properties.Username)), "topic", short(will.TopicName))
		return mqtt.Will{}, nil
	}
	if will.Retain {
		if kind := h.retainable(will.TopicName, len(will.Payload)); kind != "" {
			will.Retain = false
			h.b.refuseAccount(accountOf(cl), cl.ID, kind, "Will delivered but not kept", "client", short(cl.ID), "topic", short(will.TopicName))
		}
	}
	return will, nil
}

// OnPublishDropped: mochi's own queue for a client (pendingWrites messages)
// was full. Dropping silently would leave the subscriber a gap it cannot
// see, so it is disconnected instead, like one past max_queued_bytes.
func (h *access) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if g := connOf(cl); g != nil {
		g.endSlow(errQueueCount)
		_ = g.Conn.Close()
	}
}

// OnClientExpired drops an expired session's subscriptions too, so fan-out
// does not keep walking subscribers that will never come back.
func (h *access) OnClientExpired(cl *mqtt.Client) {
	h.b.server.UnsubscribeClient(cl)
}

// housekeeping runs once a second (sys.go's tick): it expires anonymous
// sessions and forgets old password failures.
func (h *access) housekeeping(now time.Time) {
	h.sessions.sweep(h, now)
	h.pw.sweep(now, h.b.limits.Load())
}
