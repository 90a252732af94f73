// Package gerrit owns the Gerrit publishers. For each [[gerrit]] server it
// keeps one SSH session running `gerrit stream-events`, republishes every
// event unchanged on <topic>/<project>/<type>, and fills the gaps left by
// dropped connections, dropped output and its own downtime from the
// events-log plugin, remembering its position in the state directory.
//
// It must never stop because of bad input or a broker error, never connect
// to a server whose host key known_hosts does not vouch for, and never
// publish a replayed event the stream already delivered.
package gerrit

import (
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// Publisher is what the broker offers; *mqtt.Server (mochi v2) satisfies it
// via its inline client.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// options are the timings and limits of a source. Production uses
// defaultOptions; tests shrink the timings.
type options struct {
	backoffMin, backoffMax time.Duration
	backoffFactor          float64
	goodAfter              time.Duration // a connection this old resets the backoff
	keepalive              time.Duration // 0: the config's keepalive
	keepaliveMisses        int
	dialTimeout            time.Duration // TCP connect and SSH handshake
	maxLine                int
	queueLen, queueBytes   int   // events waiting for the broker
	pendingLen             int   // lines waiting for the run goroutine (during a replay)
	slack                  int64 // seconds replayed before the newest event published
	seenMax                int
	replayAttempts         int
	maxPages               int
	persistEvery           time.Duration
	drainTimeout           time.Duration // how long Close waits for the broker to take queued events
	publishRetryMax        time.Duration
	now                    func() time.Time
	http                   *http.Client
}

func defaultOptions() options {
	return options{
		backoffMin:      500 * time.Millisecond,
		backoffMax:      60 * time.Second,
		backoffFactor:   1.5,
		goodAfter:       2 * time.Minute,
		keepaliveMisses: 3,
		dialTimeout:     30 * time.Second,
		maxLine:         16 << 20,
		queueLen:        100000,
		pendingLen:      100000,
		queueBytes:      256 << 20,
		slack:           2,
		seenMax:         50000,
		replayAttempts:  3,
		maxPages:        10000,
		persistEvery:    time.Second,
		drainTimeout:    2 * time.Second,
		publishRetryMax: 5 * time.Second,
		now:             time.Now,
		http:            &http.Client{Timeout: 2 * time.Minute},
	}
}

// Sources runs one publisher per configured Gerrit server.
type Sources struct {
	stateDir string
	pub      Publisher
	log      *slog.Logger
	opts     options

	mu      sync.Mutex
	running map[string]*source
	names   []string // config order, for Status
	closed  bool
}

// NewSources returns an empty set; Update starts the sources. Positions are
// kept under stateDir/gerrit/.
func NewSources(stateDir string, pub Publisher, log *slog.Logger) *Sources {
	if log == nil {
		log = slog.Default()
	}
	return &Sources{stateDir: stateDir, pub: pub, log: log, opts: defaultOptions(), running: map[string]*source{}}
}

// Update makes the running sources match cfgs: it stops removed ones,
// restarts changed ones and starts new ones. Unchanged sources keep
// streaming. Key and known_hosts files are read at every connection, so a
// rotated key needs no restart.
func (s *Sources) Update(cfgs []config.Gerrit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	want := map[string]config.Gerrit{}
	s.names = s.names[:0]
	for _, c := range cfgs {
		want[c.Name] = c
		s.names = append(s.names, c.Name)
	}
	var stale []*source
	for name, src := range s.running {
		if c, ok := want[name]; !ok || !reflect.DeepEqual(c, src.cfg) {
			stale = append(stale, src)
			delete(s.running, name)
		}
	}
	// Stop before starting: a restarted source takes over the position file.
	stopAll(stale)
	for _, c := range cfgs {
		if _, ok := s.running[c.Name]; !ok {
			s.running[c.Name] = startSource(c, s.stateDir, s.pub, s.log, s.opts)
		}
	}
}

func stopAll(srcs []*source) {
	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src.stop()
		}()
	}
	wg.Wait()
}

// Status reports every source in config order.
func (s *Sources) Status() []apitype.GerritSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]apitype.GerritSource, 0, len(s.names))
	for _, name := range s.names {
		if src := s.running[name]; src != nil {
			out = append(out, src.status())
		}
	}
	return out
}

// Problems returns one sentence per source that is not streaming, or whose
// last gap could not be replayed, or that cannot hand events to the broker.
func (s *Sources) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range s.names {
		if src := s.running[name]; src != nil {
			out = append(out, src.problems()...)
		}
	}
	return out
}

// Close stops every source within a bounded time and saves their positions.
// Sources cannot be restarted after Close.
func (s *Sources) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	var all []*source
	for _, src := range s.running {
		all = append(all, src)
	}
	stopAll(all)
}
