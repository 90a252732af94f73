// Package journal owns the journal: every message the appliance accepts for
// publication, numbered and timed, kept on disk for a configured age and
// size, in the order it is fanned out. It is a NATS JetStream stream on a
// nats-server embedded in the daemon (no port: an in-process connection),
// so that several appliances can later share the one stream.
//
// It owns the topic/subject mapping (subject.go), writing (Append, Publish),
// the one consumer that feeds the broker's fan-out in journal order
// (Start), retained messages kept across restarts (retained.go), reading
// history and following live for the replay API (read.go), and what
// happens when the disk is full (live fan-out goes on; a gap marker is
// written once the journal can write again).
package journal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firehose/firehose/appliance/config"
)

// Stream names. The issue that clusters appliances shares these streams
// between nodes, so nothing in them is local to one node.
const (
	StreamName         = "FIREHOSE"
	RetainedStreamName = "FIREHOSE_RETAINED"
)

// Message headers. Nats-Msg-Id makes a retried publish (after a stream
// leader change, in a cluster) land once; Firehose-Origin names the node
// that accepted it; Firehose-Qos is the publisher's QoS when above 0.
const (
	hdrOrigin = "Firehose-Origin"
	hdrQoS    = "Firehose-Qos"
)

// Limits of what one message may be: nats-server advises against payloads
// over 8 MiB; the file store keeps a subject's length in 16 bits.
const (
	MaxPayload    = 8 << 20
	maxSubjectLen = 32 << 10
	// retainedMaxBytes bounds the retained stream (one message per topic).
	retainedMaxBytes = 256 << 20
	// memoryStore is JetStream's in-memory budget: only the in-memory
	// state of readers' consumers uses it, never messages.
	memoryStore = 64 << 20
)

// dedupeWindow is how long the stream remembers each Nats-Msg-Id. Every
// message's ID stays in memory that long (about 100 bytes each: 3 MB at
// 1,000 messages a second); a publisher retrying after a stream leader
// change in a cluster retries within seconds.
const dedupeWindow = 30 * time.Second

// Config is what the journal takes from the appliance's config.
type Config struct {
	Dir      string // the store: state_dir/journal
	MaxAge   time.Duration
	MaxBytes int64
	Sync     config.SyncPolicy
	// Cluster is nil for an appliance that stands alone (cluster.go).
	Cluster *ClusterConfig
}

// ConfigFrom picks the journal's settings out of a config.
func ConfigFrom(c *config.Config) Config {
	return Config{
		Dir:      filepath.Join(c.Broker.StateDir, "journal"),
		MaxAge:   c.Journal.MaxAge.D(),
		MaxBytes: int64(c.Journal.MaxBytes),
		Sync:     c.Journal.Fsync,
		Cluster:  clusterFrom(c),
	}
}

// Message is one journaled message, or a gap marker.
type Message struct {
	Seq     uint64 // 0 for a message delivered live only (the journal could not write it)
	Time    time.Time
	Topic   string
	Payload []byte
	Retain  bool
	QoS     byte
	Gap     *Gap // set on a gap marker, which has no topic
}

// Gap is the marker written when the journal can write again after it
// could not: Lost messages went out live only between From and Until.
type Gap struct {
	Lost   int64     `json:"lost"`
	From   time.Time `json:"from"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// Journal is the running journal.
type Journal struct {
	log  *slog.Logger
	dir  string
	node string

	cfgMu sync.Mutex // cfg and opts change on reload
	cfg   Config
	opts  *server.Options
	// conn is the embedded server and the connection to it; replaced
	// whole when the server is restarted after a store write error.
	conn    atomic.Pointer[conn]
	reserve uint64 // free disk space the journal leaves untouched

	msgIDPrefix string
	msgIDs      atomic.Uint64

	deliver  func(Message)
	fanMu    sync.Mutex
	fanIt    jetstream.MessagesContext // the fan-out consumer's current iterator
	fanCons  jetstream.Consumer        // and its ordered consumer
	fanGen   atomic.Uint64             // fan-out consumers made so far (their names)
	stopFan  context.CancelFunc
	fanDone  chan struct{}
	lastSeen atomic.Uint64 // the last sequence the fan-out consumer delivered
	stall    fanStall      // the watch goroutine's: since when lastSeen has not moved
	rate     rateRing

	health   health
	space    space
	storeErr atomic.Value // string: the embedded server's latest error log line

	// cl is the cluster's state; nil for an appliance that stands alone.
	cl *clusterState

	closeOnce sync.Once
}

// Open starts the embedded nats-server on cfg.Dir and makes sure both
// streams exist with cfg's limits. Call Start to begin fan-out.
func Open(cfg Config, log *slog.Logger) (*Journal, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	node, err := nodeID(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster != nil {
		node = cfg.Cluster.Name
	}
	j := &Journal{log: log, dir: cfg.Dir, cfg: cfg, node: node, msgIDPrefix: node + "-" + randHex(4) + "-", reserve: minFree}
	j.opts = serverOptions(cfg, node)
	if cfg.Cluster != nil {
		if err := j.openCluster(cfg); err != nil {
			return nil, err
		}
		// The streams are made or checked by Start, in the background:
		// a node must start, and serve its subscribers, without quorum.
		return j, nil
	}
	c, err := j.startServer()
	if err != nil {
		return nil, err
	}
	j.conn.Store(c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := j.ensureStreams(ctx, cfg); err != nil {
		j.shutdown()
		return nil, err
	}
	return j, nil
}

// serverOptions is the one place the embedded server's options are made;
// clustering (routes, replicas) extends these.
func serverOptions(cfg Config, node string) *server.Options {
	return &server.Options{
		ServerName: "firehose-" + node,
		DontListen: true,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		// Explicit, or nats-server sizes itself from the host: 75 % of RAM
		// and most of the disk. The stream's own limits keep usage under
		// these; they are ceilings for reservations.
		JetStreamMaxMemory:     memoryStore,
		JetStreamMaxStore:      maxStore(cfg.MaxBytes),
		SyncInterval:           cfg.Sync.Interval,
		SyncAlways:             cfg.Sync.Always,
		MaxPayload:             MaxPayload,
		MaxPending:             4 * MaxPayload,
		MaxControlLine:         maxSubjectLen + 1024,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
	}
}

// maxStore is the server's store ceiling for a journal of maxBytes: the
// stream, the retained stream, and room for the store's own files.
func maxStore(maxBytes int64) int64 {
	return maxBytes + retainedMaxBytes + 64<<20
}

// conn is one embedded server and the in-process connection to it.
type conn struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func (j *Journal) js() jetstream.JetStream { return j.conn.Load().js }

func (j *Journal) startServer() (*conn, error) {
	if j.cl != nil && j.cl.external {
		return j.connectExternal()
	}
	j.cfgMu.Lock()
	opts := j.opts.Clone()
	j.cfgMu.Unlock()
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	srv.SetLoggerV2(natsLogger{l: j.log.With("component", "nats"), lastErr: &j.storeErr}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("journal: the embedded nats-server did not start within 30s")
	}
	copts := []nats.Option{nats.InProcessServer(srv), nats.Name("firehose"), nats.NoReconnect()}
	if opts.Authorization != "" {
		copts = append(copts, nats.Token(opts.Authorization))
	}
	nc, err := nats.Connect("", copts...)
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("journal: connecting to the embedded nats-server: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &conn{srv: srv, nc: nc, js: js}, nil
}

func (c *conn) close() {
	_ = c.nc.Drain()
	c.nc.Close()
	if c.srv != nil {
		c.srv.Shutdown()
		c.srv.WaitForShutdown()
	}
}

func (j *Journal) streamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "firehose: every message published, in fan-out order",
		Subjects:    []string{allEvents},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgSize:  MaxPayload,
		Duplicates:  min(dedupeFor(cfg), cfg.MaxAge),
		Replicas:    replicas(cfg),
	}
}

func retainedStreamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              RetainedStreamName,
		Description:       "firehose: the last retained message of each topic",
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 1,
		MaxBytes:          retainedMaxBytes,
		Sources:           []*jetstream.StreamSource{{Name: StreamName, FilterSubject: retainedEvents}},
		Replicas:          replicas(cfg),
	}
}

func (j *Journal) ensureStreams(ctx context.Context, cfg Config) error {
	for _, want := range []jetstream.StreamConfig{j.streamConfig(cfg), retainedStreamConfig(cfg)} {
		if err := j.ensureStream(ctx, want); err != nil {
			return fmt.Errorf("journal: stream %s: %w", want.Name, err)
		}
	}
	return nil
}

// ensureStream creates the stream, or updates it when its limits differ.
// An unchanged stream is only looked at: in a cluster, an update is a
// meta-leader operation that a node just restarted may wait long for.
func (j *Journal) ensureStream(ctx context.Context, want jetstream.StreamConfig) error {
	s, err := j.js().Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = j.js().CreateStream(ctx, want)
		return err
	case err != nil:
		return err
	}
	have := s.CachedInfo().Config
	if have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.MaxMsgSize == want.MaxMsgSize && have.MaxMsgsPerSubject == want.MaxMsgsPerSubject {
		return nil
	}
	_, err = j.js().UpdateStream(ctx, want)
	return err
}

// Update applies new limits live: max_age and max_bytes. The fsync policy
// is the embedded server's and needs a restart (the daemon refuses it by
// name before calling this).
func (j *Journal) Update(cfg Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j.cfgMu.Lock()
	defer j.cfgMu.Unlock()
	if err := j.updateRoutes(cfg); err != nil {
		return err
	}
	if j.cl != nil && j.cl.external {
		// The external servers' limits are theirs.
	} else if cfg.MaxBytes != j.cfg.MaxBytes && maxStore(cfg.MaxBytes) > j.opts.JetStreamMaxStore {
		// Raise the server's ceiling first, or the stream cannot grow.
		opts := j.opts.Clone()
		opts.JetStreamMaxStore = maxStore(cfg.MaxBytes)
		if err := j.conn.Load().srv.ReloadOptions(opts); err != nil {
			return fmt.Errorf("journal: raising the store limit for max_bytes: %w", err)
		}
		j.opts = opts
	}
	if cfg.MaxAge == j.cfg.MaxAge && cfg.MaxBytes == j.cfg.MaxBytes {
		// Nothing for the stream: a cluster without quorum still reloads.
		j.cfg = cfg
		return nil
	}
	if _, err := j.js().UpdateStream(ctx, j.streamConfig(cfg)); err != nil {
		return fmt.Errorf("journal: applying max_age and max_bytes: %w", err)
	}
	j.cfg = cfg
	return nil
}

// Node is this node's identity in the journal (the Firehose-Origin header).
func (j *Journal) Node() string { return j.node }

// Close stops the fan-out consumer and the embedded server, which flushes
// the store.
func (j *Journal) Close() {
	j.closeOnce.Do(func() {
		j.stopHealth()
		if j.stopFan != nil {
			j.stopFan()
			<-j.fanDone
		}
		j.shutdown()
	})
}

func (j *Journal) shutdown() {
	if c := j.conn.Load(); c != nil {
		c.close()
	}
}

// nodeID is this node's name, made once and kept with the store, so a
// restarted node is the same origin.
func nodeID(dir string) (string, error) {
	path := filepath.Join(dir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("journal: %w", err)
	}
	id := randHex(6)
	if err := os.WriteFile(path, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	return id, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// natsLogger sends nats-server's log to the daemon's: notices (its banner
// and routine news) at debug, warnings and errors as they are. The latest
// error is kept: a store that fails a write logs why but does not tell the
// publisher.
type natsLogger struct {
	l       *slog.Logger
	lastErr *atomic.Value
}

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.Errorf(format, v...) }
func (n natsLogger) Debugf(format string, v ...any)  {}
func (n natsLogger) Tracef(format string, v ...any)  {}

func (n natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	n.lastErr.Store(msg)
	n.l.Error(msg)
}
