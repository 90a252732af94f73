package gerrit

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
)

// TestPlaybackSamples streams the real samples verbatim, with garbage and
// huge lines mixed in, through SSH, Sources and a real broker.
func TestPlaybackSamples(t *testing.T) {
	r := newRig(t, false)
	s := r.sources(nil)
	waitFor(t, 60*time.Second, "a stream-events session", func() bool { return r.g.Streaming() == 1 })

	samples := readSamples(t)
	var want [][]byte
	for _, line := range samples {
		r.g.Emit(line, false, true)
		want = append(want, line)
	}
	for _, junk := range []string{"not json", "[1,2]", "null", `{"type":"truncated`} {
		r.g.Emit([]byte(junk), false, true)
	}
	// Over the 16 MiB limit: skipped, even though it is valid JSON.
	huge := []byte(`{"type":"huge","pad":"` + strings.Repeat("h", 17<<20) + `"}`)
	r.g.Emit(huge, false, true)
	// Big but within the limit: published whole.
	big := []byte(`{"type":"big","project":"p","pad":"` + strings.Repeat("b", 3<<20) + `"}`)
	r.g.Emit(big, false, true)
	want = append(want, big)
	end := []byte(`{"type":"end","project":"a+b/c#d"}`)
	r.g.Emit(end, false, true)
	want = append(want, end)

	r.expectExactly(want)
	if got := r.sub.all(); got[len(got)-1].topic != "gerrit/a%2Bb/c%23d/end" {
		t.Errorf("escaped topic = %q", got[len(got)-1].topic)
	}
	st := status(s)
	if st.ParseErrors != 4 || st.LinesTooLong != 1 || st.EventsPublished != int64(len(want)) || st.State != apitype.GerritStreaming {
		t.Errorf("status = %+v", st)
	}
	if p := s.Problems(); len(p) != 0 {
		t.Errorf("problems while streaming: %q", p)
	}
}

// generate emits n distinct events made from the samples, three per second
// of the fake clock, to the log and/or the stream. It returns what a
// subscriber gets when the events-log fills every gap: the sample
// {"type":"dropped-output"} is emitted too, but as a marker whose gap is
// filled it is not published.
func generate(r *rig, samples [][]byte, seq *int, n int, toLog, toStream bool) [][]byte {
	var out [][]byte
	for range n {
		ev := r.g.Event(samples[*seq%len(samples)], *seq)
		*seq++
		if *seq%3 == 0 {
			r.g.Tick()
		}
		r.g.Emit(ev, toLog, toStream)
		if !isDroppedOutput(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// TestReconnectReplaysGap drops the connection mid-stream while events keep
// coming; after the server returns, every event arrives exactly once, in
// order, the missed ones from the events-log in pages.
func TestReconnectReplaysGap(t *testing.T) {
	r, s, samples := streaming(t)
	seq := 0
	want := generate(r, samples, &seq, 20, true, true)
	gerrittest.WaitCount(t, 60*time.Second, "the first events", 20, r.sub.count)

	r.g.SetRefuse(true)
	r.g.DropAll()
	want = append(want, generate(r, samples, &seq, 30, true, true)...)
	waitFor(t, 60*time.Second, "the source to notice", func() bool { return status(s).State != apitype.GerritStreaming })
	want = append(want, generate(r, samples, &seq, 10, true, true)...)
	r.g.SetRefuse(false)
	// Events keep coming while the source reconnects and replays.
	for range 20 {
		want = append(want, generate(r, samples, &seq, 1, true, true)...)
		if r.g.Streaming() == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond) // pacing the producer, not synchronisation
	}
	waitFor(t, 60*time.Second, "the reconnect", func() bool { return r.g.Streaming() == 1 })
	want = append(want, generate(r, samples, &seq, 10, true, true)...)
	r.expectExactly(want)
	waitFor(t, 60*time.Second, "the replay to finish", func() bool { return status(s).State == apitype.GerritStreaming })
	st := status(s)
	if st.Replayed < 40 || st.Reconnects < 1 || st.Replays < 1 {
		t.Errorf("status = %+v", st)
	}
	q := r.g.Queries()
	if q < 2 {
		t.Errorf("%d events-log queries: paging not exercised", q)
	}
}

// TestHalfOpen freezes the connection without closing it: the keepalive
// notices, the source reconnects and replays what the dead connection lost.
func TestHalfOpen(t *testing.T) {
	r, s, samples := streaming(t)
	seq := 0
	want := generate(r, samples, &seq, 5, true, true)
	gerrittest.WaitCount(t, 60*time.Second, "the first events", 5, r.sub.count)

	frozenAt := time.Now()
	r.g.Freeze()
	want = append(want, generate(r, samples, &seq, 10, true, true)...)
	waitFor(t, 60*time.Second, "the keepalive to give up", func() bool {
		return strings.Contains(status(s).LastError, "keepalive")
	})
	// 100 ms keepalive, 3 misses: ~0.4 s. Without the keepalive only TCP
	// would notice, after many minutes; allow for a busy race-enabled run.
	if d := time.Since(frozenAt); d > 20*time.Second {
		t.Errorf("half-open connection detected after %s", d)
	}
	waitFor(t, 60*time.Second, "the reconnect", func() bool { return r.g.Streaming() == 1 })
	want = append(want, generate(r, samples, &seq, 5, true, true)...)
	r.expectExactly(want)
}

// TestDroppedOutput: Gerrit dropped events of the session and said so; the
// source replays them from the log, in their place, and does not publish
// the marker: its gap is filled.
func TestDroppedOutput(t *testing.T) {
	r, s, samples := streaming(t)
	seq := 0
	want := generate(r, samples, &seq, 5, true, true)
	want = append(want, generate(r, samples, &seq, 3, true, false)...) // lost
	r.g.Emit(gerrittest.DroppedOutput, false, true)
	want = append(want, generate(r, samples, &seq, 5, true, true)...)
	r.expectExactly(want)
	waitFor(t, 60*time.Second, "the replay to finish", func() bool { return status(s).State == apitype.GerritStreaming })
	if st := status(s); st.Replays != 1 || st.Reconnects != 0 || st.Replayed < 3 || st.DroppedOutput != 1 {
		t.Errorf("status = %+v", st)
	}
}

// TestRestartReplaysOutage stops the daemon's publisher, lets events pass,
// and starts a new one on the same state directory.
func TestRestartReplaysOutage(t *testing.T) {
	r, s1, samples := streaming(t)
	seq := 0
	want := generate(r, samples, &seq, 10, true, true)
	gerrittest.WaitCount(t, 60*time.Second, "the first events", 10, r.sub.count)
	s1.Close()
	if _, err := os.Stat(statePath(r.state, "test")); err != nil {
		t.Fatalf("no position saved: %v", err)
	}
	waitFor(t, 60*time.Second, "the session to end", func() bool { return r.g.Streaming() == 0 })
	want = append(want, generate(r, samples, &seq, 10, true, true)...)

	s2 := r.sources(nil)
	waitFor(t, 60*time.Second, "a new session", func() bool { return r.g.Streaming() == 1 })
	want = append(want, generate(r, samples, &seq, 3, true, true)...)
	r.expectExactly(want)
	if st := status(s2); st.Replayed < 10 {
		t.Errorf("status = %+v", st)
	}
}

// TestUnknownHostKey: a server whose key known_hosts does not hold is
// refused, and the status names the key it offered.
func TestUnknownHostKey(t *testing.T) {
	for _, tt := range []struct {
		name, otherHost, want string
	}{
		{"mismatch", "", "does not match"},
		{"unknown", "[other.example]:29418", "is not in"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, false)
			_, other := gerrittest.NewKey(t)
			host := knownhosts.Normalize(r.g.Addr)
			if tt.otherHost != "" {
				host = tt.otherHost
			}
			os.WriteFile(r.cfg.KnownHosts, []byte(knownhosts.Line([]string{host}, other.PublicKey())+"\n"), 0o600)
			s := r.sources(nil)
			waitFor(t, 60*time.Second, "backing off", func() bool { return status(s).State == apitype.GerritBackingOff })
			st := status(s)
			fp := ssh.FingerprintSHA256(r.g.HostKey.PublicKey())
			if !strings.Contains(st.LastError, tt.want) || !strings.Contains(st.LastError, "ssh-ed25519 "+fp) {
				t.Errorf("last error %q does not name the offered key %s", st.LastError, fp)
			}
			p := s.Problems()
			if len(p) != 1 || !strings.HasPrefix(p[0], `gerrit "test": backing off after: host key`) {
				t.Errorf("problems = %q", p)
			}
			if r.g.Execs() != 0 {
				t.Error("a command ran on an unverified server")
			}
		})
	}
}

// flakyBroker fails while down is set, as a broker in trouble would.
type flakyBroker struct {
	mu   sync.Mutex
	down bool
	got  [][]byte
}

func (b *flakyBroker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return errors.New("broker unavailable")
	}
	b.got = append(b.got, payload)
	return nil
}

func (b *flakyBroker) set(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

func (b *flakyBroker) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

// TestBrokerOutage: events wait in the queue while the broker refuses them
// and go out in order once it recovers; the stream never stops.
func TestBrokerOutage(t *testing.T) {
	r := newRig(t, false)
	b := &flakyBroker{down: true}
	s := r.sources(b)
	waitFor(t, 60*time.Second, "a stream-events session", func() bool { return r.g.Streaming() == 1 })
	samples := readSamples(t)
	seq := 0
	want := generate(r, samples, &seq, 20, false, true)
	waitFor(t, 60*time.Second, "the failure to show", func() bool {
		p := s.Problems()
		return len(p) == 1 && strings.Contains(p[0], "broker refuses")
	})
	waitFor(t, 60*time.Second, "all events queued", func() bool { return status(s).QueueLength == 20-1 })
	b.set(false)
	gerrittest.WaitCount(t, 60*time.Second, "all events published", 20, b.count)
	b.mu.Lock()
	for i := range want {
		if !bytes.Equal(b.got[i], want[i]) {
			t.Fatalf("event %d out of order", i)
		}
	}
	b.mu.Unlock()
	if st := status(s); st.State != apitype.GerritStreaming || st.PublishErrors == 0 || len(s.Problems()) != 0 {
		t.Errorf("status = %+v, problems %q", st, s.Problems())
	}
}

// TestUpdate: an unchanged source keeps its connection, a changed one
// restarts with the new settings, a removed one stops.
func TestUpdate(t *testing.T) {
	r := newRig(t, false)
	s := r.sources(nil)
	waitFor(t, 60*time.Second, "a stream-events session", func() bool { return r.g.Streaming() == 1 })
	execs := r.g.Execs
	waitFor(t, 60*time.Second, "streaming", func() bool { return status(s).State == apitype.GerritStreaming })
	s.Update([]config.Gerrit{r.cfg})
	if execs() != 1 || status(s).State != apitype.GerritStreaming {
		t.Fatal("an unchanged source was restarted")
	}
	changed := r.cfg
	changed.Topic = "review"
	s.Update([]config.Gerrit{changed})
	waitFor(t, 60*time.Second, "the restart", func() bool { return execs() == 2 && r.g.Streaming() == 1 })
	r.g.Emit([]byte(`{"type":"t","project":"p"}`), false, true)
	waitFor(t, 60*time.Second, "the event", func() bool { return status(s).EventsPublished == 1 })
	s.Update(nil)
	if len(s.Status()) != 0 || len(s.Problems()) != 0 {
		t.Errorf("a removed source is still reported: %+v", s.Status())
	}
	waitFor(t, 60*time.Second, "the session to end", func() bool { return r.g.Streaming() == 0 })
}

// TestReplayPastFullSecond: more events in one second than the events-log
// returns per answer. The plugin cannot page inside a second, so the replay
// must go on from the next second instead of stopping at that page, or
// everything after it is lost.
func TestReplayPastFullSecond(t *testing.T) {
	r, s, samples := streaming(t)
	var want [][]byte
	for i := range 10 { // one second, more than the page limit of 7
		ev := r.g.Event(samples[i], i)
		r.g.Emit(ev, true, true)
		want = append(want, ev)
	}
	gerrittest.WaitCount(t, 60*time.Second, "the first events", 10, r.sub.count)

	r.g.SetRefuse(true)
	r.g.DropAll()
	waitFor(t, 60*time.Second, "the source to notice", func() bool { return status(s).State != apitype.GerritStreaming })
	r.g.Tick()
	for i := 10; i < 15; i++ { // missed: only the events-log has them
		ev := r.g.Event(samples[i], i)
		r.g.Emit(ev, true, false)
		want = append(want, ev)
	}
	r.g.SetRefuse(false)
	r.expectExactly(want)
}

// streaming starts a rig with an events-log whose source is streaming, and
// the samples to play through it.
func streaming(t *testing.T) (*rig, *Sources, [][]byte) {
	t.Helper()
	r := newRig(t, true)
	s := r.sources(nil)
	waitFor(t, 60*time.Second, "a stream-events session", func() bool { return r.g.Streaming() == 1 })
	return r, s, readSamples(t)
}
