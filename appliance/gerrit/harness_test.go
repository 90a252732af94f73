package gerrit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
)

// waitFor keeps the short name the tests here use.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	gerrittest.WaitFor(t, timeout, what, cond)
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
		SetAutoReconnect(false).SetOrderMatters(true).SetConnectTimeout(30 * time.Second)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	tok := c.Subscribe("gerrit/#", 1, func(_ paho.Client, m paho.Message) {
		sub.mu.Lock()
		sub.msgs = append(sub.msgs, message{m.Topic(), append([]byte(nil), m.Payload()...)})
		sub.mu.Unlock()
	})
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
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
	g      *gerrittest.Server
	broker *mqtt.Server
	sub    *subscriber
	cfg    config.Gerrit
	state  string
	dir    string
}

func newRig(t testing.TB, eventsLog bool) *rig {
	t.Helper()
	return newRigWith(t, eventsLog, gerrittest.Options{})
}

// newRigWith is newRig with a fake Gerrit tuned by o.
func newRigWith(t testing.TB, eventsLog bool, o gerrittest.Options) *rig {
	t.Helper()
	dir := t.TempDir()
	g := gerrittest.New(t, o)
	cfg := g.Config(t, dir, "test")
	cfg.Keepalive = config.Duration(100 * time.Millisecond)
	if !eventsLog {
		cfg.EventsLogURL, cfg.EventsLogUser, cfg.EventsLogPasswordFile = "", "", ""
	}
	broker, sub := startBroker(t)
	return &rig{t: t, g: g, broker: broker, sub: sub, cfg: cfg, state: filepath.Join(dir, "state"), dir: dir}
}

// sources starts a Sources with fast timings and the fake clock.
func (r *rig) sources(pub Publisher) *Sources {
	r.t.Helper()
	return r.sourcesWith(pub, nil)
}

// sourcesWith is sources with options changed by tune.
func (r *rig) sourcesWith(pub Publisher, tune func(*options)) *Sources {
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
	s.opts.dialTimeout = 30 * time.Second
	s.opts.persistEvery = 20 * time.Millisecond
	s.opts.now = r.g.Now
	s.opts.http = &http.Client{Timeout: 30 * time.Second}
	if tune != nil {
		tune(&s.opts)
	}
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
// byte for byte, on the topic Topic gives. It waits as long as messages
// keep coming, so a slow machine is slower, not a failure.
func (r *rig) expectExactly(want [][]byte) {
	r.t.Helper()
	const stall = 60 * time.Second
	if n, ok := gerrittest.Progress(stall, func() (int, bool) { n := r.sub.count(); return n, n >= len(want) }); !ok {
		r.t.Fatalf("waiting for %d messages: stuck at %d for %s%s", len(want), n, stall, misdelivery(r.sub.all(), want))
	}
	got := r.sub.all()
	if len(got) != len(want) {
		r.t.Errorf("got %d messages, want %d%s", len(got), len(want), misdelivery(got, want))
	}
	for i := range min(len(got), len(want)) {
		wt, _ := Topic("gerrit", want[i])
		if got[i].topic != wt || !bytes.Equal(got[i].payload, want[i]) {
			r.t.Fatalf("message %d: got %s %.120s\nwant %s %.120s%s", i, got[i].topic, got[i].payload, wt, want[i], misdelivery(got, want))
		}
	}
}

// misdelivery describes what went wrong in the terms of the events' testSeq
// numbers: which came twice, which are missing, and the first ones out of
// order, as a person reading the subscriber's output would report it.
func misdelivery(got []message, want [][]byte) string {
	seqOf := func(b []byte) int {
		var m struct{ TestSeq *int }
		if json.Unmarshal(b, &m) != nil || m.TestSeq == nil {
			return -1
		}
		return *m.TestSeq
	}
	pos := map[int]int{} // testSeq -> index in want
	for i, w := range want {
		if q := seqOf(w); q >= 0 {
			pos[q] = i
		}
	}
	seen := map[int]int{}
	var twice, unknown, reordered []int
	last := -1
	for _, m := range got {
		q := seqOf(m.payload)
		seen[q]++
		i, ok := pos[q]
		switch {
		case !ok:
			unknown = append(unknown, q)
		case seen[q] == 2:
			twice = append(twice, q)
		case seen[q] == 1 && i < last && len(reordered) < 20:
			reordered = append(reordered, q)
		}
		last = max(last, i)
	}
	var missing []int
	for _, w := range want {
		if q := seqOf(w); seen[q] == 0 {
			missing = append(missing, q)
		}
	}
	var order []int
	for _, m := range got {
		order = append(order, seqOf(m.payload))
	}
	return fmt.Sprintf("\norder: %v\ntwice: %v\nmissing: %v\nnot expected (testSeq, -1 = none): %v\nlate (first 20): %v", order, twice, missing, unknown, reordered)
}
