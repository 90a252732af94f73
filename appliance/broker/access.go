package broker

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/topic"
)

// accounts is the publisher table of one config generation. It is replaced
// whole on reload and read without locks.
type accounts map[string]*account

type account struct {
	hash    []byte
	filters []string
}

func newAccounts(ps []config.Publisher) accounts {
	a := make(accounts, len(ps))
	for _, p := range ps {
		a[p.Username] = &account{hash: []byte(p.PasswordHash), filters: append([]string(nil), p.Topics...)}
	}
	return a
}

func (a *account) mayPublish(t string) bool {
	for _, f := range a.filters {
		if topic.Match(f, t) {
			return true
		}
	}
	return false
}

// access is the broker's only auth and ACL hook. mochi ORs hooks together and
// its ledger hook lets a wrong password through when a catch-all rule exists,
// so the whole access model lives here: anyone connects anonymously and reads
// everything; a publisher account, password checked, may publish only under
// its own filters; a username that is no account is refused.
type access struct {
	mqtt.HookBase
	b        *Broker
	accounts atomic.Pointer[accounts]

	// bcrypt costs tens of milliseconds by design: verify at most two at a
	// time so a reconnect storm cannot eat every core, and remember passwords
	// already verified against a hash so reconnects skip it.
	bcryptSlots chan struct{}
	verified    sync.Map // username + "\x00" + hash -> sha256(password)
}

func (h *access) ID() string { return "firehose-access" }

func (h *access) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnPublishDropped, mqtt.OnClientExpired, mqtt.OnSubscribe,
	}, []byte{b})
}

// OnConnect enforces max_clients, read live so a reload can change it.
func (h *access) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if atomic.LoadInt64(&h.b.server.Info.ClientsConnected) >= h.b.maxClients.Load() {
		h.b.refusedFull.Add(1)
		code := packets.ErrServerUnavailable
		if cl.Properties.ProtocolVersion == 5 {
			code = packets.ErrServerBusy
		}
		_ = h.b.server.SendConnack(cl, code, false, nil)
		return code
	}
	return nil
}

func (h *access) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user, pass := pk.Connect.Username, pk.Connect.Password
	if len(user) == 0 {
		return len(pass) == 0 // anonymous
	}
	acct := (*h.accounts.Load())[string(user)]
	if acct == nil {
		h.b.refusedAuth.Add(1)
		return false
	}
	key := string(user) + "\x00" + string(acct.hash)
	digest := sha256.Sum256(pass)
	if d, ok := h.verified.Load(key); ok && d.([32]byte) == digest {
		return true
	}
	h.bcryptSlots <- struct{}{}
	err := bcrypt.CompareHashAndPassword(acct.hash, pass)
	<-h.bcryptSlots
	if err != nil {
		h.b.refusedAuth.Add(1)
		return false
	}
	h.verified.Store(key, digest)
	return true
}

// OnACLCheck runs for every delivery to every subscriber (write == false):
// that path must stay a single branch.
func (h *access) OnACLCheck(cl *mqtt.Client, t string, write bool) bool {
	if !write {
		return true
	}
	if len(cl.Properties.Username) == 0 {
		h.b.refusedPublish.Add(1)
		return false
	}
	acct := (*h.accounts.Load())[string(cl.Properties.Username)]
	if acct == nil || !acct.mayPublish(t) {
		h.b.refusedPublish.Add(1)
		return false
	}
	return true
}

// OnSubscribe grants anonymous subscribers QoS 0 (the SUBACK says so, as
// MQTT allows). Delivering at QoS 1 takes the subscriber's lock on the
// publishing goroutine (mochi's NextPacketID), and that lock is held while a
// write to the subscriber blocks: one stalled QoS 1 subscriber would stall
// every delivery behind it. Publisher accounts are trusted with QoS 1.
func (h *access) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if len(cl.Properties.Username) != 0 {
		return pk
	}
	filters := make(packets.Subscriptions, len(pk.Filters))
	copy(filters, pk.Filters)
	for i := range filters {
		filters[i].Qos = 0
	}
	pk.Filters = filters
	return pk
}

func (h *access) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.b.noteDrop(cl)
}

// OnClientExpired drops an expired session's subscriptions too, so fan-out
// does not keep walking subscribers that will never come back.
func (h *access) OnClientExpired(cl *mqtt.Client) {
	h.b.server.UnsubscribeClient(cl)
}
