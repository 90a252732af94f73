package gerrit

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/gerrit/gerrittest"
)

// overlap is one run of the fault schedule of issue 11: events at a steady
// rate, each in a second of its own; the stream closed after every
// closeAfter events and SSH refused for refuse after each close; at some
// events Gerrit leaves events out of the live stream and then says
// dropped-output; the events-log answers at most page events per call.
type overlap struct {
	name       string
	events     int
	rate       float64
	page       int
	closeAfter int
	refuse     time.Duration
	asSample   bool        // events made from samples without eventCreatedOn have none
	skips      map[int]int // at event i, leave out n events, then a marker
	marker     []byte      // nil: {"type":"dropped-output"}
	holdAt     int         // >0: at this event, force a reconnect and hold its replay...
	holdFor    int         // ...for this many events, while skips go on
	wantClose  int         // at least this many CloseAfter closes
	wantReplay int64       // at least this many replays
	eventsLog  bool        // events-log configured (and working unless badLog)
	badLog     bool        // the events-log refuses the password
}

// TestOverlapSchedule runs the schedule of issue 11 and its variations
// through SSH, Sources and a real broker to a real MQTT subscriber, and
// checks that every event arrives exactly once and in Gerrit's order.
func TestOverlapSchedule(t *testing.T) {
	const refuse = 3 * time.Second
	issue := map[int]int{100: 20}
	for _, o := range []overlap{
		// The peer's schedule: 150 events at 15/s, close every 40, refuse
		// 3 s, skip 20 at event 100, pages of 25.
		{name: "issue", events: 150, rate: 15, page: 25, closeAfter: 40, refuse: refuse, skips: issue, eventsLog: true},
		// The same with the samples' own shapes: 18 of them have no
		// eventCreatedOn, as the peer sent them.
		{name: "issue_undated", events: 150, rate: 15, page: 25, closeAfter: 40, refuse: refuse, asSample: true, skips: issue, eventsLog: true},
		{name: "page1", events: 150, rate: 15, page: 1, closeAfter: 40, refuse: refuse, asSample: true, skips: issue, eventsLog: true},
		{name: "page5", events: 150, rate: 15, page: 5, closeAfter: 40, refuse: refuse, asSample: true, skips: issue, eventsLog: true},
		// At 50/s the refusal outlasts the rest of the run: the overflow
		// comes right after the reconnect, while its replay runs.
		{name: "rate50", events: 150, rate: 50, page: 25, closeAfter: 40, refuse: refuse, asSample: true, skips: issue, eventsLog: true},
		// Two overflows, the second right after the first's marker.
		{name: "two_overflows", events: 150, rate: 30, page: 5, closeAfter: 40, refuse: refuse, asSample: true, skips: map[int]int{100: 10, 110: 10}, eventsLog: true},
		// Real Gerrit dates its marker: its time must not move the replay
		// past the events it announces.
		{name: "dated_marker", events: 120, rate: 30, page: 5, skips: map[int]int{60: 20}, marker: []byte(`{"type":"dropped-output","eventCreatedOn":%d}`), eventsLog: true},
		// An overflow while a reconnect's replay waits for the events-log.
		{name: "overflow_during_replay", events: 120, rate: 30, page: 5, asSample: true, holdAt: 40, holdFor: 30, skips: map[int]int{50: 10}, eventsLog: true},
	} {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			runOverlap(t, o)
		})
	}
}

// TestDroppedOutputNotReplayed: when the gap a dropped-output announces
// cannot be replayed, the marker is published where the gap is, so that
// consumers know events are missing there.
func TestDroppedOutputNotReplayed(t *testing.T) {
	for _, o := range []overlap{
		{name: "no_events_log", events: 60, rate: 50, page: 5, skips: map[int]int{30: 10}},
		{name: "replay_fails", events: 60, rate: 50, page: 5, skips: map[int]int{30: 10}, eventsLog: true, badLog: true},
	} {
		t.Run(o.name, func(t *testing.T) {
			t.Parallel()
			runOverlap(t, o)
		})
	}
}

func runOverlap(t *testing.T, o overlap) {
	r := newRigWith(t, o.eventsLog, gerrittest.Options{PageLimit: o.page, CloseAfter: o.closeAfter, RefuseFor: o.refuse})
	r.cfg.QoS = 1
	if o.badLog {
		r.cfg.EventsLogPasswordFile = gerrittest.WriteFile(t, r.dir, "wrong.password", []byte("wrong\n"))
	}
	s := r.sources(nil)
	waitFor(t, 60*time.Second, "a stream-events session", func() bool { return r.g.Streaming() == 1 })

	streaming := func(what string) {
		waitFor(t, 60*time.Second, what, func() bool { return r.g.Streaming() == 1 })
	}
	skipped := map[int]bool{} // events the live stream left out
	markerAfter := map[int][]byte{}
	released := -1
	before := func(i int) {
		if o.holdAt > 0 && i == o.holdAt {
			// Force a reconnect and keep its replay waiting on the log.
			r.g.HoldLog()
			r.g.DropAll()
			waitFor(t, 60*time.Second, "the replay to wait on the events-log", func() bool {
				return r.g.Streaming() == 1 && r.g.LogWaiting() > 0
			})
			released = i + o.holdFor
		}
		if i == released {
			r.g.ReleaseLog()
		}
		if n, ok := o.skips[i]; ok {
			streaming("a session to overflow")
			m := o.marker
			if m != nil {
				m = []byte(fmt.Sprintf(string(m), r.g.Now().Unix()+int64(n)))
			}
			r.g.SkipStream(n, m)
			for j := i; j < i+n; j++ {
				skipped[j] = true
			}
			markerAfter[i+n-1] = m
			if m == nil {
				markerAfter[i+n-1] = gerrittest.DroppedOutput
			}
		}
	}
	evs := r.g.Play(gerrittest.Schedule{
		Samples: readSamples(t), Events: o.events, Rate: o.rate, AsSample: o.asSample, Before: before,
	})
	r.g.ReleaseLog()
	if o.closeAfter > 0 {
		// The run may end in a refusal: the last events come by replay.
		streaming("the last reconnect")
	}

	// What a subscriber must see, in order. With the gaps replayed: every
	// event, and no dropped-output (its gap is filled; Gerrit's markers are
	// not events). Without: what the stream delivered, with each marker
	// where its gap is.
	replayable := o.eventsLog && !o.badLog
	var want [][]byte
	for i, ev := range evs {
		if replayable {
			if !isDroppedOutput(ev) {
				want = append(want, ev)
			}
			continue
		}
		if !skipped[i] {
			want = append(want, ev)
		}
		if m, ok := markerAfter[i]; ok {
			want = append(want, m)
		}
	}
	// Streamed last, after everything: a duplicate of anything before it
	// would arrive first.
	end := []byte(fmt.Sprintf(`{"type":"end","project":"end","eventCreatedOn":%d}`, r.g.Now().Unix()+1))
	r.g.Emit(end, true, true)
	want = append(want, end)
	r.expectExactly(want)

	// The faults happened as scheduled, and the status says so.
	if got := r.g.Markers(); got != len(o.skips) {
		t.Errorf("%d dropped-output markers sent, want %d", got, len(o.skips))
	}
	// How many closes fall within the run depends on when the reconnects
	// land; each close, marker and forced reconnect costs a replay.
	closes := r.g.Closes()
	if o.closeAfter > 0 && closes < 1 {
		t.Error("the stream was never closed")
	}
	wantReplays := int64(closes + len(o.skips))
	if o.holdAt > 0 {
		wantReplays++
	}
	if !o.eventsLog || o.badLog {
		wantReplays = 0
	}
	st := status(s)
	if st.EventsPublished != int64(len(want)) {
		t.Errorf("published %d, want %d: %+v", st.EventsPublished, len(want), st)
	}
	if st.Replays < wantReplays {
		t.Errorf("%d replays, want at least %d: %+v", st.Replays, wantReplays, st)
	}
	if st.DroppedOutput < int64(len(o.skips)) {
		t.Errorf("dropped_output %d, want at least %d", st.DroppedOutput, len(o.skips))
	}
	if replayable {
		if st.Replayed == 0 || st.ReplayFailures != 0 {
			t.Errorf("status = %+v", st)
		}
		waitFor(t, 60*time.Second, "no problems", func() bool { return len(s.Problems()) == 0 })
	}
	if o.badLog {
		p := strings.Join(s.Problems(), "\n")
		if st.ReplayFailures == 0 || !strings.Contains(p, "401") {
			t.Errorf("a failed replay is not reported: %+v, problems %q", st, p)
		}
	}
}

func isDroppedOutput(ev []byte) bool {
	var m struct{ Type string }
	json.Unmarshal(ev, &m)
	return m.Type == "dropped-output"
}

// TestReaderOverflowReplayed: while a replay waits for the events-log, the
// stream fills the reader's queue and lines are dropped; that gap is filled
// from the log like one Gerrit announces, in order. The log lags here, so
// that only the gap's own replay can find them.
func TestReaderOverflowReplayed(t *testing.T) {
	r := newRig(t, true)
	s := r.sourcesWith(nil, func(o *options) { o.pendingLen = 5 })
	waitFor(t, 60*time.Second, "a stream-events session", func() bool { return r.g.Streaming() == 1 })
	samples := readSamples(t)
	seq := 0
	want := generate(r, samples, &seq, 5, true, true)
	r.expectExactly(want)

	r.g.HoldLog()
	r.g.DropAll()
	waitFor(t, 60*time.Second, "the replay to wait on the events-log", func() bool {
		return r.g.Streaming() == 1 && r.g.LogWaiting() > 0
	})
	late := generate(r, samples, &seq, 20, false, true) // not in the log yet
	waitFor(t, 60*time.Second, "the reader to overflow", func() bool { return status(s).QueueOverflow == 15 })
	r.g.ReleaseLog()
	want = append(want, late...)
	gerrittest.WaitCount(t, 60*time.Second, "the queued lines published", 10, r.sub.count)
	for _, ev := range late {
		r.g.Emit(ev, true, false) // the log catches up
	}
	// The next line marks the gap: a stream is never quiet for long.
	want = append(want, generate(r, samples, &seq, 5, true, true)...)
	r.expectExactly(want)
	if st := status(s); st.Replays != 2 || st.DroppedOutput != 0 || st.Replayed < 15 {
		t.Errorf("status = %+v", st)
	}
}
