package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of refusal, counted in status (`refusals`) and in $SYS
// (`$SYS/broker/refused/<kind>`). Each is logged at most once per
// refusalLogEvery, with the number of like refusals since the last line, so
// that a client repeating a refused request cannot grow the log.
const (
	RefusedAuth           = "auth"            // wrong password or unknown username
	RefusedAuthRate       = "auth_rate"       // too many password failures from the address or for the account
	RefusedAuthBusy       = "auth_busy"       // no password-check slot within auth_wait, or the client left while waiting
	RefusedACL            = "acl"             // a publish the client may not make (anonymous, or outside the account's topics)
	RefusedWill           = "will"            // a Will the client may not publish
	RefusedClientID       = "client_id"       // a client ID in use by another owner: the newcomer got a session of its own
	RefusedTopicLevels    = "topic_levels"    // a topic or filter deeper than max_topic_levels
	RefusedTopicLength    = "topic_length"    // a topic or filter longer than max_topic_length
	RefusedSubscriptions  = "subscriptions"   // past max_subscriptions_per_client
	RefusedPerAddress     = "per_address"     // past max_connections_per_address
	RefusedKeepalive      = "keepalive"       // an anonymous MQTT 3 client asking for keepalive 0 or over max_keepalive
	RefusedMemory         = "memory"          // a connection, subscription or retained message past memory_limit
	RefusedMaxClients     = "max_clients"     // past max_clients
	RefusedSlowSubscriber = "slow_subscriber" // a subscriber disconnected: its queue passed max_queued_bytes (or memory_limit)
	RefusedRetained       = "retained"        // a retained message past max_retained_messages/bytes: delivered, not kept
	RefusedPacketSize     = "packet_size"     // a packet over max_packet_size: the client is closed
	RefusedHTTPTimeout    = "http_timeout"    // a websocket-port connection that did not finish its HTTP request or upgrade in time
	RefusedConnectTimeout = "connect_timeout" // a connection that sent no CONNECT within connect_timeout
)

// refusalKinds lists every kind, in the order status and $SYS show them.
var refusalKinds = [...]string{
	RefusedAuth, RefusedAuthRate, RefusedAuthBusy, RefusedACL, RefusedWill, RefusedClientID,
	RefusedTopicLevels, RefusedTopicLength, RefusedSubscriptions, RefusedPerAddress, RefusedKeepalive,
	RefusedMemory, RefusedMaxClients, RefusedSlowSubscriber, RefusedRetained, RefusedPacketSize,
	RefusedHTTPTimeout, RefusedConnectTimeout,
}

// refusalLogEvery is the least time between two log lines of one kind.
const refusalLogEvery = 10 * time.Second

type refusalCounter struct {
	n       atomic.Int64
	lastLog atomic.Int64 // unix nanoseconds of the last line
	logged  atomic.Int64 // n when the last line was written
}

type refusals struct {
	byKind map[string]*refusalCounter // fixed at start: read without locks

	// Refusals of publisher accounts are logged apart, per kind, account and
	// client ID, so that anonymous clients refused in bulk never hide a
	// publisher's problem from the operator.
	mu        sync.Mutex
	byAccount map[string]time.Time
}

func newRefusals() *refusals {
	r := &refusals{byKind: make(map[string]*refusalCounter, len(refusalKinds))}
	for _, k := range refusalKinds {
		r.byKind[k] = &refusalCounter{}
	}
	return r
}

// refuseAccount is refuse for a client authenticated as a publisher
// account: logged at most once per refusalLogEvery for each kind, account
// and client ID.
func (b *Broker) refuseAccount(account, id, kind, msg string, attrs ...any) {
	if account == "" {
		b.refuse(kind, msg, attrs...)
		return
	}
	b.refused.byKind[kind].n.Add(1)
	key := kind + "\x00" + account + "\x00" + id
	now := time.Now()
	r := b.refused
	r.mu.Lock()
	last, seen := r.byAccount[key]
	if !seen || now.Sub(last) >= refusalLogEvery {
		if r.byAccount == nil || len(r.byAccount) >= 4096 {
			r.byAccount = map[string]time.Time{}
		}
		r.byAccount[key] = now
	}
	r.mu.Unlock()
	if !seen || now.Sub(last) >= refusalLogEvery {
		b.log.Warn(msg, append([]any{"refused", kind, "account", account}, attrs...)...)
	}
}

// refuse counts a refusal of kind and logs it unless a line of this kind was
// written within refusalLogEvery. attrs must not carry payloads, and strings
// a client chose should go through short().
func (b *Broker) refuse(kind, msg string, attrs ...any) {
	c := b.refused.byKind[kind]
	n := c.n.Add(1)
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(refusalLogEvery) || !c.lastLog.CompareAndSwap(last, now) {
		return
	}
	prev := c.logged.Swap(n)
	head := []any{"refused", kind}
	if more := n - prev - 1; more > 0 && prev > 0 {
		head = append(head, "like_refusals_not_logged", more)
	}
	b.log.Warn(msg, append(head, attrs...)...)
}

// Refusals returns every kind's count since start.
func (b *Broker) Refusals() map[string]int64 {
	m := make(map[string]int64, len(refusalKinds))
	for _, k := range refusalKinds {
		m[k] = b.refused.byKind[k].n.Load()
	}
	return m
}

// short keeps a client-chosen string (a client ID, a topic) to a length a
// log line can afford.
func short(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "...(" + itoa(len(s)) + " bytes)"
}
