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

// ReadSamples returns the non-empty lines of the samples file at path.
func ReadSamples(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
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
	// PageLimit caps each events-log answer, silently as the plugin does;
	// 0 means 7, small enough that a replay has to page.
	PageLimit int
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

	mu       sync.Mutex
	clock    int64
	log      []logEntry
	sessions map[*session]bool
	conns    map[*conn]bool
	refuse   bool
	execs    int
	queries  int
	closed   bool
	wg       sync.WaitGroup
}

type logEntry struct {
	sec  int64
	line []byte
}

type session struct {
	out chan []byte
}

// New starts a Server on 127.0.0.1; the test's cleanup closes it.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	clientPriv, client := NewKey(t)
	_, host := NewKey(t)
	g := &Server{
		HostKey: host, ClientKey: clientPriv, User: "firehose", Password: "s3cret",
		t: t, clientPub: client.PublicKey(), wall: o.WallClock, pageLimit: o.PageLimit,
		clock: 1700000000, sessions: map[*session]bool{}, conns: map[*conn]bool{},
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
		if g.refuse || g.closed {
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
// "testSeq":seq tells copies of one sample apart.
func (g *Server) Event(sample []byte, seq int) []byte {
	sec := g.Now().Unix()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(sample, &m); err != nil {
		g.t.Fatal(err)
	}
	// Rewrite only the opening and the time: the rest of the sample stays
	// as Gerrit wrote it.
	body := bytes.TrimPrefix(sample, []byte("{"))
	if old, ok := m["eventCreatedOn"]; ok {
		body = bytes.Replace(body, []byte(`"eventCreatedOn":`+string(old)), []byte(`"eventCreatedOn":`+strconv.FormatInt(sec, 10)), 1)
		return append([]byte(fmt.Sprintf(`{"testSeq":%d,`, seq)), body...)
	}
	return append([]byte(fmt.Sprintf(`{"testSeq":%d,"eventCreatedOn":%d,`, seq, sec)), body...)
}

// Emit records line in the events-log (toLog) and/or writes it to every
// stream-events session (toStream). An event Gerrit created while no one
// was streaming is toLog only in effect: Emit(line, true, true) with no
// session.
func (g *Server) Emit(line []byte, toLog, toStream bool) {
	line = line[:len(line):len(line)] // readers append '\n': make that copy
	g.mu.Lock()
	defer g.mu.Unlock()
	if toLog {
		var m struct{ EventCreatedOn int64 }
		json.Unmarshal(line, &m)
		g.log = append(g.log, logEntry{m.EventCreatedOn, line})
	}
	if toStream {
		for s := range g.sessions {
			select {
			case s.out <- line:
			default:
				g.t.Error("gerrittest: session buffer full")
			}
		}
	}
}

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
