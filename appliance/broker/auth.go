package broker

import (
	"crypto/sha256"
	"errors"
	"hash/maphash"
	"net"
	"net/netip"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/topic"
)

// accounts is the publisher table of one config generation. It is replaced
// whole on reload and read without locks.
type accounts struct {
	byName map[string]*account
	// dummy is a hash that no password matches, at the highest cost of the
	// accounts' hashes: an unknown username is checked against it, so that
	// it costs what a known one costs and timing does not tell them apart.
	dummy []byte
}

type account struct {
	hash    []byte
	filters []string
}

func newAccounts(ps []config.Publisher) *accounts {
	a := &accounts{byName: make(map[string]*account, len(ps))}
	cost := bcrypt.MinCost
	for _, p := range ps {
		a.byName[p.Username] = &account{hash: []byte(p.PasswordHash), filters: append([]string(nil), p.Topics...)}
		if c, err := bcrypt.Cost([]byte(p.PasswordHash)); err == nil && c > cost {
			cost = c
		}
	}
	a.dummy = dummyHash(cost)
	return a
}

var dummies sync.Map // cost -> []byte

func dummyHash(cost int) []byte {
	if h, ok := dummies.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("firehose: no account has this password"), cost)
	if err != nil {
		panic(err) // only for a cost out of range, which config validation refuses
	}
	dummies.Store(cost, h)
	return h
}

func (a *account) mayPublish(t string) bool {
	for _, f := range a.filters {
		if topic.Match(f, t) {
			return true
		}
	}
	return false
}

// passwords checks publishers' passwords so that checking cannot be turned
// against the broker. bcrypt costs tens of milliseconds by design, so at
// most bcryptSlots checks run at a time, and a CONNECT waits for a slot at
// most auth_wait (less if its connect_timeout ends sooner) and gives up as
// soon as its client has gone. A password already verified against a hash is
// remembered (as its SHA-256), so a reconnecting publisher skips bcrypt and
// every limit. Failures are rate limited per source address and per
// username (auth_failures_per_address, auth_failures_per_account); past
// either, a CONNECT is refused before any bcrypt.
type passwords struct {
	slots    chan struct{}
	verified sync.Map // username + "\x00" + hash -> sha256(password)

	mu      sync.Mutex
	perAddr map[netip.Prefix]*bucket
	perUser map[string]*bucket // accounts
	// Unknown usernames share a fixed table of buckets, so that they are
	// limited like accounts without a map an attacker could grow.
	unknown [64]bucket
	seed    maphash.Seed
}

const (
	bcryptSlots = 2
	// maxAddrBuckets bounds the per-address failure table; past it new
	// addresses are not tracked (the per-username limit still holds).
	maxAddrBuckets = 1 << 16
	slotPoll       = 50 * time.Millisecond
)

func (p *passwords) init() {
	p.slots = make(chan struct{}, bcryptSlots)
	p.perAddr = map[netip.Prefix]*bucket{}
	p.perUser = map[string]*bucket{}
	p.seed = maphash.MakeSeed()
}

// bucket is a token bucket of failures: full at rate.Count, refilled at
// rate.Count per rate.Per; below one token, checks are refused.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(r config.Rate, now time.Time) {
	capacity := float64(r.Count)
	if b.last.IsZero() {
		b.tokens, b.last = capacity, now
		return
	}
	b.tokens = min(capacity, b.tokens+now.Sub(b.last).Seconds()*capacity/r.Per.Seconds())
	b.last = now
}

// buckets returns the buckets a check from key for user counts against,
// with p.mu held; nil for a limit that is off or exempt.
func (p *passwords) buckets(lim *limits, ip netip.Addr, user string, known bool, now time.Time) (addr, name *bucket) {
	if r := lim.AuthFailuresPerAddress; !r.IsZero() && ip.IsValid() && !lim.exempted(ip) {
		key := keyOf(ip)
		addr = p.perAddr[key]
		if addr == nil && len(p.perAddr) < maxAddrBuckets {
			addr = &bucket{}
			p.perAddr[key] = addr
		}
		if addr != nil {
			addr.refill(r, now)
		}
	}
	if r := lim.AuthFailuresPerAccount; !r.IsZero() && !lim.exempted(ip) {
		if known {
			name = p.perUser[user]
			if name == nil {
				name = &bucket{}
				p.perUser[user] = name
			}
		} else {
			name = &p.unknown[maphash.String(p.seed, user)%uint64(len(p.unknown))]
		}
		name.refill(r, now)
	}
	return addr, name
}

// sweep forgets buckets that have refilled, so the tables hold only
// addresses and names that failed recently.
func (p *passwords) sweep(now time.Time, lim *limits) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, b := range p.perAddr {
		if r := lim.AuthFailuresPerAddress; r.IsZero() || now.Sub(b.last) > r.Per {
			delete(p.perAddr, k)
		}
	}
	for k, b := range p.perUser {
		if r := lim.AuthFailuresPerAccount; r.IsZero() || now.Sub(b.last) > r.Per {
			delete(p.perUser, k)
		}
	}
}

var errClientGone = errors.New("client left while waiting")

// checkPassword decides a CONNECT carrying a username: nil and the account,
// or the error that refused it (the CONNACK is sent).
func (h *access) checkPassword(cl *mqtt.Client, g *guardedConn, user, pass []byte, lim *limits) (*account, error) {
	p := &h.pw
	accts := h.accounts.Load()
	acct := accts.byName[string(user)]
	digest := sha256.Sum256(pass)
	if acct != nil {
		if d, ok := p.verified.Load(string(user) + "\x00" + string(acct.hash)); ok && d.([32]byte) == digest {
			return acct, nil
		}
	}
	var ip netip.Addr
	if g != nil && g.track != nil {
		ip = g.track.ip
	}
	now := time.Now()
	p.mu.Lock()
	addrB, nameB := p.buckets(lim, ip, string(user), acct != nil, now)
	limited := (addrB != nil && addrB.tokens < 1) || (nameB != nil && nameB.tokens < 1)
	p.mu.Unlock()
	if limited {
		return nil, h.refuseConnect(cl, refuseAuthRate, "", RefusedAuthRate, "CONNECT refused: too many failed password checks (auth_failures_per_address, auth_failures_per_account)")
	}

	deadline := now.Add(lim.AuthWait.D())
	if g != nil && !g.acceptedAt.IsZero() {
		// The connection's own deadline (connect_timeout) ends the wait too.
		if end := g.acceptedAt.Add(time.Duration(h.b.connectTimeout.Load()) - slotPoll); end.Before(deadline) {
			deadline = end
		}
	}
	if err := p.acquire(cl.Net.Conn, deadline); err != nil {
		msg := "CONNECT refused: no password-check slot within auth_wait"
		if err == errClientGone {
			msg = "password check abandoned: the client left while waiting for a slot"
		}
		return nil, h.refuseConnect(cl, refuseBusy, "", RefusedAuthBusy, msg)
	}
	hash := accts.dummy
	if acct != nil {
		hash = acct.hash
	}
	err := bcrypt.CompareHashAndPassword(hash, pass)
	<-p.slots
	if err != nil || acct == nil {
		p.mu.Lock()
		for _, b := range []*bucket{addrB, nameB} {
			if b != nil {
				b.tokens = max(0, b.tokens-1)
			}
		}
		p.mu.Unlock()
		return nil, h.refuseConnect(cl, refuseAuth, "", RefusedAuth, "CONNECT refused: bad username or password")
	}
	p.verified.Store(string(user)+"\x00"+string(acct.hash), digest)
	return acct, nil
}

// acquire takes a bcrypt slot, giving up at deadline or when the client at
// the far end of conn has gone.
func (p *passwords) acquire(conn net.Conn, deadline time.Time) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	default:
	}
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	poll := time.NewTicker(slotPoll)
	defer poll.Stop()
	for {
		select {
		case p.slots <- struct{}{}:
			return nil
		case <-poll.C:
			if conn != nil && peerGone(conn) {
				return errClientGone
			}
		case <-timeout.C:
			return errors.New("timed out")
		}
	}
}
