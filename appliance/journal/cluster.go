package journal

// Clustering. Several appliances share one journal stream, replicated on
// R of them: either their embedded nats-servers form a JetStream cluster
// over routes, or every appliance connects to an external NATS cluster.
// Every node writes its publishers' messages into the one stream and fans
// the whole stream out to its own clients with its own ordered consumer,
// so every subscriber on every node sees every message once, in the
// stream's order, under the stream's sequence numbers.
//
// What changes against a single appliance:
//   - A write goes to the stream leader, which may be another node and
//     may be changing (an election takes up to ~10 s): a write is retried
//     with the same Nats-Msg-Id for up to clusterRetryFor, so a retry of a
//     write that did land is dropped by the stream's dedupe window.
//   - A message that cannot be written is refused and goes nowhere: never
//     live to this node's clients only, which would break "every node sees
//     the same messages". While the stream has no quorum, writes are
//     refused at once (probed every second), and readers get nothing new.
//   - Gerrit events carry a Nats-Msg-Id made from their content, so the
//     same event published by every node's Gerrit source is stored once;
//     an event older than half the dedupe window (an events-log replay) is
//     first looked for in the journal (publishOld).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// ClusterConfig is the journal's part of [cluster].
type ClusterConfig struct {
	Name     string
	Listen   string     // route listen address (embedded)
	Routes   []*url.URL // the peers' route URLs (embedded)
	Replicas int
	// Mutual TLS for routes (embedded) or to the servers (external).
	TLSCert, TLSKey, TLSCA string
	// External NATS cluster: URLs and one kind of credentials.
	URLs                               []string
	CredsFile, User, PasswordFile, Tok string
	DedupeWindow                       time.Duration
}

// External reports whether the journal uses an external NATS cluster.
func (c *ClusterConfig) External() bool { return len(c.URLs) > 0 }

func clusterFrom(c *config.Config) *ClusterConfig {
	cl := c.Cluster
	if !cl.Enabled() {
		return nil
	}
	return &ClusterConfig{
		Name: cl.Name, Listen: cl.Listen, Routes: cl.PeerURLs(), Replicas: cl.Replicas,
		TLSCert: cl.TLSCert, TLSKey: cl.TLSKey, TLSCA: cl.TLSCA,
		URLs: cl.NATSURLs, CredsFile: cl.CredsFile, User: cl.User, PasswordFile: cl.PasswordFile, Tok: cl.TokenFile,
		DedupeWindow: cl.DedupeWindow.D(),
	}
}

// Timings of writes in a cluster. clusterRetryFor covers a stream leader
// election (measured here: up to ~10 s); a publisher waits that long at
// most before its publish is refused. probeEvery paces the check that
// ends fast refusal once the stream has a leader again.
const (
	clusterRetryFor = 12 * time.Second
	clusterRetryGap = 200 * time.Millisecond
	probeEvery      = time.Second
)

// ClusterName is the name every node's routes share.
const ClusterName = "firehose"

func replicas(cfg Config) int {
	if cfg.Cluster == nil {
		return 1
	}
	return cfg.Cluster.Replicas
}

func dedupeFor(cfg Config) time.Duration {
	if cfg.Cluster == nil {
		return dedupeWindow
	}
	return cfg.Cluster.DedupeWindow
}

// clusterState is what a clustered journal knows about the cluster.
type clusterState struct {
	external bool
	token    string // the embedded server's client port is loopback-only and needs it

	mu        sync.Mutex
	quorum    bool      // the stream took a write or answered a probe recently
	lostSince time.Time // when writes started failing
	lastErr   string
	refused   int64
	info      *jetstream.StreamInfo // the latest probe's answer
	started   bool                  // the streams exist and fan-out runs
	// lowDisk is why this node refuses its publishers for its disk (the
	// journal's reserve), "" while it has room; the probe clears it.
	lowDisk      string
	lowDiskSince time.Time
}

func (s *clusterState) ok(info *jetstream.StreamInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quorum, s.lostSince, s.lastErr = true, time.Time{}, ""
	if info != nil {
		s.info = info
	}
}

func (s *clusterState) down(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quorum || s.lostSince.IsZero() && s.started {
		s.lostSince = time.Now()
	}
	s.quorum = false
	s.lastErr = err.Error()
}

// ErrNoQuorum is why a clustered journal refuses a write.
var ErrNoQuorum = errors.New("the cluster's journal stream has no quorum")

// RefusalReason is the reason string a publisher's negative
// acknowledgement carries for a message the journal did not take.
func RefusalReason(err error) string {
	var r refusal
	switch {
	case errors.Is(err, ErrNoQuorum):
		return "not journaled: the cluster has no quorum; nothing was delivered, publish again later"
	case errors.As(err, &r) && errors.Is(err, errNoSpace):
		return "not journaled: this node's disk is nearly full; nothing was delivered, publish again later or through another node"
	case errors.As(err, &r):
		return "not journaled: the journal refused this message; nothing was delivered"
	}
	return "the journal could not keep this message; it went out live only"
}

// serverOptions' cluster part: routes, a loopback client port (nats-server
// starts routing only once its client listener runs) guarded by a random
// token, and the node's name as the server name.
func clusterServerOptions(o *server.Options, cl *ClusterConfig, token string) error {
	host, port, err := net.SplitHostPort(cl.Listen)
	if err != nil {
		return fmt.Errorf("journal: cluster.listen: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("journal: cluster.listen: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	o.ServerName = cl.Name
	o.DontListen = false
	o.Host, o.Port = "127.0.0.1", -1
	o.Authorization = token
	o.Cluster = server.ClusterOpts{Name: ClusterName, Host: host, Port: p, NoAdvertise: true}
	if cl.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cl.TLSCert, KeyFile: cl.TLSKey, CaFile: cl.TLSCA, Verify: true})
		if err != nil {
			return fmt.Errorf("journal: cluster TLS: %w", err)
		}
		o.Cluster.TLSConfig = tc
		o.Cluster.TLSTimeout = 5
	}
	o.Routes = cl.Routes
	return nil
}

// openCluster starts the embedded server as a cluster node, or connects to
// the external cluster. It does not wait for the cluster: Start does that
// in the background.
func (j *Journal) openCluster(cfg Config) error {
	cl := cfg.Cluster
	j.cl = &clusterState{external: cl.External(), token: randHex(16)}
	if !cl.External() {
		if err := clusterServerOptions(j.opts, cl, j.cl.token); err != nil {
			return err
		}
	} else {
		j.reserve = 0 // the store is on the NATS servers' disks
	}
	c, err := j.startServer()
	if err != nil {
		return err
	}
	j.conn.Store(c)
	return nil
}

// connectExternal connects to the external NATS cluster, reconnecting for
// ever (to any of its servers) when the connection drops.
func (j *Journal) connectExternal() (*conn, error) {
	cl := j.cfg.Cluster
	opts := []nats.Option{
		nats.Name("firehose " + cl.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}
	switch {
	case cl.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cl.CredsFile))
	case cl.User != "":
		pw, err := os.ReadFile(cl.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("journal: cluster.password_file: %w", err)
		}
		opts = append(opts, nats.UserInfo(cl.User, strings.TrimSpace(string(pw))))
	case cl.Tok != "":
		tok, err := os.ReadFile(cl.Tok)
		if err != nil {
			return nil, fmt.Errorf("journal: cluster.token_file: %w", err)
		}
		opts = append(opts, nats.Token(strings.TrimSpace(string(tok))))
	}
	if cl.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cl.TLSCA))
		if cl.TLSCert != "" {
			opts = append(opts, nats.ClientCert(cl.TLSCert, cl.TLSKey))
		}
	}
	nc, err := nats.Connect(strings.Join(cl.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("journal: connecting to %s: %w", strings.Join(cl.URLs, ", "), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &conn{nc: nc, js: js}, nil
}

// updateRoutes applies a changed peer list to the embedded server, which
// nats-server can do live. Called with cfgMu held.
func (j *Journal) updateRoutes(cfg Config) error {
	if j.cl == nil || j.cl.external || cfg.Cluster == nil {
		return nil
	}
	if reflect.DeepEqual(urlStrings(cfg.Cluster.Routes), urlStrings(j.opts.Routes)) {
		return nil
	}
	opts := j.opts.Clone()
	opts.Routes = cfg.Cluster.Routes
	if err := j.conn.Load().srv.ReloadOptions(opts); err != nil {
		return fmt.Errorf("journal: applying cluster.peers: %w", err)
	}
	j.opts = opts
	j.cfg.Cluster = cfg.Cluster
	return nil
}

func urlStrings(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
}

// startClustered waits until the streams exist (which needs the cluster's
// quorum), then starts fan-out as a single appliance does. It gives up
// only when ctx ends (Close).
func (j *Journal) startClustered(ctx context.Context) {
	logged := false
	for {
		// Short attempts: a request made before the meta leader is elected
		// waits for its whole timeout.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := j.ensureStreams(cctx, j.currentConfig())
		cancel()
		if err == nil {
			break
		}
		j.cl.down(err)
		if !logged {
			j.log.Warn("journal: waiting for the cluster to make or find the journal's streams (needs a quorum of nodes)", "error", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			close(j.fanDone)
			return
		case <-time.After(time.Second):
		}
	}
	for {
		err := j.startFanOut(ctx)
		if err == nil {
			j.cl.mu.Lock()
			j.cl.started = true
			j.cl.mu.Unlock()
			j.cl.ok(nil)
			j.log.Info("journal: clustered stream ready", "node", j.node)
			return
		}
		j.log.Warn("journal: starting fan-out", "error", err)
		select {
		case <-ctx.Done():
			close(j.fanDone)
			return
		case <-time.After(time.Second):
		}
	}
}

func (j *Journal) currentConfig() Config {
	j.cfgMu.Lock()
	defer j.cfgMu.Unlock()
	return j.cfg
}

// appendClustered writes m, retrying through a leader election with the
// same message ID; while the stream has no quorum it refuses at once.
func (j *Journal) appendClustered(m *nats.Msg, id string) (uint64, error) {
	j.cl.mu.Lock()
	quorum, reason, since := j.cl.quorum, j.cl.lastErr, j.cl.lostSince
	j.cl.mu.Unlock()
	// An election is not an outage: refuse at once only when writes have
	// failed for longer than one could take.
	if !quorum && (since.IsZero() || time.Since(since) > clusterRetryFor) {
		return 0, j.refuse(fmt.Errorf("%w: %w (%s)", ErrNotJournaled, ErrNoQuorum, reason))
	}
	if err := j.space.check(j.dir, j.reserve, len(m.Data)+len(m.Subject)+256); err != nil {
		j.cl.mu.Lock()
		if j.cl.lowDisk == "" {
			j.cl.lowDiskSince = time.Now()
		}
		j.cl.lowDisk = err.Error()
		j.cl.mu.Unlock()
		return 0, j.refuse(fmt.Errorf("%w: %w", ErrNotJournaled, err))
	}
	seq, spent, err := j.storeAsking(m, id, clusterRetryFor, func(err error) (time.Duration, bool) {
		var apiErr *jetstream.APIError
		// The stream answered and said no (a limit): not a quorum matter.
		refused := errors.As(err, &apiErr) && apiErr.Code != 503 && !inProcess(err)
		return clusterRetryGap, !refused
	})
	switch {
	case err == nil:
		return seq, nil
	case spent:
		j.cl.down(err)
		return 0, j.refuse(fmt.Errorf("%w: %w (%v)", ErrNotJournaled, ErrNoQuorum, err))
	}
	return 0, j.refuse(fmt.Errorf("%w: %w", ErrNotJournaled, err))
}

// AppendFrom is Append for a QoS 1 or 2 publish from an MQTT client. In a
// cluster the message ID is made from the client ID, the packet ID, the
// topic and the payload: a publisher that loses its node before the
// PUBACK and resends the message (DUP) through another node within the
// dedupe window has it stored once. The price: a client that sends the
// same payload to the same topic under the same packet ID within the
// window (packet IDs are reused after 65,535 publishes) has the second
// one taken for a resend.
func (j *Journal) AppendFrom(client string, packetID uint16, t string, payload []byte, retain bool, qos byte) (uint64, error) {
	if j.cl == nil {
		return j.Append(t, payload, retain, qos)
	}
	m, err := j.message(t, payload, retain, qos)
	if err != nil {
		return 0, j.refuse(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00", client, packetID, t)
	h.Write(payload)
	return j.appendClustered(m, "mqtt-"+hex.EncodeToString(h.Sum(nil)[:16]))
}

// refusal is a write a clustered journal refused: the message was
// delivered nowhere (DeliverLive does nothing in a cluster).
type refusal struct{ error }

func (r refusal) Unwrap() error { return r.error }

// refuse counts a refused write and marks its error as a refusal.
func (j *Journal) refuse(err error) error {
	j.cl.mu.Lock()
	j.cl.refused++
	j.cl.mu.Unlock()
	return refusal{err}
}

// probe asks the stream leader for the stream's state: an answer with a
// leader ends fast refusal. The answer is kept for status.
func (j *Journal) probe() {
	j.cl.mu.Lock()
	low := j.cl.lowDisk != ""
	j.cl.mu.Unlock()
	if free, err := diskFree(j.dir); low && err == nil && free > j.reserve {
		j.cl.mu.Lock()
		j.cl.lowDisk = ""
		j.cl.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := j.js().Stream(ctx, StreamName)
	if err != nil {
		j.cl.down(err)
		return
	}
	info := s.CachedInfo()
	if info.Cluster != nil && info.Cluster.Leader == "" {
		j.cl.down(errors.New("the stream has no leader"))
		return
	}
	j.cl.mu.Lock()
	started := j.cl.started
	j.cl.mu.Unlock()
	if !started {
		// startClustered declares the quorum once fan-out runs.
		j.cl.mu.Lock()
		j.cl.info = info
		j.cl.mu.Unlock()
		return
	}
	j.cl.ok(info)
	_ = j.checkFanStall(info.State.LastSeq, time.Now())
}

// transient runs f again while it fails the way a cluster fails for a
// moment (a node just restarted, interest not yet propagated over the
// routes, an election): for up to 10 s, and only in a cluster.
func (j *Journal) transient(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil || j.cl == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, nats.ErrNoResponders) && !(errors.As(err, &apiErr) && apiErr.Code == 503) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(clusterRetryGap):
		}
	}
}

// gerritMsgID names a Gerrit event by its content, so the same event
// from every node's source is stored once.
func gerritMsgID(subj string, payload []byte) string {
	h := sha256.New()
	h.Write([]byte(subj))
	h.Write([]byte{0})
	h.Write(payload)
	return "gerrit-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// publishClustered journals an event from this node's Gerrit source. The
// content ID dedupes copies from other nodes within the dedupe window; an
// event created longer ago than half of it (replayed from the events-log
// after a node or its connection was down) is first looked for among the
// journal's messages on its topic since its creation, so a replay of any
// length within the journal's retention adds nothing twice. An error makes
// the source keep the event and try again.
func (j *Journal) publishClustered(t string, payload []byte, retain bool, qos byte) error {
	subj := Subject(t, retain)
	if created, ok := eventCreated(payload); ok && time.Since(created) > dedupeFor(j.currentConfig())/2 {
		found, err := j.inJournal(t, created.Add(-2*time.Second), payload)
		if err != nil {
			return err
		}
		if found {
			return nil
		}
	}
	m, err := j.message(t, payload, retain, qos)
	if err != nil {
		return err
	}
	_, err = j.appendClustered(m, gerritMsgID(subj, payload))
	return err
}

// maxOldScan bounds the look-up of one replayed event.
const maxOldScan = 20000

// inJournal reports whether the journal holds payload on topic t at or
// after since.
func (j *Journal) inJournal(t string, since time.Time, payload []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errFound := errors.New("found")
	err := j.History(ctx, t, From{Time: since}, maxOldScan, func(m Message) error {
		if m.Topic == t && string(m.Payload) == string(payload) {
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// eventCreated is a Gerrit event's eventCreatedOn (seconds since epoch).
func eventCreated(payload []byte) (time.Time, bool) {
	var ev struct {
		Created json.Number `json:"eventCreatedOn"`
	}
	if json.Unmarshal(payload, &ev) != nil {
		return time.Time{}, false
	}
	n, err := ev.Created.Int64()
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// clusterStatus reports the cluster as this node sees it.
func (j *Journal) clusterStatus() *apitype.ClusterStatus {
	cfg := j.currentConfig()
	cs := &apitype.ClusterStatus{Node: j.node, Mode: "embedded", Replicas: cfg.Cluster.Replicas}
	if j.cl.external {
		cs.Mode = "external"
	}
	j.cl.mu.Lock()
	cs.Quorum, cs.LastError, cs.Refused = j.cl.quorum, j.cl.lastErr, j.cl.refused
	if !j.cl.quorum {
		cs.QuorumLostSince = timePtr(j.cl.lostSince)
	}
	info := j.cl.info
	j.cl.mu.Unlock()
	if info != nil {
		if cs.Quorum && info.Cluster != nil {
			cs.StreamLeader = info.Cluster.Leader
			for _, r := range info.Cluster.Replicas {
				cs.StreamReplicas = append(cs.StreamReplicas, apitype.ClusterReplica{
					Name: r.Name, Current: r.Current, Offline: r.Offline, ActiveSeconds: r.Active.Seconds(), Lag: r.Lag,
				})
			}
		}
		if last := info.State.LastSeq; last > j.lastSeen.Load() {
			cs.ConsumerLag = last - j.lastSeen.Load()
		}
	}
	if c := j.conn.Load(); c != nil && c.srv != nil {
		cs.Peers, cs.MetaLeader = peers(c.srv, cfg.Cluster)
	} else if c != nil {
		p := apitype.ClusterPeer{Address: c.nc.ConnectedUrlRedacted(), Connected: c.nc.IsConnected()}
		if p.Connected {
			p.Name = c.nc.ConnectedServerName()
		}
		cs.Peers = []apitype.ClusterPeer{p}
	}
	return cs
}

// peers lists the other nodes: by name those the meta group knows or a
// route connects, by address the configured peers not connected. A route
// to a configured peer is marked so by nats-server (IsConfigured) but may
// show the peer's ephemeral port, so a configured address not connected is
// known only by elimination: when it cannot be told which of several it
// is, one entry names the candidates.
func peers(srv *server.Server, cl *ClusterConfig) ([]apitype.ClusterPeer, string) {
	byName := map[string]*apitype.ClusterPeer{}
	var order []string
	add := func(name string) *apitype.ClusterPeer {
		if p, ok := byName[name]; ok {
			return p
		}
		p := &apitype.ClusterPeer{Name: name}
		byName[name] = p
		order = append(order, name)
		return p
	}
	configured := map[string]bool{} // names with a route from our peer list
	seenAddr := map[string]bool{}
	if rz, err := srv.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			addr := net.JoinHostPort(r.IP, strconv.Itoa(r.Port))
			seenAddr[addr] = true
			if r.RemoteName == "" {
				continue
			}
			p := add(r.RemoteName)
			p.Connected = true
			if r.IsConfigured {
				configured[r.RemoteName] = true
				if r.DidSolicit && p.Address == "" {
					p.Address = addr
				}
			}
		}
	}
	leader := ""
	if jsz, err := srv.Jsz(nil); err == nil && jsz.Meta != nil {
		leader = jsz.Meta.Leader
		for _, r := range jsz.Meta.Replicas {
			if r.Name == srv.Name() {
				continue
			}
			p := add(r.Name)
			if !p.Connected {
				p.LastSeenSeconds = r.Active.Seconds()
			}
		}
	}
	out := make([]apitype.ClusterPeer, 0, len(order)+1)
	for _, n := range order {
		out = append(out, *byName[n])
	}
	// Peers known by name but not connected are configured peers that
	// went away: they are not counted again by address.
	missing := len(cl.Routes) - len(configured)
	for _, p := range out {
		if !p.Connected {
			missing--
		}
	}
	if missing > 0 {
		var candidates []string
		for _, u := range cl.Routes {
			if !seenAddr[u.Host] {
				candidates = append(candidates, u.Host)
			}
		}
		switch {
		case len(candidates) == missing:
			for _, c := range candidates {
				out = append(out, apitype.ClusterPeer{Address: c})
			}
		case len(candidates) > missing:
			out = append(out, apitype.ClusterPeer{Address: fmt.Sprintf("%d of %s", missing, strings.Join(candidates, ", "))})
		}
	}
	return out, leader
}

// clusterProblems are the status reasons of a clustered journal.
func (j *Journal) clusterProblems() []string {
	var out []string
	j.cl.mu.Lock()
	quorum, since, lastErr, started := j.cl.quorum, j.cl.lostSince, j.cl.lastErr, j.cl.started
	lowDisk, lowSince := j.cl.lowDisk, j.cl.lowDiskSince
	j.cl.mu.Unlock()
	if lowDisk != "" {
		out = append(out, fmt.Sprintf("journal: this node refuses its publishers since %s (%s): nothing they send here is journaled or delivered; the other nodes go on, and this node still fans out what they journal", lowSince.UTC().Format(time.RFC3339), lowDisk))
	}
	if !quorum {
		what := "since " + since.UTC().Format(time.RFC3339)
		if !started {
			what = "since start (waiting for the cluster to make or find the journal's streams)"
		}
		out = append(out, fmt.Sprintf("cluster: the journal's stream has no quorum %s (%s): publishes are refused (MQTT 5: PUBACK/PUBREC 0x80 with a reason string; MQTT 3.1.1: a QoS 1/2 publisher is disconnected, QoS 0 is dropped), Gerrit events wait in their sources' queues, subscribers stay connected and get nothing new, history reads fail; retained messages already here are still served", what, lastErr))
	}
	if c := j.conn.Load(); c != nil && c.srv != nil {
		ps, _ := peers(c.srv, j.currentConfig().Cluster)
		for _, p := range ps {
			if !p.Connected {
				out = append(out, fmt.Sprintf("cluster: peer %s not connected", orAddr(p)))
			}
		}
	}
	return out
}

func orAddr(p apitype.ClusterPeer) string {
	switch {
	case p.Name != "" && p.Address != "":
		return p.Name + " (" + p.Address + ")"
	case p.Name != "":
		return p.Name
	}
	return p.Address
}
