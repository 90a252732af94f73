package gerrit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
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

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

func newKey(t testing.TB) (ed25519.PrivateKey, ssh.Signer) {
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

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeGerrit is an SSH server that answers `gerrit stream-events` and an
// events-log endpoint over the same event history, with faults on demand.
type fakeGerrit struct {
	t         testing.TB
	ln        net.Listener
	addr      string
	hostKey   ssh.Signer
	http      *httptest.Server
	user, pw  string
	pageLimit int

	mu       sync.Mutex
	clock    int64
	log      []logEntry
	sessions map[*fakeSession]bool
	conns    map[*fakeConn]bool
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

type fakeSession struct {
	out chan []byte
}

func newFakeGerrit(t testing.TB, clientKey ssh.PublicKey) *fakeGerrit {
	t.Helper()
	_, host := newKey(t)
	g := &fakeGerrit{
		t: t, hostKey: host, user: "firehose", pw: "s3cret", pageLimit: 7,
		clock: 1700000000, sessions: map[*fakeSession]bool{}, conns: map[*fakeConn]bool{},
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), clientKey.Marshal()) {
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
	g.ln, g.addr = ln, ln.Addr().String()
	g.wg.Add(1)
	go g.accept(cfg)
	g.http = httptest.NewServer(http.HandlerFunc(g.eventsLog))
	t.Cleanup(g.close)
	return g
}

func (g *fakeGerrit) close() {
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

func (g *fakeGerrit) accept(cfg *ssh.ServerConfig) {
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
		c := &fakeConn{Conn: nc, closed: make(chan struct{})}
		g.conns[c] = true
		g.wg.Add(1)
		g.mu.Unlock()
		go g.serve(c, cfg)
	}
}

func (g *fakeGerrit) serve(c *fakeConn, cfg *ssh.ServerConfig) {
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

func (g *fakeGerrit) session(ch ssh.Channel, reqs <-chan *ssh.Request, c *fakeConn) {
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
		s := &fakeSession{out: make(chan []byte, 100000)}
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

// fakeConn can be frozen: it then neither delivers what it reads nor
// writes, like a connection whose peer vanished without a FIN.
type fakeConn struct {
	net.Conn
	frozen    atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *fakeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.frozen.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *fakeConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *fakeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (g *fakeGerrit) now() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Unix(g.clock, 0)
}

func (g *fakeGerrit) tick() {
	g.mu.Lock()
	g.clock++
	g.mu.Unlock()
}

// event makes a distinct event from a sample, created now on the fake clock.
func (g *fakeGerrit) event(sample []byte, seq int) []byte {
	g.mu.Lock()
	sec := g.clock
	g.mu.Unlock()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(sample, &m); err != nil {
		g.t.Fatal(err)
	}
	// Rewrite only the opening: the rest of the sample stays as Gerrit wrote it.
	body := bytes.TrimPrefix(sample, []byte("{"))
	if _, ok := m["eventCreatedOn"]; ok {
		var v int64
		json.Unmarshal(m["eventCreatedOn"], &v)
		body = bytes.Replace(body, []byte(`"eventCreatedOn":`+string(m["eventCreatedOn"])), []byte(`"eventCreatedOn":`+strconv.FormatInt(sec, 10)), 1)
		return append([]byte(fmt.Sprintf(`{"testSeq":%d,`, seq)), body...)
	}
	return append([]byte(fmt.Sprintf(`{"testSeq":%d,"eventCreatedOn":%d,`, seq, sec)), body...)
}

func (g *fakeGerrit) emit(line []byte, toLog, toStream bool) {
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
				g.t.Error("fake session buffer full")
			}
		}
	}
}

func (g *fakeGerrit) streaming() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

func (g *fakeGerrit) setRefuse(v bool) {
	g.mu.Lock()
	g.refuse = v
	g.mu.Unlock()
}

// dropAll closes every connection, as a Gerrit restart would.
func (g *fakeGerrit) dropAll() {
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

// freeze makes every current connection silent without closing it, and
// forgets its sessions: what is emitted meanwhile exists only in the log.
func (g *fakeGerrit) freeze() {
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
func (g *fakeGerrit) eventsLog(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != g.user || p != g.pw {
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

// message is one PUBLISH the subscriber got.
type message struct {
	topic   string
	payload []byte
}

type subscriber struct {
	mu   sync.Mutex
	msgs []message
}

func (s *subscriber) all() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]message(nil), s.msgs...)
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// startBroker runs a real mochi broker with the inline client and a real
// paho subscriber on gerrit/#.
func startBroker(t testing.TB) (*mqtt.Server, *subscriber) {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	sub := &subscriber{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + tcp.Address()).SetClientID("checker").
		SetAutoReconnect(false).SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	tok := c.Subscribe("gerrit/#", 1, func(_ paho.Client, m paho.Message) {
		sub.mu.Lock()
		sub.msgs = append(sub.msgs, message{m.Topic(), append([]byte(nil), m.Payload()...)})
		sub.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}
	t.Cleanup(func() {
		c.Disconnect(100)
		done := make(chan struct{})
		go func() { srv.Close(); close(done) }()
		select { // mochi's Close can hang (upstream #488): bound it
		case <-done:
		case <-time.After(5 * time.Second):
			t.Log("broker Close did not return")
		}
	})
	return srv, sub
}

// rig is a fake Gerrit, a broker, a subscriber and the files a source needs.
type rig struct {
	t      testing.TB
	g      *fakeGerrit
	broker *mqtt.Server
	sub    *subscriber
	cfg    config.Gerrit
	state  string
	dir    string
}

func newRig(t testing.TB, eventsLog bool) *rig {
	t.Helper()
	dir := t.TempDir()
	priv, signer := newKey(t)
	g := newFakeGerrit(t, signer.PublicKey())
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(g.addr)
	portN, _ := strconv.Atoi(port)
	cfg := config.Gerrit{
		Name: "test", Host: host, Port: portN, User: "firehose",
		KeyFile:    writeFile(t, dir, "id_ed25519", pem.EncodeToMemory(block)),
		KnownHosts: writeFile(t, dir, "known_hosts", []byte(knownhosts.Line([]string{knownhosts.Normalize(g.addr)}, g.hostKey.PublicKey())+"\n")),
		Topic:      "gerrit", QoS: 0, Keepalive: config.Duration(100 * time.Millisecond),
	}
	if eventsLog {
		cfg.EventsLogURL = g.http.URL + "/a/plugins/events-log/events/"
		cfg.EventsLogUser = g.user
		cfg.EventsLogPasswordFile = writeFile(t, dir, "password", []byte(g.pw+"\n"))
	}
	broker, sub := startBroker(t)
	return &rig{t: t, g: g, broker: broker, sub: sub, cfg: cfg, state: filepath.Join(dir, "state"), dir: dir}
}

// sources starts a Sources with fast timings and the fake clock.
func (r *rig) sources(pub Publisher) *Sources {
	r.t.Helper()
	if pub == nil {
		pub = r.broker
	}
	var logTo io.Writer = io.Discard
	if os.Getenv("GERRIT_TEST_LOG") != "" {
		logTo = os.Stderr
	}
	s := NewSources(r.state, pub, slog.New(slog.NewTextHandler(logTo, nil)))
	s.opts.backoffMin = 20 * time.Millisecond
	s.opts.backoffMax = 200 * time.Millisecond
	s.opts.dialTimeout = 5 * time.Second
	s.opts.persistEvery = 20 * time.Millisecond
	s.opts.now = r.g.now
	s.opts.http = &http.Client{Timeout: 5 * time.Second}
	s.Update([]config.Gerrit{r.cfg})
	r.t.Cleanup(s.Close)
	return s
}

func status(s *Sources) apitype.GerritSource {
	st := s.Status()
	if len(st) != 1 {
		panic(fmt.Sprintf("%d sources", len(st)))
	}
	return st[0]
}

// expectExactly checks that the subscriber got want, in order, each once,
// byte for byte, on the topic Topic gives.
func (r *rig) expectExactly(want [][]byte) {
	r.t.Helper()
	waitFor(r.t, 20*time.Second, fmt.Sprintf("%d messages", len(want)), func() bool { return r.sub.count() >= len(want) })
	got := r.sub.all()
	if len(got) != len(want) {
		r.t.Errorf("got %d messages, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		wt, _ := Topic("gerrit", want[i])
		if got[i].topic != wt || !bytes.Equal(got[i].payload, want[i]) {
			r.t.Fatalf("message %d: got %s %.120s\nwant %s %.120s", i, got[i].topic, got[i].payload, wt, want[i])
		}
	}
}
