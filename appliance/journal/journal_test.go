package journal

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/config"
)

// sink collects what the fan-out delivers.
type sink struct {
	mu   sync.Mutex
	msgs []Message
}

func (s *sink) deliver(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.Payload = append([]byte(nil), m.Payload...)
	s.msgs = append(s.msgs, m)
}

func (s *sink) snapshot() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

func testConfig(dir string) Config {
	return Config{Dir: dir, MaxAge: time.Hour, MaxBytes: 64 << 20, Sync: config.SyncPolicy{Interval: time.Second}}
}

func open(t *testing.T, cfg Config) (*Journal, *sink) {
	return openWith(t, cfg, nil)
}

// openWith lets a test change the journal before it starts.
func openWith(t *testing.T, cfg Config, before func(*Journal)) (*Journal, *sink) {
	t.Helper()
	j, err := Open(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(j)
	}
	s := &sink{}
	if err := j.Start(s.deliver); err != nil {
		j.Close()
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j, s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAppendFansOutInOrder(t *testing.T) {
	j, s := open(t, testConfig(t.TempDir()))
	topics := []string{"gerrit/openstack/nova/comment-added", "zuul/x", "gerrit/openstack/nova/stable/2023.1", "gerrit//dropped-output", "a b/ü"}
	for i, tp := range topics {
		seq, err := j.Append(tp, []byte(fmt.Sprint(i)), false, byte(i%2))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("seq = %d, want %d", seq, i+1)
		}
	}
	waitFor(t, "fan-out", func() bool { return len(s.snapshot()) == len(topics) })
	for i, m := range s.snapshot() {
		if m.Seq != uint64(i+1) || m.Topic != topics[i] || string(m.Payload) != fmt.Sprint(i) || m.QoS != byte(i%2) || m.Time.IsZero() {
			t.Errorf("message %d = %+v", i, m)
		}
	}
	if _, err := j.Append("$SYS/x", nil, false, 0); err == nil {
		t.Error("a $SYS topic was journaled")
	}
	// History with a filter: the store's subject index picks the matches.
	var got []string
	err := j.History(context.Background(), "gerrit/openstack/nova/#", From{Seq: 1}, 0, func(m Message) error {
		got = append(got, fmt.Sprintf("%d %s", m.Seq, m.Topic))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[1 gerrit/openstack/nova/comment-added 3 gerrit/openstack/nova/stable/2023.1]"; fmt.Sprint(got) != want {
		t.Errorf("history = %v, want %s", got, want)
	}
	got = nil
	_ = j.History(context.Background(), "#", From{Seq: 2}, 2, func(m Message) error {
		got = append(got, fmt.Sprint(m.Seq))
		return nil
	})
	if fmt.Sprint(got) != "[2 3]" {
		t.Errorf("history from 2, limit 2 = %v", got)
	}
}

// The follower's history and live parts meet with no gap and no repeat
// while messages keep coming.
func TestFollowSeam(t *testing.T) {
	j, _ := open(t, testConfig(t.TempDir()))
	const total = 400
	for i := range total / 2 {
		if _, err := j.Append("t/a", []byte(fmt.Sprint(i)), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		for i := total / 2; i < total; i++ {
			if _, err := j.Append("t/a", []byte(fmt.Sprint(i)), false, 0); err != nil {
				done <- err
				return
			}
			time.Sleep(time.Millisecond) // a steady rate across the seam
		}
		done <- nil
	}()
	f, err := j.Follow(context.Background(), "t/#", From{Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	for want := uint64(1); want <= total; want++ {
		m, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		if m.Seq != want || string(m.Payload) != fmt.Sprint(want-1) {
			t.Fatalf("got seq %d payload %q, want seq %d", m.Seq, m.Payload, want)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRetainedSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, testConfig(dir))
	mustAppend := func(tp, p string, retain bool) {
		if _, err := j.Append(tp, []byte(p), retain, 0); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend("r/a", "a1", true)
	mustAppend("r/a", "a2", true)
	mustAppend("r/b", "b1", true)
	mustAppend("r/c", "c1", true)
	mustAppend("r/c", "", true) // clears
	mustAppend("r/d", "not retained", false)
	// The retained stream copies them (c's last one is the clearing one).
	waitFor(t, "the retained stream", func() bool { return j.Status().Retained == 3 })
	j.Close()

	_, s := open(t, testConfig(dir))
	got := map[string]string{}
	for _, m := range s.snapshot() {
		if !m.Retain || m.Seq == 0 {
			t.Errorf("restored %+v", m)
		}
		got[m.Topic] = string(m.Payload)
	}
	if fmt.Sprint(got) != "map[r/a:a2 r/b:b1]" {
		t.Errorf("restored %v", got)
	}
}

func TestRetentionExpires(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MaxAge = time.Second
	j, _ := open(t, cfg)
	for range 3 {
		if _, err := j.Append("old/x", []byte("x"), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "expiry", func() bool {
		b, err := j.Bounds(context.Background())
		return err == nil && b.Messages == 0 && b.FirstSeq == 4
	})
	if _, err := j.Append("new/x", []byte("x"), false, 0); err != nil {
		t.Fatal(err)
	}
	b, _ := j.Bounds(context.Background())
	if b.FirstSeq != 4 || b.LastSeq != 4 {
		t.Errorf("bounds = %+v", b)
	}
}

func TestUpdateLimits(t *testing.T) {
	j, _ := open(t, testConfig(t.TempDir()))
	cfg := testConfig("")
	cfg.Dir = j.cfg.Dir
	cfg.MaxAge, cfg.MaxBytes = 2*time.Hour, 2<<30
	if err := j.Update(cfg); err != nil {
		t.Fatal(err)
	}
	s, err := j.js().Stream(context.Background(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.MaxAge != 2*time.Hour || c.MaxBytes != 2<<30 {
		t.Errorf("stream config = %v %v", c.MaxAge, c.MaxBytes)
	}
}

// The retained stream catches up after a restart that came before it had
// copied the last retained messages, and the restore does not wait for it.
func TestRetainedCatchUpAfterRestart(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, testConfig(dir))
	for i := range 50 {
		if _, err := j.Append(fmt.Sprintf("r/%d", i), []byte("v"), true, 0); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	j2, s := open(t, testConfig(dir))
	if n := len(s.snapshot()); n != 50 {
		t.Fatalf("restored %d retained messages, want 50", n)
	}
	waitFor(t, "the retained stream to catch up", func() bool { return j2.Status().Retained == 50 })
}

// A stored message the fan-out cannot read (written to the stream by
// something else) is passed over but counted as seen, so that the fan-out
// is not taken to be behind it (checkFanStall would replace its consumer
// every 10 s).
func TestFanOutPassesOverUnreadable(t *testing.T) {
	j, s := open(t, testConfig(t.TempDir()))
	if _, err := j.Append("zuul/x", []byte("before"), false, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := j.js().Publish(ctx, "firehose.unknown-kind.x", []byte("?")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unreadable message counted as seen", func() bool { return j.lastSeen.Load() == 2 })
	if got := s.snapshot(); len(got) != 1 || got[0].Seq != 1 || string(got[0].Payload) != "before" {
		t.Fatalf("delivered %+v", got)
	}
}
