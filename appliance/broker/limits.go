package broker

import (
	"net"
	"net/netip"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/firehose/firehose/appliance/config"
)

// limits is one config generation's [limits], in the form the hooks read.
// It is replaced whole on reload.
type limits struct {
	config.Limits
	exempt       []netip.Prefix
	maxKeepalive uint16 // seconds
	anonExpiry   uint32 // seconds
}

func newLimits(l config.Limits) *limits {
	return &limits{
		Limits:       l,
		exempt:       l.Exempt(),
		maxKeepalive: uint16(l.MaxKeepalive.D() / time.Second),
		anonExpiry:   uint32(l.AnonymousSessionExpiry.D() / time.Second),
	}
}

func (l *limits) exempted(ip netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// addrOf is the IP address of a connection's peer (invalid when it is not
// IP, such as a pipe in tests).
func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap().WithZone("")
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// keyOf is what per-address limits count by: an IPv4 address, or the /64 an
// IPv6 address is in (a subscriber line or a host usually has a whole /64, so
// counting single IPv6 addresses would limit nothing).
func keyOf(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// memWatch tells whether the process is over memory_limit. It samples the Go
// runtime's own accounting (what it holds from the OS, less what it has
// returned), which costs about a microsecond and stops nothing, at most once
// per memSampleEvery.
type memWatch struct {
	limit atomic.Int64 // bytes; 0 = none
	last  atomic.Int64 // unix nanoseconds of the last sample
	used  atomic.Int64
	over  atomic.Bool
}

const memSampleEvery = 100 * time.Millisecond

var memSamples = []string{"/memory/classes/total:bytes", "/memory/classes/heap/released:bytes"}

// setLimit sets memory_limit; auto is half the host's memory, as TuneGC
// gives the garbage collector.
func (m *memWatch) setLimit(z config.Size) {
	n := int64(z)
	if z == config.SizeAuto {
		n = memTotal() / 2
	}
	m.limit.Store(max(n, 0))
	m.last.Store(0)
}

func (m *memWatch) overLimit() bool {
	limit := m.limit.Load()
	if limit == 0 {
		return false
	}
	now := time.Now().UnixNano()
	last := m.last.Load()
	if now-last >= int64(memSampleEvery) && m.last.CompareAndSwap(last, now) {
		s := make([]metrics.Sample, len(memSamples))
		for i, name := range memSamples {
			s[i].Name = name
		}
		metrics.Read(s)
		used := int64(s[0].Value.Uint64()) - int64(s[1].Value.Uint64())
		m.used.Store(used)
		m.over.Store(used > limit)
	}
	return m.over.Load()
}
