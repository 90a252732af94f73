// Package gerrittest provides a Gerrit stand-in for tests: an in-process SSH
// server that answers `gerrit stream-events` with the lines a test emits,
// an events-log HTTP endpoint over the same event history, faults on demand
// (dropped, refused and half-open connections), and the key, known_hosts and
// password files a [[gerrit]] config points to.
//
// It is test support only: no production package may import it. It must
// not import package gerrit either, whose own tests use it.
package gerrittest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/config"
)

// Written out rather than taken from package gerrit, whose tests import this
// package: they are Gerrit's interface, not ours.
const (
	streamCommand = "gerrit stream-events"
	eventsLogTime = "2006-01-02 15:04:05"
)

// SamplesPath is the shared corpus of real events, relative to a package
// directory two levels below the repository root (appliance/<pkg>); CI
// clones the repository with shared/ beside it.
const SamplesPath = "../../../shared/gerrit-events/samples.jsonl"

// ReadSamples returns the non-empty lines of the samples file at path. When
// path is SamplesPath and missing there (a worktree nested deeper than a
// clone), the nearest shared/ beside an ancestor directory is used.
func ReadSamples(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && path == SamplesPath {
		if dir, werr := os.Getwd(); werr == nil {
			for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
				if b2, err2 := os.ReadFile(filepath.Join(dir, "shared", "gerrit-events", "samples.jsonl")); err2 == nil {
					b, err = b2, nil
					break
				}
			}
		}
	}
	if err != nil {
		t.Fatalf("the shared Gerrit event samples are needed (%v); in CI, shared/ is checked out beside the repository", err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) > 0 {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(out) < 50 {
		t.Fatalf("%s: only %d lines", path, len(out))
	}
	return out
}

// WaitProgress polls progress until it reports done. It fails only when
// the count it reports stops growing for stall: a busy machine makes the
// wait longer, not a failure.
func WaitProgress(t testing.TB, stall time.Duration, what string, progress func() (n int, done bool)) {
	t.Helper()
	if n, ok := Progress(stall, progress); !ok {
		t.Fatalf("waiting for %s: stuck at %d for %s", what, n, stall)
	}
}

// Progress is WaitProgress that reports a stall instead of failing: false
// and the count it got stuck at.
func Progress(stall time.Duration, progress func() (n int, done bool)) (int, bool) {
	last, since := -1, time.Now()
	for {
		n, done := progress()
		if done {
			return n, true
		}
		if n > last {
			last, since = n, time.Now()
		} else if time.Since(since) > stall {
			return n, false
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// WaitCount waits for count to reach want, as long as it keeps growing.
func WaitCount(t testing.TB, stall time.Duration, what string, want int, count func() int) {
	t.Helper()
	WaitProgress(t, stall, fmt.Sprintf("%d %s", want, what), func() (int, bool) {
		n := count()
		return n, n >= want
	})
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// NewKey returns a fresh ed25519 key and its SSH signer.
func NewKey(t testing.TB) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

// WriteFile writes b to dir/name, readable by the owner only, and returns
// the path.
func WriteFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Options tune a Server.
type Options struct {
	// WallClock stamps events with the real time. Without it the clock
	// starts at 1700000000 and moves only by Tick, for a source whose own
	// clock the test controls; a daemon under test uses the real one.
	WallClock bool
	// Start is the manual clock's first second; 0 means 1700000000. A
	// daemon under test, whose clock is the real one, needs a start near
	// time.Now() to use the manual clock (one second per event, see Play).
	Start int64
	// PageLimit caps each events-log answer, silently as the plugin does;
	// 0 means 7, small enough that a replay has to page.
	PageLimit int
	// CloseAfter closes a stream-events connection once it has written that
	// many events, as a Gerrit restart or a proxy's timeout would; 0 never.
	CloseAfter int
	// RefuseFor refuses SSH connections for this long (real time) after
	// each CloseAfter close, as a Gerrit that is restarting.
	RefuseFor time.Duration
}

// Server is a Gerrit: SSH stream-events and an events-log endpoint over the
// same history. Only the client key it generated may log in.
type Server struct {
	// Addr is the SSH host:port.
	Addr string
	// HostKey is what the server offers; known_hosts must list it.
	HostKey ssh.Signer
	// ClientKey is the account's key, the only one accepted.
	ClientKey ed25519.PrivateKey
	// EventsLogURL is the events-log endpoint, as a config names it.
	EventsLogURL string
	// User and Password are the events-log account (HTTP basic auth).
	User, Password string

	t         testing.TB
	ln        net.Listener
	http      *httptest.Server
	clientPub ssh.PublicKey
	wall      bool
	pageLimit int
	opts      Options

	mu       sync.Mutex
	clock    int64
	log      []logEntry
	sessions map[*session]bool
	conns    map[*conn]bool
	refuse   bool
	until    time.Time // refusing connections until then, after a CloseAfter close
	execs    int
	queries  int
	closes   int // CloseAfter closes
	markers  int // dropped-output lines written after a SkipStream
	closed   bool
	wg       sync.WaitGroup

	holdMu  sync.Mutex
	hold    chan struct{} // non-nil: events-log answers wait until it is closed
	waiting atomic.Int32  // events-log requests waiting on hold
}

type logEntry struct {
	sec  int64
	line []byte
}

// session is one stream-events command. Lines go to out; a nil line closes
// the connection after what was queued before it.
type session struct {
	out    chan []byte
	sent   int    // events written, for CloseAfter
	skip   int    // events still to leave out, for SkipStream
	marker []byte // written once skip reaches 0
}

// New starts a Server on 127.0.0.1; the test's cleanup closes it.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	clientPriv, client := NewKey(t)
	_, host := NewKey(t)
	g := &Server{
		HostKey: host, ClientKey: clientPriv, User: "firehose", Password: "s3cret",
		t: t, clientPub: client.PublicKey(), wall: o.WallClock, pageLimit: o.PageLimit, opts: o,
		clock: 1700000000, sessions: map[*session]bool{}, conns: map[*conn]bool{},
	}
	if o.Start > 0 {
		g.clock = o.Start
	}
	if g.pageLimit <= 0 {
		g.pageLimit = 7
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), g.clientPub.Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("unknown key")
		},
	}
	cfg.AddHostKey(host)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.ln, g.Addr = ln, ln.Addr().String()
	g.wg.Add(1)
	go g.accept(cfg)
	g.http = httptest.NewServer(http.HandlerFunc(g.eventsLog))
	g.EventsLogURL = g.http.URL + "/a/plugins/events-log/events/"
	t.Cleanup(g.Close)
	return g
}

// Close stops the server and waits for its goroutines. It is idempotent.
func (g *Server) Close() {
	g.ReleaseLog()
	g.mu.Lock()
	g.closed = true
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.ln.Close()
	g.http.Close()
	g.wg.Wait()
}

// Config writes the account's key, a known_hosts that lists the server's
// key and the events-log password file under dir, and returns a [[gerrit]]
// entry named name that uses them, with the events-log configured.
func (g *Server) Config(t testing.TB, dir, name string) config.Gerrit {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(g.ClientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(g.Addr)
	portN, _ := strconv.Atoi(port)
	return config.Gerrit{
		Name: name, Host: host, Port: portN, User: "firehose",
		KeyFile:               WriteFile(t, dir, name+".key", pem.EncodeToMemory(block)),
		KnownHosts:            WriteFile(t, dir, name+".known_hosts", []byte(g.KnownHostsLine(g.HostKey.PublicKey())+"\n")),
		Topic:                 "gerrit",
		Keepalive:             config.Duration(15 * time.Second),
		EventsLogURL:          g.EventsLogURL,
		EventsLogUser:         g.User,
		EventsLogPasswordFile: WriteFile(t, dir, name+".password", []byte(g.Password+"\n")),
	}
}

// KnownHostsLine is a known_hosts line claiming key for this server's
// address; pass another key to impersonate a changed server.
func (g *Server) KnownHostsLine(key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(g.Addr)}, key)
}

// TOML renders c as a [[gerrit]] block. Go's %q quoting is valid TOML for
// the plain strings tests use.
func TOML(c config.Gerrit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[gerrit]]\nname = %q\nhost = %q\nport = %d\nuser = %q\nkey_file = %q\nknown_hosts = %q\ntopic = %q\nqos = %d\n",
		c.Name, c.Host, c.Port, c.User, c.KeyFile, c.KnownHosts, c.Topic, c.QoS)
	if c.Keepalive > 0 {
		fmt.Fprintf(&b, "keepalive = %q\n", c.Keepalive.D().String())
	}
	if c.EventsLogURL != "" {
		fmt.Fprintf(&b, "events_log_url = %q\nevents_log_user = %q\nevents_log_password_file = %q\n",
			c.EventsLogURL, c.EventsLogUser, c.EventsLogPasswordFile)
	}
	return b.String()
}

func (g *Server) accept(cfg *ssh.ServerConfig) {
	defer g.wg.Done()
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if g.refuse || g.closed || time.Now().Before(g.until) {
			g.mu.Unlock()
			nc.Close()
			continue
		}
		c := &conn{Conn: nc, closed: make(chan struct{})}
		g.conns[c] = true
		g.wg.Add(1)
		g.mu.Unlock()
		go g.serve(c, cfg)
	}
}

func (g *Server) serve(c *conn, cfg *ssh.ServerConfig) {
	defer g.wg.Done()
	defer func() {
		c.Close()
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
	}()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs) // keepalive@openssh.com gets a "failure" reply, as from Gerrit
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go g.session(ch, creqs, c)
	}
}

func (g *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request, c *conn) {
	defer g.wg.Done()
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		var cmd struct{ Command string }
		ssh.Unmarshal(req.Payload, &cmd)
		if cmd.Command != streamCommand {
			req.Reply(true, nil)
			fmt.Fprintf(ch.Stderr(), "fatal: unknown command %q\n", cmd.Command)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
			return
		}
		req.Reply(true, nil)
		s := &session{out: make(chan []byte, 100000)}
		g.mu.Lock()
		g.execs++
		g.sessions[s] = true
		g.mu.Unlock()
		go ssh.DiscardRequests(reqs)
		defer func() {
			g.mu.Lock()
			delete(g.sessions, s)
			g.mu.Unlock()
		}()
		for {
			select {
			case line, ok := <-s.out:
				if !ok {
					return
				}
				if line == nil { // CloseAfter: the whole connection goes
					c.Close()
					return
				}
				if _, err := ch.Write(append(line, '\n')); err != nil {
					return
				}
			case <-c.closed:
				return
			}
		}
	}
}

// conn can be frozen: it then neither delivers what it reads nor writes,
// like a connection whose peer vanished without a FIN.
type conn struct {
	net.Conn
	frozen    atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.frozen.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Now is the server's clock: the time new events are stamped with.
func (g *Server) Now() time.Time {
	if g.wall {
		return time.Now()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Unix(g.clock, 0)
}

// Tick moves the manual clock on by a second; with WallClock it does nothing.
func (g *Server) Tick() {
	g.mu.Lock()
	g.clock++
	g.mu.Unlock()
}

// Event makes a distinct event from a sample, created now: a leading
// "testSeq":seq tells copies of one sample apart. A sample without
// eventCreatedOn gets one.
func (g *Server) Event(sample []byte, seq int) []byte {
	return g.event(sample, seq, true)
}

// EventAsSample is Event, except that a sample without eventCreatedOn stays
// without one, as some servers and plugins send events.
func (g *Server) EventAsSample(sample []byte, seq int) []byte {
	return g.event(sample, seq, false)
}

func (g *Server) event(sample []byte, seq int, date bool) []byte {
	sec := g.Now().Unix()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(sample, &m); err != nil {
		g.t.Fatal(err)
	}
	// Rewrite only the opening and the time: the rest of the sample stays
	// as Gerrit wrote it.
	body := bytes.TrimPrefix(sample, []byte("{"))
	lead := fmt.Sprintf(`{"testSeq":%d,`, seq)
	if old, ok := m["eventCreatedOn"]; ok {
		body = bytes.Replace(body, []byte(`"eventCreatedOn":`+string(old)), []byte(`"eventCreatedOn":`+strconv.FormatInt(sec, 10)), 1)
	} else if date {
		lead = fmt.Sprintf(`{"testSeq":%d,"eventCreatedOn":%d,`, seq, sec)
	}
	return append([]byte(lead), body...)
}

// Schedule is a run of distinct events made from samples, each created in
// a second of its own on the manual clock, as fast as Rate allows.
type Schedule struct {
	Samples [][]byte
	Events  int
	// Rate is events per second of real time; 0 is as fast as possible.
	Rate float64
	// AsSample keeps samples without eventCreatedOn without one.
	AsSample bool
	// Before, when set, runs before event i is created: faults, or a wait
	// that holds the producer (the pace resumes from there).
	Before func(i int)
}

// Play creates the schedule's events, records each in the events-log and
// streams it to whoever is connected, and returns them in creation order.
func (g *Server) Play(s Schedule) [][]byte {
	out := make([][]byte, 0, s.Events)
	next := time.Now()
	for i := range s.Events {
		if s.Before != nil {
			s.Before(i)
		}
		if s.Rate > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d) // pacing the producer, not synchronisation
			}
			next = maxTime(next, time.Now()).Add(time.Duration(float64(time.Second) / s.Rate))
		}
		g.Tick()
		sample := s.Samples[i%len(s.Samples)]
		ev := g.event(sample, i, !s.AsSample)
		g.Emit(ev, true, true)
		out = append(out, ev)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Emit records line in the events-log (toLog) and/or writes it to every
// stream-events session (toStream). An event Gerrit created while no one
// was streaming is toLog only in effect: Emit(line, true, true) with no
// session. The log files an event under its eventCreatedOn, or under the
// server's clock when it has none, as a plugin stamping what it receives.
func (g *Server) Emit(line []byte, toLog, toStream bool) {
	line = line[:len(line):len(line)] // readers append '\n': make that copy
	now := g.Now().Unix()
	g.mu.Lock()
	defer g.mu.Unlock()
	if toLog {
		sec, ok := createdOn(line)
		if !ok {
			sec = now
		}
		g.log = append(g.log, logEntry{sec, line})
	}
	if toStream {
		for s := range g.sessions {
			if s.skip > 0 {
				if s.skip--; s.skip == 0 {
					g.markers++
					g.send(s, s.marker)
				}
				continue
			}
			g.send(s, line)
			s.sent++
			if g.opts.CloseAfter > 0 && s.sent >= g.opts.CloseAfter {
				g.send(s, nil)
				delete(g.sessions, s)
				g.closes++
				g.until = time.Now().Add(g.opts.RefuseFor)
			}
		}
	}
}

func (g *Server) send(s *session, line []byte) {
	select {
	case s.out <- line:
	default:
		g.t.Error("gerrittest: session buffer full")
	}
}

// createdOn reads eventCreatedOn, a number or (old servers) a string.
func createdOn(line []byte) (int64, bool) {
	var m struct{ EventCreatedOn json.RawMessage }
	if json.Unmarshal(line, &m) != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.Trim(string(m.EventCreatedOn), `"`), 10, 64)
	return n, err == nil && n > 0
}

// DroppedOutput is what Gerrit writes after leaving events out of a
// session whose output backed up.
var DroppedOutput = []byte(`{"type":"dropped-output"}`)

// SkipStream makes every current session leave out the next n events (they
// reach the events-log only), then write marker, as Gerrit does when a
// session's queue overflows. A nil marker is DroppedOutput; n = 0 writes the
// marker at once.
func (g *Server) SkipStream(n int, marker []byte) {
	if marker == nil {
		marker = DroppedOutput
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for s := range g.sessions {
		s.skip, s.marker = n, marker
		if n == 0 {
			g.markers++
			g.send(s, marker)
		}
	}
}

// Markers is the number of markers SkipStream sessions have written.
func (g *Server) Markers() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.markers
}

// Closes is the number of connections CloseAfter has closed.
func (g *Server) Closes() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closes
}

// HoldLog makes events-log requests wait until ReleaseLog, as a slow
// plugin: a test can then act while a replay is in progress.
func (g *Server) HoldLog() {
	g.holdMu.Lock()
	defer g.holdMu.Unlock()
	if g.hold == nil {
		g.hold = make(chan struct{})
	}
}

// ReleaseLog lets held and later events-log requests through.
func (g *Server) ReleaseLog() {
	g.holdMu.Lock()
	defer g.holdMu.Unlock()
	if g.hold != nil {
		close(g.hold)
		g.hold = nil
	}
}

// LogWaiting is the number of events-log requests waiting on HoldLog.
func (g *Server) LogWaiting() int { return int(g.waiting.Load()) }

// Streaming is the number of running stream-events sessions.
func (g *Server) Streaming() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Execs is the number of stream-events commands run so far.
func (g *Server) Execs() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.execs
}

// Queries is the number of authorised events-log requests so far.
func (g *Server) Queries() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queries
}

// SetRefuse makes the server close new connections at once (true), as a
// Gerrit that is down, or accept them again (false).
func (g *Server) SetRefuse(v bool) {
	g.mu.Lock()
	g.refuse = v
	g.mu.Unlock()
}

// DropAll closes every connection, as a Gerrit restart would.
func (g *Server) DropAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.Close()
	}
	for s := range g.sessions {
		delete(g.sessions, s)
		close(s.out)
	}
}

// Freeze makes every current connection silent without closing it, and
// forgets its sessions: what is emitted meanwhile exists only in the log.
func (g *Server) Freeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.frozen.Store(true)
	}
	for s := range g.sessions {
		delete(g.sessions, s)
	}
}

// eventsLog serves GET ?t1=...;t2=... as the events-log plugin does: both
// ends inclusive, oldest first, capped at pageLimit without notice.
func (g *Server) eventsLog(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != g.User || p != g.Password {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	g.holdMu.Lock()
	hold := g.hold
	g.holdMu.Unlock()
	if hold != nil {
		g.waiting.Add(1)
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		g.waiting.Add(-1)
	}
	params := map[string]string{}
	for _, pair := range strings.FieldsFunc(r.URL.RawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
		k, v, _ := strings.Cut(pair, "=")
		v, err := url.QueryUnescape(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		params[k] = v
	}
	var t [2]int64
	for i, name := range []string{"t1", "t2"} {
		tm, err := time.Parse(eventsLogTime, params[name])
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t[i] = tm.Unix()
	}
	g.mu.Lock()
	g.queries++
	var out []logEntry
	for _, e := range g.log {
		if e.sec >= t[0] && e.sec <= t[1] {
			out = append(out, e)
		}
	}
	g.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].sec < out[j].sec })
	if len(out) > g.pageLimit {
		out = out[:g.pageLimit]
	}
	w.Header().Set("Content-Type", "text/html")
	for _, e := range out {
		w.Write(append(e.line, '\n'))
	}
}
