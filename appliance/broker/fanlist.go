package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The fast path's subscriber lists, kept per topic between subscription
// changes. Asking mochi's index for a topic's subscribers copies the
// subscription map of every matching node and merges each subscriber's
// subscriptions into a new one, per message: 14 % of a burst to 10,000
// subscribers (bench/results/profiles), for an answer that only changes
// when someone subscribes, unsubscribes or loses a session. A list is
// stamped with the generation it was built in; every such change bumps the
// generation (fanHook), so the next message on a topic builds its list
// afresh. The bump comes after mochi has changed its index, and a list
// records the generation read before it asked the index, so a change made
// while a list is built leaves that list stale, never wrong.
//
// Connections come and go without a bump: a listed connection that has
// closed is looked up again by client ID (a session taken over lives on in
// a new client), and one that is gone for good is skipped, as mochi skips
// a disconnected subscriber at QoS 0.

// fanTarget is one subscriber of a topic, with what fastFor needs of its
// merged subscription.
type fanTarget struct {
	id  string
	cl  *mqtt.Client // nil: no client had id when the list was built
	g   *guardedConn // nil: not one of the broker's connections, always mochi's path
	sub packets.Subscription
}

// fanList is a topic's subscribers as of generation gen.
type fanList struct {
	gen     uint64
	targets []fanTarget
	// mochi must see every message on the topic: shared or inline
	// subscriptions, which the fast path never serves.
	mochiOnly bool
	inline    bool
}

// fanListBudget bounds the subscribers held in all cached lists (a target
// is ~100 bytes); past it the cache starts over.
const fanListBudget = 1 << 20

// fanLists is the cache. Only the journal's consumer uses it, under
// fastPath.mu.
type fanLists struct {
	gen   atomic.Uint64 // bumped by every subscription or session change
	lists map[string]*fanList
	held  int // targets in lists
}

// changed invalidates every list.
func (c *fanLists) changed() { c.gen.Add(1) }

// get returns topic's list, built now if it is missing or stale.
func (c *fanLists) get(s *mqtt.Server, topic string) *fanList {
	gen := c.gen.Load()
	if l, ok := c.lists[topic]; ok && l.gen == gen {
		return l
	}
	subs := s.Topics.Subscribers(topic)
	l := &fanList{gen: gen, inline: len(subs.InlineSubscriptions) > 0}
	if len(subs.Shared) > 0 {
		l.mochiOnly = true
	} else {
		l.targets = make([]fanTarget, 0, len(subs.Subscriptions))
		for id, sub := range subs.Subscriptions {
			t := fanTarget{id: id, sub: sub}
			if cl, ok := s.Clients.Get(id); ok {
				t.cl, t.g = cl, connOf(cl)
			}
			l.targets = append(l.targets, t)
		}
	}
	if c.lists == nil || c.held+len(l.targets) > fanListBudget {
		c.lists, c.held = make(map[string]*fanList), 0
	}
	if old, ok := c.lists[topic]; ok {
		c.held -= len(old.targets)
	}
	c.lists[topic] = l
	c.held += len(l.targets)
	return l
}

// targetState is what became of a listed subscriber since its list was
// built.
type targetState uint8

const (
	targetLive  targetState = iota // its connection is open
	targetGone                     // closed, and nobody has its client ID
	targetMoved                    // its client ID has a new client (a session taken over or resumed)
)

// current says whether t's connection is still open; when it is not, the
// subscriber is gone or its client ID now belongs to another connection,
// which the list cannot speak for (a clean start drops the subscriptions):
// the caller leaves that one to mochi.
func (t *fanTarget) current(s *mqtt.Server) targetState {
	if t.cl != nil && (t.g == nil || !t.g.out.isClosed()) {
		return targetLive
	}
	cl, ok := s.Clients.Get(t.id)
	if !ok || cl == t.cl || cl.Closed() {
		return targetGone
	}
	return targetMoved
}
