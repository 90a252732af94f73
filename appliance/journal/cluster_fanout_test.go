package journal

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/firehose/firehose/appliance/capture"
)

// fanConsumerName is the name of the server's consumer under the fan-out's
// ordered consumer now.
func (j *Journal) fanConsumerName() string {
	j.fanMu.Lock()
	defer j.fanMu.Unlock()
	if j.fanCons == nil || j.fanCons.CachedInfo() == nil {
		return ""
	}
	return j.fanCons.CachedInfo().Name
}

// TestClusterFanOutRestarts: node 3's fan-out consumer is made to start
// again every way it can: its consumer deleted on the server (the ordered
// consumer makes itself a new one), the stream's leader stepping down, and
// its iterator closed, twice (the journal replaces the consumer, as it
// does after a restarted server or a consumer that keeps failing). After
// each, node 3 has delivered every message exactly once, in order, and its
// log says from which sequence the consumer went on.
//
// Closing the iterator used to stop node 3's fan-out for up to five
// minutes: the replacement took the first name of the same series as the
// consumer it replaced, which still existed on the server, and the server
// refused it ("start sequence can not be updated") until it expired.
func TestClusterFanOutRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	var logs capture.Buffer
	js, sinks, _ := openClusterWith(t, 3, func(i int, j *Journal) {
		if i == 2 {
			j.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	})
	next := 0
	var names []string // node 3's fan-out consumer after each step
	appendBatch := func(n int) {
		t.Helper()
		for range n {
			if _, err := js[next%2].Append("t/x", []byte(strconv.Itoa(next)), false, 1); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	check := func(after string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for len(sinks[2].snapshot()) < next {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: node 3 delivered %d of %d messages in 60s; its log:\n%s", after, len(sinks[2].snapshot()), next, strings.Join(logs.Lines(), "\n"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		got := sinks[2].snapshot()
		for i, m := range got {
			if m.Seq != uint64(i+1) || string(m.Payload) != strconv.Itoa(i) {
				t.Fatalf("after %s: node 3's delivery %d is seq %d %q, want seq %d %q", after, i, m.Seq, m.Payload, i+1, strconv.Itoa(i))
			}
		}
		if len(got) != next {
			t.Fatalf("after %s: node 3 delivered %d messages, %d were journaled", after, len(got), next)
		}
		names = append(names, js[2].fanConsumerName())
	}
	appendBatch(100)
	check("the start")

	name := js[2].fanConsumerName()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js[0].js().DeleteConsumer(ctx, StreamName, name); err != nil {
		t.Fatalf("deleting node 3's fan-out consumer %s: %v", name, err)
	}
	appendBatch(100)
	check("its consumer was deleted")

	if _, err := js[0].conn.Load().nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+StreamName, nil, 10*time.Second); err != nil {
		t.Fatalf("stream leader step-down: %v", err)
	}
	appendBatch(100)
	check("the stream leader stepped down")

	for k := range 2 {
		js[2].stopFanIterator()
		appendBatch(100)
		check(fmt.Sprintf("its iterator was closed (%d)", k+1))
	}

	// Every consumer had a name never used before (the server refuses an
	// old name while a consumer under it lives), and those replaced are
	// gone from the server.
	seen := map[string]bool{}
	for i, n := range names {
		if seen[n] && n != names[i-1] {
			t.Errorf("node 3's fan-out consumers, step by step: %q: %s again", names, n)
		}
		seen[n] = true
	}
	waitFor(t, "node 3's replaced fan-out consumers to be deleted", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js[0].js().Stream(ctx, StreamName)
		if err != nil {
			return false
		}
		var left []string
		for c := range s.ConsumerNames(ctx).Name() {
			if strings.HasPrefix(c, "fanout-n3-") {
				left = append(left, c)
			}
		}
		return len(left) == 1 && left[0] == names[len(names)-1]
	})

	for _, want := range [][]string{
		{"journal fan-out: consumer starts", "from_seq=1 "},
		{"journal fan-out: consumer restarted", "from_seq=101 "},
		{"journal fan-out: consumer starts", "from_seq=301 "},
		{"journal fan-out: consumer starts", "from_seq=401 "},
	} {
		if len(logs.Lines(want...)) != 1 {
			t.Errorf("node 3's log has no one line with %q:\n%s", want, strings.Join(logs.Lines(), "\n"))
		}
	}
	if l := logs.Lines("sequence skipped"); len(l) != 0 {
		t.Errorf("node 3's fan-out skipped: %q", l)
	}
}

// stopRecorder is a fan-out iterator that only records that it was stopped.
type stopRecorder struct {
	jetstream.MessagesContext
	once    sync.Once
	stopped chan struct{}
}

func (s *stopRecorder) Stop() { s.once.Do(func() { close(s.stopped) }) }

// A fan-out that delivers nothing while the stream has more is replaced
// (its iterator stopped) once fanRestartAfter has passed without progress,
// and only then: not while it delivers, nor while it has nothing to do.
func TestFanStallReplacesConsumer(t *testing.T) {
	var logs capture.Buffer
	j := &Journal{log: slog.New(slog.NewTextHandler(&logs, nil))}
	it := &stopRecorder{stopped: make(chan struct{})}
	j.fanIt = it
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	steps := []struct {
		seen, last uint64
		at         time.Duration
		replace    bool
	}{
		{5, 5, 0, false}, // nothing to do
		{5, 5, fanRestartAfter + time.Second, false},
		{5, 7, fanRestartAfter + 2*time.Second, false}, // behind from here
		{5, 7, fanRestartAfter + 5*time.Second, false},
		{6, 8, 2*fanRestartAfter + time.Second, false}, // progress
		{6, 8, 3 * fanRestartAfter, false},
		{6, 8, 3*fanRestartAfter + 2*time.Second, true},  // fanRestartAfter + 1 s without progress
		{6, 8, 3*fanRestartAfter + 3*time.Second, false}, // once per fanRestartAfter
		{6, 8, 4*fanRestartAfter + 3*time.Second, true},
	}
	for i, s := range steps {
		j.lastSeen.Store(s.seen)
		if got := j.checkFanStall(s.last, at(s.at)); got != s.replace {
			t.Fatalf("step %d (seen %d, stream's last %d, at %s): replaced %v, want %v", i, s.seen, s.last, s.at, got, s.replace)
		}
	}
	select {
	case <-it.stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the iterator was not stopped")
	}
	if l := logs.Lines("replacing the consumer", "last_seq=6", "stream_last_seq=8"); len(l) != 2 {
		t.Fatalf("log lines about the replacement: %q", logs.String())
	}
}
