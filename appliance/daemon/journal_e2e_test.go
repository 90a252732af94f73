package daemon_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firehose/firehose/appliance/apitype"
)

// TestJournalResume: a consumer away for N messages gets exactly those, in
// order, when it comes back: over SSE with Last-Event-ID, and from
// /v0/events with since.
func TestJournalResume(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	pub := newQoS1Publisher(t, d)
	q := url.Values{"filter": {"zuul/resume/#"}}

	s := d.sse(q, "")
	for i := 1; i <= 10; i++ {
		pub.publish("zuul/resume", fmt.Sprint("m", i))
	}
	var last eventLine
	for i := 1; i <= 10; i++ {
		last = s.nextMessage()
		if last.text() != fmt.Sprint("m", i) || last.Topic != "zuul/resume" {
			t.Fatalf("live event %d = %+v", i, last)
		}
	}
	s.close()

	// Away: 25 messages, and one on a topic the filter leaves out.
	for i := 11; i <= 35; i++ {
		pub.publish("zuul/resume", fmt.Sprint("m", i))
		if i == 20 {
			pub.publish("zuul/elsewhere", "not matched")
		}
	}
	missed := numbered("m", 11, 35)

	back := d.sse(q, strconv.FormatUint(last.Seq, 10))
	var got []string
	for range missed {
		got = append(got, back.nextMessage().text())
	}
	if !slices.Equal(got, missed) {
		t.Fatalf("resumed by Last-Event-ID: got %q, want %q", got, missed)
	}
	pub.publish("zuul/resume", "live again")
	if e := back.nextMessage(); e.text() != "live again" {
		t.Fatalf("after the replay: %+v", e)
	}

	hq := url.Values{"filter": {"zuul/resume/#"}, "since": {strconv.FormatUint(last.Seq+1, 10)}, "limit": {"25"}}
	if got := payloads(t, d.history(hq)); !slices.Equal(got, missed) {
		t.Fatalf("/v0/events since=%d: got %q, want %q", last.Seq+1, got, missed)
	}
	sq := url.Values{"filter": {"zuul/resume"}, "since": {strconv.FormatUint(last.Seq+1, 10)}}
	bySince := d.sse(sq, "")
	got = nil
	for range missed {
		got = append(got, bySince.nextMessage().text())
	}
	if !slices.Equal(got, missed) {
		t.Fatalf("resumed by since: got %q, want %q", got, missed)
	}
}

// TestJournalSeamNoGapNoDuplicate: a consumer starting from the beginning
// while publishing goes on at a steady rate reads history, then live, with
// every sequence exactly once.
func TestJournalSeamNoGapNoDuplicate(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	pub := newQoS1Publisher(t, d)
	const total = 600
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond) // 200/s, steady
		defer tick.Stop()
		for i := 1; i <= total; i++ {
			<-tick.C
			if err := wait(pub.c.Publish("zuul/seam", 1, false, fmt.Sprint(i))); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			if i == total/3 {
				close(started)
			}
		}
	}()
	<-started
	s := d.sse(url.Values{"filter": {"zuul/seam"}, "since": {"1"}}, "")
	for want := 1; want <= total; want++ {
		e := s.nextMessage()
		if e.Seq != uint64(want) || e.text() != fmt.Sprint(want) {
			t.Fatalf("event %d: seq %d payload %q", want, e.Seq, e.text())
		}
	}
	<-done
}

// TestJournalKill9KeepsAcknowledged: every message acknowledged before a
// kill -9 under load is in the journal after a restart, and the sequence
// goes on from there.
func TestJournalKill9KeepsAcknowledged(t *testing.T) {
	state := t.TempDir()
	d := startDaemon(t, daemonOpts{stateDir: state})
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := paho.NewClient(pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
			if err := wait(c.Connect()); err != nil {
				t.Errorf("connect: %v", err)
				return
			}
			defer c.Disconnect(0)
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("w%d-%d", w, i)
				if wait(c.Publish("zuul/kill", 1, false, p)) != nil {
					return // the daemon is gone
				}
				mu.Lock()
				acked = append(acked, p)
				mu.Unlock()
			}
		}()
	}
	eventually(t, "500 acknowledged messages", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 500
	})
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	close(stop)
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()

	d2 := startDaemon(t, daemonOpts{stateDir: state})
	lines := d2.history(url.Values{"since": {"0"}, "limit": {"10000"}})
	have := map[string]bool{}
	var last uint64
	for _, p := range payloads(t, lines) {
		have[p] = true
	}
	if len(lines) > 0 {
		last = lines[len(lines)-1].Seq
	}
	for _, p := range want {
		if !have[p] {
			t.Fatalf("acknowledged message %q is not in the journal after kill -9 (%d acknowledged, %d journaled)", p, len(want), len(have))
		}
	}
	newQoS1Publisher(t, d2).publish("zuul/kill", "after restart")
	after := d2.history(url.Values{"since": {strconv.FormatUint(last+1, 10)}})
	if len(after) != 1 || after[0].Seq != last+1 || after[0].text() != "after restart" {
		t.Fatalf("after the restart: %+v, want seq %d", after, last+1)
	}
	t.Logf("%d acknowledged before kill -9, %d journaled, sequence goes on at %d", len(want), len(have), last+1)
}

// TestJournalRetainedSurviveRestart: retained messages come back after a
// restart, with their sequence numbers; a cleared one stays cleared.
func TestJournalRetainedSurviveRestart(t *testing.T) {
	state := t.TempDir()
	d := startDaemon(t, daemonOpts{stateDir: state})
	for _, m := range [][]string{
		{"zuul/status/a", "up"}, {"zuul/status/b", "down"}, {"zuul/status/b", "up again"}, {"zuul/status/c", "x"}, {"zuul/status/c", ""},
	} {
		if code, out := mosquittoPub(t, d.addr["mqtt"], "-u", "zuul", "-P", zuulPass, "-t", m[0], "-m", m[1], "-r", "-q", "1"); code != 0 {
			t.Fatalf("mosquitto_pub -r: exit %d: %s", code, out)
		}
	}
	d.stop()

	d2 := startDaemon(t, daemonOpts{stateDir: state})
	got := pythonSubscribeV5(t, d2, "zuul/status/#", 2, nil)
	slices.Sort(got)
	want := []string{"zuul/status/a up firehose-seq=1 retain=1", "zuul/status/b up again firehose-seq=3 retain=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("retained after restart: %q, want %q", got, want)
	}
	// The retained stream copies from the journal in the background.
	eventually(t, "3 retained topics in status (one of them cleared)", func() bool {
		st := d2.status()
		return st.Journal != nil && st.Journal.Retained == 3
	})
}

// TestJournalPubackImpliesJournaled: the moment a QoS 1 PUBACK arrives,
// the message is in the journal.
func TestJournalPubackImpliesJournaled(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	pub := newQoS1Publisher(t, d)
	for i := 1; i <= 20; i++ {
		p := fmt.Sprint("acked-", i)
		pub.publish("zuul/ack", p)
		lines := d.history(url.Values{"since": {strconv.Itoa(i)}})
		if len(lines) != 1 || lines[0].text() != p || lines[0].Seq != uint64(i) {
			t.Fatalf("right after the PUBACK of %q the journal has %+v", p, lines)
		}
	}
}

// TestJournalFirehoseSeqUserProperty: an MQTT 5 subscriber (Python's paho)
// gets each message's sequence number as the user property firehose-seq.
func TestJournalFirehoseSeqUserProperty(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	pub := newQoS1Publisher(t, d)
	pub.publish("zuul/seq", "one") // seq 1, before the subscriber
	got := pythonSubscribeV5(t, d, "zuul/seq", 2, func() {
		pub.publish("zuul/seq", "two")
		pub.publish("zuul/seq", "three")
	})
	want := []string{"zuul/seq two firehose-seq=2 retain=0", "zuul/seq three firehose-seq=3 retain=0"}
	if !slices.Equal(got, want) {
		t.Fatalf("python paho MQTT 5 received %q, want %q", got, want)
	}
}

// pythonSubscribeV5 subscribes with Python's paho (MQTT 5) and returns n
// messages as "topic payload firehose-seq=N retain=R"; publish, if set,
// runs once the subscription is acknowledged.
func pythonSubscribeV5(t *testing.T, d *daemon, filter string, n int, publish func()) []string {
	t.Helper()
	host, port, _ := strings.Cut(d.addr["mqtt"], ":")
	script := `
import sys, paho.mqtt.client as mqtt
host, port, filt, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
got = []
def on_connect(c, u, f, rc, props=None):
    c.subscribe(filt, qos=0)
def on_subscribe(c, u, mid, rc, props=None):
    print("SUBSCRIBED", flush=True)
def on_message(c, u, m):
    props = dict(m.properties.UserProperty) if hasattr(m.properties, "UserProperty") else {}
    print("%s %s firehose-seq=%s retain=%d" % (m.topic, m.payload.decode(), props.get("firehose-seq", "none"), m.retain), flush=True)
    got.append(m)
    if len(got) == n:
        c.disconnect()
c = mqtt.Client(client_id="", protocol=mqtt.MQTTv5)
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect(host, port)
c.loop_forever()
`
	cmd := exec.Command("/usr/bin/python3", "-c", script, host, port, filter, strconv.Itoa(n))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("python3 (install python3-paho-mqtt): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		buf := make([]byte, 0, 4096)
		one := make([]byte, 1)
		for {
			if _, err := out.Read(one); err != nil {
				return
			}
			if one[0] == '\n' {
				lines <- string(buf)
				buf = buf[:0]
				continue
			}
			buf = append(buf, one[0])
		}
	}()
	var got []string
	timeout := time.After(60 * time.Second)
	for len(got) < n {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("python paho ended after %q", got)
			}
			if l == "SUBSCRIBED" {
				if publish != nil {
					publish()
				}
				continue
			}
			got = append(got, l)
		case <-timeout:
			t.Fatalf("python paho received %q within 60s, want %d messages", got, n)
		}
	}
	return got
}

// TestJournalSSEWithCurl: Debian's curl reads the stream, resuming with
// Last-Event-ID, history then live.
func TestJournalSSEWithCurl(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	pub := newQoS1Publisher(t, d)
	for i := 1; i <= 3; i++ {
		pub.publish("zuul/curl", fmt.Sprintf(`{"n":%d}`, i))
	}
	cmd := exec.Command("curl", "-sN", "-H", "Last-Event-ID: 1", d.apiURL("/v0/events/stream", url.Values{"filter": {"zuul/#"}}))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("curl (install Debian's curl): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := readLines(out)
	var got []string
	deadline := time.After(60 * time.Second)
	published := false
	for len(got) < 6 {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "id: ") || strings.HasPrefix(l, "data: ") {
				got = append(got, l)
			}
			if len(got) == 4 && !published {
				published = true
				pub.publish("zuul/curl", `{"n":4}`)
			}
		case <-deadline:
			t.Fatalf("curl printed %q within 60s", got)
		}
	}
	for i, want := range []string{"id: 2", `"topic":"zuul/curl","payload":{"n":2}}`, "id: 3", `"payload":{"n":3}}`, "id: 4", `"payload":{"n":4}}`} {
		if !strings.Contains(got[i], want) {
			t.Fatalf("curl line %d = %q, want it to contain %q (all: %q)", i, got[i], want, got)
		}
	}
}

// TestJournalRetentionExpires: with a short max_age, old messages leave the
// journal, and a request for them says so instead of starting later
// silently.
func TestJournalRetentionExpires(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[journal]\nmax_age = \"2s\"\n"})
	pub := newQoS1Publisher(t, d)
	for i := 1; i <= 5; i++ {
		pub.publish("zuul/old", fmt.Sprint(i))
	}
	eventually(t, "the messages to expire", func() bool {
		s := d.summary()
		return s.Journal != nil && s.Journal.FirstSeq == 6
	})
	pub.publish("zuul/old", "new")
	lines := d.history(url.Values{"since": {"2"}})
	if len(lines) != 2 || lines[0].Truncated == nil || lines[0].Truncated.Requested != 2 || lines[0].Truncated.FirstSeq != 6 ||
		lines[1].Seq != 6 || lines[1].text() != "new" {
		t.Fatalf("history since an expired sequence: %+v", lines)
	}
	s := d.sse(url.Values{}, "1")
	if ev := s.next(); ev.event != "truncated" || !strings.Contains(ev.data, `"requested":2`) || !strings.Contains(ev.data, `"first_seq":6`) {
		t.Fatalf("first event resuming from an expired sequence: %+v", ev)
	}
	if e := s.nextMessage(); e.Seq != 6 {
		t.Fatalf("after the truncated notice: %+v", e)
	}
}

// TestJournalDiskFull: with the disk full, live fan-out goes on, status is
// degraded and says why; once there is room again a gap marker records
// what went out live only, and the journal goes on. Needs root (tmpfs).
func TestJournalDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("filling a disk needs a tmpfs, which needs root")
	}
	state := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "firehose-journal-test", state).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", state).Run() })
	filler := filepath.Join(state, "filler")
	if err := os.WriteFile(filler, make([]byte, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, daemonOpts{stateDir: state})
	live := subscribe(t, "tcp://"+d.addr["mqtt"], "zuul/#")
	pub := connect(t, pahoOpts("tcp://"+d.addr["mqtt"], "zuul", zuulPass))
	big := strings.Repeat("x", 32<<10)
	var sent atomic.Int64
	// One at a time, paced by a status request each, so that the live
	// subscriber never falls behind (which would drop messages for it).
	for i := 0; ; i++ {
		if i > 2000 {
			t.Fatal("the journal never ran out of disk")
		}
		if err := wait(pub.Publish("zuul/big", 0, false, big)); err != nil {
			t.Fatal(err)
		}
		sent.Add(1)
		if st := d.status(); st.Journal != nil && !st.Journal.Writing {
			break
		}
	}
	// Fan-out goes on: every message published, journaled or not, arrives.
	for range sent.Load() {
		if m := live.next(); len(m.Payload()) != len(big) {
			t.Fatalf("live message of %d bytes", len(m.Payload()))
		}
	}
	if err := wait(pub.Publish("zuul/while-full", 0, false, "still live")); err != nil {
		t.Fatal(err)
	}
	live.expect("zuul/while-full", "still live")
	out, code := d.run("status", "--socket", d.ctl.Socket)
	if code != 1 || !strings.Contains(out, "degraded") || !strings.Contains(out, "journal: cannot write") || !strings.Contains(out, "NOT WRITING") {
		t.Fatalf("status while the disk is full: exit %d:\n%s", code, out)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the journal to write again", func() bool {
		st := d.status()
		return st.State == apitype.StateOK && st.Journal.Writing && st.Journal.Gaps == 1
	})
	st := d.status()
	gapSeq := st.Journal.LastGap.Seq
	if st.Journal.LastGap.Lost < 2 || !strings.Contains(st.Journal.LastGap.Reason, "disk nearly full") {
		t.Errorf("gap = %+v", st.Journal.LastGap)
	}
	if err := wait(pub.Publish("zuul/after", 1, false, "journaled again")); err != nil {
		t.Fatal(err)
	}
	lines := d.history(url.Values{"filter": {"zuul/#"}, "since": {strconv.FormatUint(gapSeq, 10)}})
	if len(lines) != 2 || lines[0].Gap == nil || lines[0].Gap.Lost != st.Journal.LastGap.Lost || lines[1].text() != "journaled again" {
		t.Fatalf("history across the gap: %+v", lines)
	}
	s := d.sse(url.Values{"filter": {"zuul/#"}}, strconv.FormatUint(gapSeq-1, 10))
	if ev := s.next(); ev.event != "gap" || ev.id != strconv.FormatUint(gapSeq, 10) {
		t.Fatalf("SSE across the gap: %+v", ev)
	}
}

// TestJournalDisabledKeepsOldBehaviour: enabled = false serves MQTT as
// before: no sequence numbers, no journal on disk, no replay API.
func TestJournalDisabledKeepsOldBehaviour(t *testing.T) {
	state := t.TempDir()
	d := startDaemon(t, daemonOpts{stateDir: state, extra: "[journal]\nenabled = false\n"})
	pub := newQoS1Publisher(t, d)
	got := pythonSubscribeV5(t, d, "zuul/#", 1, func() { pub.publish("zuul/off", "plain") })
	if want := "zuul/off plain firehose-seq=none retain=0"; len(got) != 1 || got[0] != want {
		t.Fatalf("with the journal off: %q, want %q", got, want)
	}
	resp, err := httpGet(d.apiURL("/v0/events", nil))
	if err != nil || resp != 404 {
		t.Fatalf("/v0/events with the journal off: %d %v", resp, err)
	}
	if s := d.summary(); s.Journal != nil {
		t.Errorf("summary journal = %+v", s.Journal)
	}
	if st := d.status(); st.Journal != nil {
		t.Errorf("status journal = %+v", st.Journal)
	}
	if _, err := os.Stat(filepath.Join(state, "journal")); !os.IsNotExist(err) {
		t.Errorf("a journal directory exists with the journal off: %v", err)
	}
}

// TestJournalReload: max_age and max_bytes change live; the fsync policy
// and enabled are refused by name.
func TestJournalReload(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: "[journal]\nmax_age = \"1h\"\n"})
	base := d.configText(daemonOpts{}, zuulPublisher(t))
	d.writeConfig(base + "[journal]\nmax_age = \"2h\"\nmax_bytes = \"8GiB\"\n")
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload with new limits: exit %d: %s", code, out)
	}
	d.writeConfig(base + "[journal]\nmax_age = \"2h\"\nmax_bytes = \"8GiB\"\nfsync = \"always\"\n")
	out, code := d.run("reload", "--socket", d.ctl.Socket)
	if code == 0 || !strings.Contains(out, `reload not supported for journal.fsync: old="1s", new="always"`) {
		t.Fatalf("reload changing fsync: exit %d: %s", code, out)
	}
	pub := newQoS1Publisher(t, d)
	pub.publish("zuul/reloaded", "ok")
	if lines := d.history(nil); len(lines) != 1 {
		t.Fatalf("journal after reloads: %+v", lines)
	}
}

// TestJournalAPIBounds: bad parameters are refused with 400, and one
// address may hold only so many reads open.
func TestJournalAPIBounds(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	for _, q := range []string{"filter=a/%23/b", "since=yesterday", "limit=0", "limit=100001"} {
		code, err := httpGet(d.apiURL("/v0/events", nil) + "?" + q)
		if err != nil || code != 400 {
			t.Errorf("GET /v0/events?%s: %d %v, want 400", q, code, err)
		}
	}
	// The per-address limit on concurrent reads.
	var streams []*sseStream
	for range 8 {
		streams = append(streams, d.sse(nil, ""))
	}
	if code, _ := httpGet(d.apiURL("/v0/events/stream", nil)); code != 429 {
		t.Errorf("a ninth concurrent stream from one address: %d, want 429", code)
	}
	streams[0].close()
	eventually(t, "a stream slot to free", func() bool {
		code, _ := httpGet(d.apiURL("/v0/events", nil))
		return code == 200
	})
}
