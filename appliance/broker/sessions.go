package broker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sessions owns who may use a client ID, and how long an anonymous client's
// session outlives its connection.
//
// mochi hands a client ID to whoever connects with it last, disconnecting
// the client that had it (and an MQTT 3.1.1 client that receives that
// DISCONNECT gives up for good). Here a session belongs to its username: an
// account may take over its own sessions and an anonymous one (a squatter on
// its ID); an anonymous client may resume an anonymous session only when no
// one is connected on it. Anyone else gets a session of its own under a
// changed ID, and the connected client keeps its connection.
type sessions struct {
	mu sync.Mutex
	// connecting holds clients between the ID decision and mochi adding
	// them to its table, so that two CONNECTs racing for one ID cannot both
	// take it.
	connecting map[string]*mqtt.Client
	// offline holds anonymous sessions that outlive their connection, until
	// anonymous_session_expiry.
	offline map[string]offlineSession
	seq     atomic.Uint64

	lastTakeoverLog atomic.Int64
	takeovers       atomic.Int64
}

type offlineSession struct {
	cl    *mqtt.Client
	until time.Time
}

func (s *sessions) init() {
	s.connecting = map[string]*mqtt.Client{}
	s.offline = map[string]offlineSession{}
}

// OnSessionEstablish runs after authentication, just before mochi takes
// over any session with the client's ID.
func (h *access) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	s := &h.sessions
	s.mu.Lock()
	defer s.mu.Unlock()
	id, owner := cl.ID, string(cl.Properties.Username)
	existing, _ := h.b.server.Clients.Get(id)
	rename := false
	for _, e := range []*mqtt.Client{s.connecting[id], existing} {
		if e == nil || e == cl || (e != existing && e.Closed()) {
			continue
		}
		theirs := string(e.Properties.Username)
		switch {
		case owner != "" && (theirs == owner || theirs == ""):
			// An account takes over its own session, or an anonymous
			// client's that holds its ID.
		case owner == "" && theirs == "" && e.Closed():
			// Resuming an anonymous session nobody is connected on.
		default:
			rename = true
		}
	}
	if rename {
		for {
			cl.ID = id + "#" + strconv.FormatUint(s.seq.Add(1), 36)
			if _, taken := h.b.server.Clients.Get(cl.ID); !taken && s.connecting[cl.ID] == nil {
				break
			}
		}
		h.b.refuseAccount(owner, id, RefusedClientID, "client ID in use by a client of another owner: the new connection gets a session of its own",
			"client", short(id), "given", short(cl.ID), "user", short(owner), "remote", cl.Net.Remote)
	} else if existing != nil && !existing.Closed() {
		// An MQTT 3 client is closed without the DISCONNECT mochi would
		// send (see Drain).
		if existing.Properties.ProtocolVersion < 5 {
			existing.Stop(packets.ErrSessionTakenOver)
		}
		h.logTakeover(existing, cl)
	}
	s.connecting[cl.ID] = cl
}

// logTakeover logs an allowed takeover, at most once per refusalLogEvery.
func (h *access) logTakeover(old, cl *mqtt.Client) {
	s := &h.sessions
	n := s.takeovers.Add(1)
	now := time.Now().UnixNano()
	last := s.lastTakeoverLog.Load()
	if now-last >= int64(refusalLogEvery) && s.lastTakeoverLog.CompareAndSwap(last, now) {
		h.b.log.Info("session taken over by a new connection of its owner", "client", short(cl.ID),
			"user", short(string(cl.Properties.Username)), "old_remote", old.Net.Remote, "new_remote", cl.Net.Remote,
			"takeovers_since_start", n)
	}
}

// OnSessionEstablished: mochi's table has the client now.
func (h *access) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	s := &h.sessions
	s.mu.Lock()
	if s.connecting[cl.ID] == cl {
		delete(s.connecting, cl.ID)
	}
	s.mu.Unlock()
}

// OnDisconnect keeps an anonymous session that asked to persist (clean
// session off, or an MQTT 5 session expiry) for anonymous_session_expiry at
// most: otherwise departed clients could leave subscriptions behind for an
// hour (the broker's limit for every session), at no cost to themselves.
func (h *access) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if expire || len(cl.Properties.Username) != 0 || cl.IsTakenOver() || cl.Net.Inline {
		return
	}
	d := h.b.limits.Load().anonExpiry
	if p := cl.Properties.Props; cl.Properties.ProtocolVersion == 5 && p.SessionExpiryIntervalFlag && p.SessionExpiryInterval < d {
		d = p.SessionExpiryInterval
	}
	s := &h.sessions
	s.mu.Lock()
	defer s.mu.Unlock()
	if d == 0 {
		h.endSession(cl)
		return
	}
	s.offline[cl.ID] = offlineSession{cl: cl, until: time.Now().Add(time.Duration(d) * time.Second)}
}

// endSession removes an offline session and its subscriptions, with s.mu
// held: a client resuming the ID must pass OnSessionEstablish, which waits,
// so the entry removed is this session's and not its successor's.
func (h *access) endSession(cl *mqtt.Client) {
	if c := h.sessions.connecting[cl.ID]; c != nil && !c.Closed() {
		return // being resumed
	}
	cur, ok := h.b.server.Clients.Get(cl.ID)
	if !ok || cur != cl || !cl.Closed() || cl.IsTakenOver() {
		return
	}
	cl.ClearInflights()
	h.b.server.UnsubscribeClient(cl)
	h.b.server.Clients.Delete(cl.ID)
}

// sweep ends anonymous sessions past their time and forgets CONNECTs that
// never reached mochi's table.
func (s *sessions) sweep(h *access, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.offline {
		if cur, ok := h.b.server.Clients.Get(id); !ok || cur != o.cl {
			delete(s.offline, id) // resumed or gone
			continue
		}
		if now.After(o.until) {
			delete(s.offline, id)
			h.endSession(o.cl)
		}
	}
	for id, c := range s.connecting {
		if c.Closed() {
			delete(s.connecting, id)
		}
	}
}
