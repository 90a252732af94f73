package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleset is a plan turned into kernel objects, each with its nft text.
type ruleset struct {
	table *nftables.Table
	chain *nftables.Chain
	sets  []namedSet // declared before the chain
	rules []rule
}

type namedSet struct {
	set  *nftables.Set
	text string // the set's declaration body, one item per line
}

// rule is one line of the input chain: what nft prints and what netlink gets.
type rule struct {
	text  string // nft syntax, without the comment
	tag   string // the comment that identifies this exact rule in the kernel
	exprs []expr.Any
	anon  []anonSet // anonymous sets the rule refers to, sent just before it
}

type anonSet struct {
	set   *nftables.Set
	elems []nftables.SetElement
}

// ruleComment tags each rule with a digest of its own text. The self-heal
// check compares these tags to decide whether the kernel still holds exactly
// the rules the config implies, without comparing expressions the kernel may
// normalise.
func ruleComment(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "firehose:" + hex.EncodeToString(sum[:4])
}

// builder hands out set IDs, which need only be unique within one batch.
type builder struct {
	rs      *ruleset
	nextID  uint32
	pending []anonSet // made by ports for the rule being built
}

func (b *builder) id() uint32 { b.nextID++; return b.nextID }

// build turns a plan into the table the kernel should hold. It touches no
// kernel state, so Render and tests can use it anywhere.
func (p *plan) build() *ruleset {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	policy := nftables.ChainPolicyDrop
	rs := &ruleset{
		table: t,
		chain: &nftables.Chain{
			Name:     "input",
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  nftables.ChainHookInput,
			Priority: nftables.ChainPriorityFilter,
			Policy:   &policy,
		},
	}
	b := &builder{rs: rs}

	b.add("ct state established,related accept", ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept())
	b.add("ct state invalid drop", ctState(expr.CtStateBitINVALID), drop())
	// The loopback device is ifindex 1 in every network namespace.
	b.add(`iif "lo" accept`, cmpMeta(expr.MetaKeyIIF, binaryutil.NativeEndian.PutUint32(1)), accept())
	b.add("meta l4proto icmp accept", cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_ICMP}), accept())
	// Without ICMPv6 there is no neighbour discovery, so no IPv6 at all.
	b.add("meta l4proto ipv6-icmp accept", cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_ICMPV6}), accept())
	// DHCPv6 replies come from a link-local server to a port conntrack has
	// not seen as a reply; dropping them loses the address at lease renewal.
	b.add("ip6 daddr fe80::/64 udp dport 546 accept",
		cmpMeta(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV6}),
		[]expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 8},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0}},
		},
		cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_UDP}),
		dport(546), accept())

	if len(p.limited) > 0 {
		for _, fam := range []struct {
			set    string
			key    nftables.SetDatatype
			nfp    byte
			ip     string
			off, n uint32
		}{
			{"flood4", nftables.TypeIPAddr, unix.NFPROTO_IPV4, "ip", 12, 4},
			{"flood6", nftables.TypeIP6Addr, unix.NFPROTO_IPV6, "ip6", 8, 16},
		} {
			set := b.namedFloodSet(fam.set, fam.key, p)
			match, text := b.ports(p.limited)
			unit := limitUnit(p.rate.Per)
			b.add(fmt.Sprintf("tcp dport %s ct state new update @%s { %s saddr limit rate over %d/%s burst %d packets } drop",
				text, fam.set, fam.ip, p.rate.Count, unitName(unit), p.rate.Count),
				cmpMeta(expr.MetaKeyNFPROTO, []byte{fam.nfp}),
				cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}),
				match,
				ctState(expr.CtStateBitNEW),
				[]expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.off, Len: fam.n},
					&expr.Dynset{
						SrcRegKey: 1,
						SetName:   set.Name,
						SetID:     set.ID,
						Operation: unix.NFT_DYNSET_OP_UPDATE,
						// A stateful limit per element: the expression
						// matches only once this source is over its rate.
						Exprs: []expr.Any{&expr.Limit{
							Type:  expr.LimitTypePkts,
							Rate:  uint64(p.rate.Count),
							Over:  true,
							Unit:  unit,
							Burst: uint32(p.rate.Count),
						}},
					},
				},
				drop())
		}
	}
	if len(p.tcp) > 0 {
		match, text := b.ports(p.tcp)
		b.add("tcp dport "+text+" accept", cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}), match, accept())
	}
	if len(p.udp) > 0 {
		match, text := b.ports(p.udp)
		b.add("udp dport "+text+" accept", cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_UDP}), match, accept())
	}
	// The cluster's routes: from the configured peers only.
	for _, fam := range []struct {
		ips    []net.IP
		key    nftables.SetDatatype
		nfp    byte
		ip     string
		off, n uint32
	}{
		{p.peers4, nftables.TypeIPAddr, unix.NFPROTO_IPV4, "ip", 12, 4},
		{p.peers6, nftables.TypeIP6Addr, unix.NFPROTO_IPV6, "ip6", 8, 16},
	} {
		if p.route == 0 || len(fam.ips) == 0 {
			continue
		}
		match, text := b.addrs(fam.ips, fam.key, fam.off, fam.n)
		b.add(fmt.Sprintf("%s saddr %s tcp dport %d accept", fam.ip, text, p.route),
			cmpMeta(expr.MetaKeyNFPROTO, []byte{fam.nfp}), match,
			cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}), dport(p.route), accept())
	}
	return rs
}

// addrs matches the source address against ips: a comparison for one, an
// anonymous set for several. It returns the nft text too.
func (b *builder) addrs(ips []net.IP, key nftables.SetDatatype, off, n uint32) ([]expr.Any, string) {
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
	if len(ips) == 1 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(ips[0])}}, ips[0].String()
	}
	s := &nftables.Set{
		Table:     b.rs.table,
		ID:        b.id(),
		Name:      "__set%d",
		Anonymous: true,
		Constant:  true,
		KeyType:   key,
	}
	elems := make([]nftables.SetElement, len(ips))
	words := make([]string, len(ips))
	for i, ip := range ips {
		elems[i] = nftables.SetElement{Key: []byte(ip)}
		words[i] = ip.String()
	}
	b.pending = append(b.pending, anonSet{set: s, elems: elems})
	return []expr.Any{load, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}},
		"{ " + strings.Join(words, ", ") + " }"
}

// add appends one rule; parts are concatenated in order. Anonymous sets made
// by b.ports since the previous rule belong to this one.
func (b *builder) add(text string, parts ...[]expr.Any) {
	r := rule{text: text, tag: ruleComment(text)}
	for _, p := range parts {
		r.exprs = append(r.exprs, p...)
	}
	r.anon, b.pending = b.pending, nil
	b.rs.rules = append(b.rs.rules, r)
}

func (b *builder) namedFloodSet(name string, key nftables.SetDatatype, p *plan) *nftables.Set {
	s := &nftables.Set{
		Table:      b.rs.table,
		ID:         b.id(),
		Name:       name,
		KeyType:    key,
		Dynamic:    true,
		HasTimeout: true,
		Timeout:    floodTimeout(p.rate),
		Size:       floodSize,
	}
	b.rs.sets = append(b.rs.sets, namedSet{set: s, text: fmt.Sprintf(
		"type %s\nsize %d\nflags dynamic,timeout\ntimeout %s", key.Name, floodSize, nftDuration(s.Timeout))})
	return s
}

// ports matches the transport destination port against ps: a comparison for
// one port, an anonymous set for several. It returns the nft text too.
func (b *builder) ports(ps []int) ([]expr.Any, string) {
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	if len(ps) == 1 {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(ps[0]))}},
			strconv.Itoa(ps[0])
	}
	s := &nftables.Set{
		Table:     b.rs.table,
		ID:        b.id(),
		Name:      "__set%d", // the kernel picks the number
		Anonymous: true,
		Constant:  true,
		KeyType:   nftables.TypeInetService,
	}
	elems := make([]nftables.SetElement, len(ps))
	words := make([]string, len(ps))
	for i, p := range ps {
		elems[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(uint16(p))}
		words[i] = strconv.Itoa(p)
	}
	b.pending = append(b.pending, anonSet{set: s, elems: elems})
	return []expr.Any{load, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}},
		"{ " + strings.Join(words, ", ") + " }"
}

func dport(p int) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(p))},
	}
}

// ctState matches when the connection's state is any of the bits.
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func cmpMeta(k expr.MetaKey, v []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: k, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v},
	}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }
func drop() []expr.Any   { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

// limitUnit maps a config rate period to the kernel's; 0 for any other.
func limitUnit(per time.Duration) expr.LimitTime {
	switch per {
	case time.Second:
		return expr.LimitTimeSecond
	case time.Minute:
		return expr.LimitTimeMinute
	case time.Hour:
		return expr.LimitTimeHour
	}
	return 0
}

func unitName(u expr.LimitTime) string {
	switch u {
	case expr.LimitTimeSecond:
		return "second"
	case expr.LimitTimeMinute:
		return "minute"
	}
	return "hour"
}

// nftDuration writes d the way nft prints set timeouts.
func nftDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return strconv.Itoa(int(d/time.Second)) + "s"
}
