package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVarint(t *testing.T) {
	// Boundary values from MQTT 3.1.1 table 2.4.
	for _, n := range []int{0, 127, 128, 16383, 16384, 2097151, 2097152, maxRemaining} {
		b := appendVarint(nil, n)
		pkt := append([]byte{pktPingresp << 4}, b...)
		pkt = append(pkt, make([]byte, n%1000)...) // body length is checked separately below
		if n >= 1000 {
			continue
		}
		pr := newPacketReader(bytes.NewReader(pkt), 64)
		_, body, err := pr.next()
		if err != nil || len(body) != n {
			t.Errorf("n=%d: got len %d, err %v", n, len(body), err)
		}
	}
	if got := appendVarint(nil, 321); !bytes.Equal(got, []byte{0xc1, 0x02}) {
		t.Errorf("varint(321) = %x, want c102", got)
	}
}

func TestConnectBytes(t *testing.T) {
	got := connectPacket("c", "u", "p", 60)
	want := []byte{0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0, 60, 0, 1, 'c', 0, 1, 'u', 0, 1, 'p'}
	if !bytes.Equal(got, want) {
		t.Errorf("CONNECT\n got %x\nwant %x", got, want)
	}
	if got := subscribePacket(1, "a/#", 0); !bytes.Equal(got, []byte{0x82, 8, 0, 1, 0, 3, 'a', '/', '#', 0}) {
		t.Errorf("SUBSCRIBE = %x", got)
	}
}

func TestPublishRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte{7}, 5000) // larger than the reader's buffer
	pkt, off := publishPacket("bench/fan", payload)
	if !bytes.Equal(pkt[off:], payload) {
		t.Fatal("payload offset wrong")
	}
	small, _ := publishPacket("t", []byte("hello"))
	pr := newPacketReader(bytes.NewReader(append(append([]byte{}, pkt...), small...)), 4096)
	for _, want := range [][]byte{payload, []byte("hello")} {
		h, body, err := pr.next()
		if err != nil {
			t.Fatal(err)
		}
		p, ok := publishPayload(h, body)
		if !ok || !bytes.Equal(p, want) {
			t.Fatalf("payload mismatch: ok=%v len=%d", ok, len(p))
		}
	}
}

func TestPercentileExact(t *testing.T) {
	// 1..1000 in a shuffled order, spread over subscribers of uneven sizes.
	vals := rand.Perm(1000)
	var perSub [][]int64
	for i := 0; i < len(vals); {
		n := min(1+i%37, len(vals)-i)
		s := make([]int64, n)
		for j := range s {
			s[j] = int64(vals[i+j] + 1)
		}
		perSub = append(perSub, s)
		i += n
	}
	before := fmt.Sprint(perSub)
	ls := computeLatency(perSub)
	if ls != (latencyStats{N: 1000, P50: 500, P99: 990, Max: 1000}) {
		t.Errorf("1..1000: got %+v, want N 1000, p50 500, p99 990, max 1000", ls)
	}
	if fmt.Sprint(perSub) != before {
		t.Error("computeLatency changed its input")
	}
	// Nearest rank at small and awkward N: sorted[ceil(q·N)-1].
	for _, c := range []struct {
		n        int
		p50, p99 int64
	}{{1, 1, 1}, {2, 1, 2}, {3, 2, 3}, {99, 50, 99}, {100, 50, 99}, {101, 51, 100}, {200, 100, 198}, {1001, 501, 991}} {
		s := make([]int64, c.n)
		for i := range s {
			s[i] = int64(c.n - i) // descending: computeLatency must sort
		}
		ls := computeLatency([][]int64{s})
		if ls.P50 != c.p50 || ls.P99 != c.p99 || ls.Max != int64(c.n) || ls.N != c.n {
			t.Errorf("n=%d: got %+v, want p50 %d p99 %d max %d", c.n, ls, c.p50, c.p99, c.n)
		}
	}
	// A tail of exactly 1 %: p99 is still the body, the max is the tail's
	// largest (a bucketed histogram would smear both).
	s := make([]int64, 10000)
	for i := range s {
		s[i] = 1000
		if i%100 == 0 {
			s[i] = 5_000_000 + int64(i)
		}
	}
	if ls := computeLatency([][]int64{s}); ls.P50 != 1000 || ls.P99 != 1000 || ls.Max != 5_009_900 {
		t.Errorf("tail: got %+v, want p50 1000, p99 1000, max 5009900", ls)
	}
	if ls := computeLatency(nil); ls != (latencyStats{}) {
		t.Errorf("empty: %+v", ls)
	}
}

func TestJSONPayload(t *testing.T) {
	for _, size := range []int{4096, 1024, 200, 80} {
		p, seqOff, sentOff, err := jsonPayload(size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if len(p) != size {
			t.Errorf("size %d: got %d bytes", size, len(p))
		}
		for _, v := range [][2]uint64{{0, 0}, {1, 1764000000123456}, {1<<64 - 1, 1<<64 - 1}} {
			putPadded(p[seqOff:seqOff+jsonNumWidth], v[0])
			putPadded(p[sentOff:sentOff+jsonNumWidth], v[1])
			var ev struct {
				Bench struct {
					Seq    uint64 `json:"seq"`
					SentUs uint64 `json:"sent_us"`
				} `json:"bench"`
				Type string `json:"type"`
			}
			if err := json.Unmarshal(p, &ev); err != nil {
				t.Fatalf("size %d, %v: not JSON: %v\n%s", size, v, err, p)
			}
			if ev.Bench.Seq != v[0] || ev.Bench.SentUs != v[1] {
				t.Errorf("size %d: read back %+v, want %v", size, ev.Bench, v)
			}
			if size >= 4096 && ev.Type != "comment-added" {
				t.Errorf("size %d: the Gerrit event is missing", size)
			}
		}
	}
	if _, _, _, err := jsonPayload(40); err == nil {
		t.Error("a 40-byte JSON payload was accepted")
	}
}

func TestPublishQoS1Bytes(t *testing.T) {
	pkt, idOff, off := publishPacketQoS("a/b", []byte("hi"), 1)
	// 0x32: PUBLISH, QoS 1; remaining 2+3 (topic) + 2 (id) + 2 (payload).
	want := []byte{0x32, 9, 0, 3, 'a', '/', 'b', 0, 0, 'h', 'i'}
	if !bytes.Equal(pkt, want) || idOff != 7 || off != 9 {
		t.Fatalf("got %x id@%d payload@%d, want %x id@7 payload@9", pkt, idOff, off, want)
	}
	binary.BigEndian.PutUint16(pkt[idOff:], 0x1234)
	pr := newPacketReader(bytes.NewReader(pkt), 64)
	h, body, err := pr.next()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := publishPayload(h, body); !ok || string(p) != "hi" {
		t.Errorf("payload %q ok=%v", p, ok)
	}
	if _, idOff, _ := publishPacketQoS("a", nil, 0); idOff != -1 {
		t.Errorf("QoS 0 id offset %d, want -1", idOff)
	}
}

func TestGCTrace(t *testing.T) {
	log := filepath.Join(t.TempDir(), "appliance.log")
	text := "time=... level=INFO msg=started\n" +
		"gc 1 @0.011s 2%: 0.018+1.1+0.021 ms clock, 0.037+0.31/0.62/0.80+0.043 ms cpu, 3->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 2 @121.503s 0%: 0.021+25+0.005 ms clock, 0.042+0/12/37+0.011 ms cpu, 180->180->96 MB, 290 MB goal, 21 MB stacks, 0 MB globals, 2 P (forced)\n" +
		"not gc 3 @1s\n"
	if err := os.WriteFile(log, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if g := gcTrace(log); g != (gcStats{cycles: 2, liveMB: 96, stacksMB: 21}) {
		t.Errorf("got %+v", g)
	}
	if g := gcTrace(filepath.Join(t.TempDir(), "missing")); g != (gcStats{}) {
		t.Errorf("missing log: %+v", g)
	}
	got := withGCTrace([]string{"GOGC=200", "GODEBUG=madvdontneed=1"})
	if !slices.Equal(got, []string{"GOGC=200", "GODEBUG=madvdontneed=1,gctrace=1"}) {
		t.Errorf("withGCTrace = %q", got)
	}
}

// TestJournalSwitch checks what -journal writes, and that a firehosectl
// refusing the section is reported with its own message, naming the journal.
func TestJournalSwitch(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "firehosectl")
	script := "#!/bin/sh\n" +
		"grep -q '^\\[journal\\]' \"$3\" && { echo \"firehosectl: $3:20: journal: unknown key (known keys: broker)\" >&2; exit 1; }\n" +
		"echo ok\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := newAppliance(ctx, ".", fake, true, dir, nil, "")
	if err != nil || a.Name() != "appliance" || strings.Contains(a.config("m", "w", "s", "c"), "journal") {
		t.Fatalf("no -journal: %v, name %q, config has a journal section", err, a.Name())
	}
	for _, j := range []string{"on", "off"} {
		_, err := newAppliance(ctx, ".", fake, true, dir, nil, j)
		if err == nil || !strings.Contains(err.Error(), "refuses [journal]") || !strings.Contains(err.Error(), "unknown key") {
			t.Errorf("journal %s: want a clear refusal, got %v", j, err)
		}
		a := &appliance{name: "x", hash: "h", journal: j}
		want := "\n[journal]\nenabled = " + map[string]string{"on": "true", "off": "false"}[j] + "\n"
		if conf := a.config("m", "w", "s", "c"); !strings.HasSuffix(conf, want) {
			t.Errorf("journal %s: config ends %q, want %q", j, conf[max(0, len(conf)-40):], want)
		}
	}
	if _, err := newAppliance(ctx, ".", fake, true, dir, nil, "maybe"); err == nil {
		t.Error("journal \"maybe\" accepted")
	}
}

// TestRatios checks the ratio columns: every broker against Mosquitto, and
// journal on against off when both appliances ran.
func TestRatios(t *testing.T) {
	brokers := []string{"appliance-journal-off", "appliance-journal-on", "mosquitto"}
	sc := scenario{Key: "b", Group: "b", Subs: 10}
	var runs []runResult
	for i, b := range brokers {
		runs = append(runs, runResult{Scenario: "b", Broker: b, Rep: 1, Complete: true, LatencyP99Ms: float64(10 * (i + 1))})
	}
	rows := summarize([]scenario{sc}, brokers, runs)
	var p99 *summaryRow
	for i := range rows {
		if rows[i].Metric == mP99.Name {
			p99 = &rows[i]
		}
	}
	want := map[string]float64{"appliance-journal-off/mosquitto": 10.0 / 30, "appliance-journal-on/mosquitto": 20.0 / 30, "journal on/off": 2}
	if p99 == nil || fmt.Sprint(p99.Ratios) != fmt.Sprint(want) {
		t.Fatalf("ratios %v, want %v", p99, want)
	}
	var md bytes.Buffer
	writeMarkdown(&md, rows, brokers, runs, 1)
	if !strings.Contains(md.String(), "| journal on/off |") || !strings.Contains(md.String(), "| 2.00 |") {
		t.Errorf("table lacks the journal column:\n%s", md.String())
	}
	// A stored report from before Ratios renders with its one ratio.
	old := []summaryRow{{Scenario: "b", Metric: "latency p99", Brokers: map[string]*brokerStat{"appliance": {Median: 2, Runs: 1}, "mosquitto": {Median: 1, Runs: 1}}, Ratio: ptr(2.0)}}
	md.Reset()
	writeMarkdown(&md, old, []string{"appliance", "mosquitto"}, nil, 1)
	if !strings.Contains(md.String(), "appliance/mosquitto") || !strings.Contains(md.String(), "| 2.00 |") {
		t.Errorf("old report:\n%s", md.String())
	}
}

func ptr[T any](v T) *T { return &v }

// testBrokers returns Mosquitto when installed, and the appliance when
// FIREHOSECTL names a built firehosectl (the bench tests do not build it: a
// half-written CLI elsewhere in the tree must not fail them).
func testBrokers(t *testing.T) []broker {
	t.Helper()
	var bs []broker
	if m, err := newMosquitto("mosquitto"); err == nil {
		bs = append(bs, m)
	}
	if bin := os.Getenv("FIREHOSECTL"); bin != "" {
		a, err := newAppliance(context.Background(), ".", bin, true, t.TempDir(), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, a)
	}
	if len(bs) == 0 {
		t.Skip("no broker: install mosquitto or set FIREHOSECTL")
	}
	return bs
}

// TestRun drives tiny runs of every scenario end to end: broker start,
// readiness, subscribers (the bench's own and MQTT.js), authenticated
// publisher, ACL, counting, exact latency, CPU per delivery, settled memory.
// It checks the instrument, never a timing.
func TestRun(t *testing.T) {
	d := &dialer{perAddr: 1000}
	o := runOpts{runTimeout: 60 * time.Second, stall: 2 * time.Second, idleSettle: 20 * time.Second}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	mjs, mjsErr := findMQTTJS(root)
	o.mqttjs = mjs
	for _, b := range testBrokers(t) {
		for _, sc := range []scenario{
			{Key: "tcp", Group: "a", Transport: "tcp", Subs: 20, Msgs: 50, Payload: 1024},
			{Key: "ws", Group: "d", Transport: "ws", Subs: 5, Msgs: 10, Payload: 1024},
			{Key: "steady", Group: "b", Transport: "tcp", Subs: 20, Msgs: 10, Rate: 50, Payload: 4096},
			{Key: "idle", Group: "c", Transport: "tcp", Subs: 50, Idle: true},
			{Key: "mqttjs-qos1", Group: "f", Transport: "ws", Client: "mqttjs", Subs: 5, Msgs: 30, Payload: 4096, JSON: true, QoS: 1},
			{Key: "mqttjs-qos0", Group: "f", Transport: "ws", Client: "mqttjs", Subs: 3, Msgs: 20, Payload: 600, JSON: true},
		} {
			t.Run(b.Name()+"/"+sc.Key, func(t *testing.T) {
				if sc.Client == "mqttjs" && mjsErr != nil {
					t.Skipf("scenario f needs MQTT.js: %v", mjsErr)
				}
				r := runOne(context.Background(), b, sc, 1, t.TempDir(), d, o)
				if r.Error != "" {
					t.Fatal(r.Error)
				}
				if r.PeakRSSMiB <= 0 {
					t.Errorf("no peak RSS read: %+v", r)
				}
				if r.SubscriberErrors != 0 {
					t.Errorf("%d subscribers failed: %+v", r.SubscriberErrors, r)
				}
				if sc.Idle {
					if r.RSSPerConnKiB == 0 || r.RSSStormPerConnKiB == 0 || r.SettleSeconds <= 0 {
						t.Errorf("idle memory not measured: %+v", r)
					}
					return
				}
				want := int64(sc.Msgs * sc.Subs)
				if !r.Complete || r.Delivered != want || r.Reorders != 0 || r.Duplicates != 0 {
					t.Errorf("incomplete: %+v", r)
				}
				if r.MinPerSub != int64(sc.Msgs) || r.MaxPerSub != int64(sc.Msgs) {
					t.Errorf("per subscriber %d..%d, want %d each", r.MinPerSub, r.MaxPerSub, sc.Msgs)
				}
				// Exact percentiles: one latency sample per delivery, ordered.
				if int64(r.LatencySamples) != want || r.LatencyP50Ms <= 0 || r.LatencyP50Ms > r.LatencyP99Ms || r.LatencyP99Ms > r.LatencyMaxMs {
					t.Errorf("latency: %d samples, p50 %v p99 %v max %v", r.LatencySamples, r.LatencyP50Ms, r.LatencyP99Ms, r.LatencyMaxMs)
				}
				if r.DurationSeconds <= 0 {
					t.Errorf("no time to last delivery: %+v", r)
				}
				// CPU is read in clock ticks: a tiny run may have none.
				if got := r.BrokerCPUSeconds * 1e6 / float64(r.Delivered); r.BrokerCPUSeconds > 0 && math.Abs(got-r.BrokerCPUPerDeliveryUs) > 1e-6*got {
					t.Errorf("CPU per delivery %v µs, want %v", r.BrokerCPUPerDeliveryUs, got)
				}
				if sc.Client == "mqttjs" {
					if len(r.PerSub) != sc.Subs {
						t.Errorf("per-subscriber counts: %v", r.PerSub)
					}
					if sc.QoS == 1 && r.Acked != int64(sc.Msgs)+1 {
						t.Errorf("publisher got %d PUBACKs for %d QoS 1 publishes", r.Acked, sc.Msgs+1)
					}
				}
			})
		}
	}
}

// TestAnonymousCannotPublish checks the ACL half of "configured equivalently":
// a publish from an anonymous client must not reach subscribers.
func TestAnonymousCannotPublish(t *testing.T) {
	for _, b := range testBrokers(t) {
		t.Run(b.Name(), func(t *testing.T) {
			ctx := context.Background()
			in, err := b.Start(ctx, t.TempDir(), startOpts{})
			if err != nil {
				t.Fatal(err)
			}
			defer in.stop()
			d := &dialer{perAddr: 1000}
			f, err := connectFleet(ctx, d, in.mqtt, "tcp", 3, 1, "acl")
			if err != nil {
				t.Fatal(err)
			}
			defer f.close()
			anon, err := connectPublisher(ctx, d, in.mqtt, "", "", "anon", pubSpec{size: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer anon.close()
			if err := anon.send(0); err != nil {
				t.Fatal(err)
			}
			// A broker may instead disconnect the offender: then there is no
			// PINGRESP, and nothing was delivered either, checked below.
			syncErr := anon.sync(2 * time.Second)
			auth, err := connectPublisher(ctx, d, in.mqtt, pubUser, pubPass, "auth", pubSpec{size: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer auth.close()
			if err := auth.send(1); err != nil {
				t.Fatal(err)
			}
			// The broker had handled the anonymous publish (sync) before the
			// authorised one was sent: once that has arrived everywhere, the
			// anonymous one would have too.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if n, _ := f.received(); n == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("authorised publish not delivered")
				}
			}
			if n := f.warmCount(); n != 0 {
				t.Errorf("anonymous publish reached %d subscribers (sync: %v)", n, syncErr)
			}
		})
	}
}

// TestMain lets the test binary serve as a CPU burner for TestLoad, as the
// bench binary does for -load.
func TestMain(m *testing.M) {
	burnIfAsked()
	os.Exit(m.Run())
}

// TestLoad: -load's burners use CPU while they run and are gone after stop.
func TestLoad(t *testing.T) {
	stop, err := startLoad(1)
	if err != nil {
		t.Fatal(err)
	}
	burners := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if err == nil && bytes.Contains(b, []byte(burnEnv+"=1")) {
				// Ours (parent is this process) and alive (not a zombie).
				s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				if i := bytes.LastIndexByte(s, ')'); err == nil && i > 0 {
					if f := strings.Fields(string(s[i+1:])); len(f) > 2 && f[0] != "Z" && f[1] == strconv.Itoa(os.Getpid()) {
						pids = append(pids, pid)
					}
				}
			}
		}
		return pids
	}
	pids := burners()
	if len(pids) != 1 {
		stop()
		t.Fatalf("%d burners running, want 1", len(pids))
	}
	// It spins: its CPU time grows (polled, bounded).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s, _ := cpuSeconds(pids[0]); s >= 0.05 {
			break
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatal("the burner used no CPU in 60 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if n := len(burners()); n != 0 {
		t.Fatalf("%d burners left after stop", n)
	}
}

// TestSubscriberCountsRepeats feeds one subscriber a stream with a repeat
// and a late message: the repeat is a duplicate (not a delivery that makes
// up for a lost one), the late one a reorder.
func TestSubscriberCountsRepeats(t *testing.T) {
	var stream []byte
	for _, seq := range []uint64{0, 1, 2, 2, 4, 3, 5} {
		p := make([]byte, payloadHeader)
		binary.BigEndian.PutUint64(p, seq)
		pkt, _ := publishPacket(benchTopic, p)
		stream = append(stream, pkt...)
	}
	s := &subscriber{pr: newPacketReader(bytes.NewReader(stream), 4096), lat: make([]int64, 0, 6), seen: make([]uint64, 6/64+1)}
	s.run()
	if !s.warm.Load() || s.received.Load() != 6 || s.dups != 1 || s.reorders != 1 {
		t.Errorf("warm %v, received %d, duplicates %d, reorders %d; want true, 6, 1, 1", s.warm.Load(), s.received.Load(), s.dups, s.reorders)
	}
}

// TestClusterSummary checks the cluster's medians, ratios, the hop taken
// within each repetition, and that a loss, a repeat or an unfinished phase
// is listed as a failure (which makes the bench exit 1).
func TestClusterSummary(t *testing.T) {
	g := func(pl string, rep int, rate float64, cpu []float64) clusterPhase {
		p := clusterPhase{Scenario: "g", Placement: pl, Rep: rep, Nodes: 3, DeliveriesPerSec: rate, Complete: true}
		maxCPU := 0.0
		for i, c := range cpu {
			p.NodeStats = append(p.NodeStats, clusterNodeStat{Node: fmt.Sprintf("fh%d", i+1), CPUSeconds: c})
			maxCPU = max(maxCPU, c)
		}
		p.CoreBoundPerSec = 1e6 / maxCPU
		return p
	}
	h := func(rep int, near, far, one float64) []clusterPhase {
		return []clusterPhase{
			{Scenario: "h", Placement: "hop", Rep: rep, Groups: []clusterGroup{{Node: "fh1", LatencyP50Ms: near, LatencyP99Ms: 2 * near, LatencyMaxMs: 3 * near}, {Node: "fh3", LatencyP50Ms: far, LatencyP99Ms: 2 * far, LatencyMaxMs: 3 * far}}},
			{Scenario: "h", Placement: "standalone", Rep: rep, Groups: []clusterGroup{{Node: "one", LatencyP50Ms: one, LatencyP99Ms: 2 * one, LatencyMaxMs: 3 * one}}},
		}
	}
	phases := []clusterPhase{
		g("node1", 1, 100, []float64{4, 1, 1}), g("spread", 1, 90, []float64{2, 2, 2}),
		g("node1", 2, 120, []float64{5, 1, 1}), g("spread", 2, 80, []float64{2, 2, 1}),
		g("node1", 3, 110, []float64{4, 1, 1}), g("spread", 3, 99, []float64{2.5, 2, 2}),
	}
	// Hops of 1, 2 and 10 ms: the median is 2, whatever the other medians.
	phases = append(phases, h(1, 5, 6, 4)...)
	phases = append(phases, h(2, 3, 5, 2)...)
	phases = append(phases, h(3, 9, 19, 8)...)
	s := summarizeCluster(3, phases)
	if len(s.Failed) != 0 {
		t.Errorf("failures in clean phases: %q", s.Failed)
	}
	if math.Abs(s.SpreadOverNode1-90.0/110) > 1e-9 {
		t.Errorf("spread/node1 %v, want %v", s.SpreadOverNode1, 90.0/110)
	}
	if math.Abs(s.SpreadOverNode1CoreBound-(1e6/2)/(1e6/4)) > 1e-9 {
		t.Errorf("core-bound ratio %v, want 2", s.SpreadOverNode1CoreBound)
	}
	if got := s.Fanout["node1"].NodeCPUSeconds; !slices.Equal(got, []float64{4, 1, 1}) {
		t.Errorf("node1 CPU per node %v", got)
	}
	if hop := s.Hop["hop"]; hop == nil || hop.P50 != 2 || hop.P99 != 4 || hop.Runs != 3 {
		t.Errorf("hop %+v, want p50 2, p99 4 over 3 runs", hop)
	}
	if c := s.Hop["cluster_over_standalone"]; c == nil || c.P50 != 1 {
		t.Errorf("cluster over standalone %+v, want p50 1", c)
	}
	var md bytes.Buffer
	writeClusterMarkdown(&md, s, phases, 3)
	for _, want := range []string{"| **spread / all on fh1** | **0.82×** |", "**2.00×**", "| **hop: last node − fh1** | **2.00** | **4.00** | **6.00** |", "fh1 (the publisher's node)"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, md.String())
		}
	}

	bad := []clusterPhase{
		{Scenario: "g", Placement: "spread", Rep: 1, Drops: 3},
		{Scenario: "g", Placement: "node1", Rep: 1, Duplicates: 1},
		{Scenario: "h", Placement: "hop", Rep: 1, Reorders: 2},
		{Scenario: "h", Placement: "standalone", Rep: 1, Groups: []clusterGroup{{Node: "one", SubscriberErrors: 1}}},
		{Scenario: "g", Placement: "node1", Rep: 2, Error: "starting the cluster: no quorum"},
	}
	if f := summarizeCluster(3, bad).Failed; len(f) != len(bad) {
		t.Errorf("want every bad phase listed, got %q", f)
	}
}

// TestClusterRun runs tiny g and h phases in a real three-node cluster of
// the firehosectl named by FIREHOSECTL: every message to every subscriber
// once, per-node CPU read, the hop and the standalone baseline measured.
func TestClusterRun(t *testing.T) {
	bin := os.Getenv("FIREHOSECTL")
	if bin == "" {
		t.Skip("set FIREHOSECTL to a built firehosectl to run a cluster")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	a, err := newAppliance(ctx, ".", bin, true, tmp, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.clusterPrecheck(ctx, tmp, 3); err != nil {
		t.Fatal(err)
	}
	spec := clusterSpec{nodes: 3,
		g: &scenario{Key: "g", Group: "g", Transport: "tcp", Subs: 7, Msgs: 30, Payload: 256},
		h: &scenario{Key: "h", Group: "h", Transport: "tcp", Subs: 3, Msgs: 10, Rate: 50, Payload: 1024}}
	o := runOpts{runTimeout: 60 * time.Second, stall: 2 * time.Second}
	phases := runClusterRep(ctx, a, spec, 2, tmp, &dialer{perAddr: 1000}, o)
	if len(phases) != 4 || phases[0].Placement != "spread" || phases[1].Placement != "node1" {
		t.Fatalf("phases %+v: want spread, node1 (even repetition), hop, standalone", phases)
	}
	for _, p := range phases {
		if f := p.failures(); f != "" || !p.Complete {
			t.Fatalf("%s %s: %s (%+v)", p.Scenario, p.Placement, f, p)
		}
		if p.Scenario == "g" && (p.Delivered != 7*30 || p.DeliveriesPerSec <= 0 || len(p.NodeStats) != 3) {
			t.Errorf("%s: %+v", p.Placement, p)
		}
		if p.Placement != "standalone" && p.StreamLeader == "" {
			t.Errorf("%s: no stream leader read", p.Placement)
		}
		for _, ns := range p.NodeStats {
			if ns.PeakRSSMiB <= 0 {
				t.Errorf("%s %s: no peak RSS read", p.Placement, ns.Node)
			}
		}
	}
	if got := phases[0].counts(spec.g); !slices.Equal(got, []int{3, 2, 2}) {
		t.Errorf("spread counts %v", got)
	}
	if hop := phases[2]; len(hop.Groups) != 2 || hop.Groups[0].Node != "fh1" || hop.Groups[1].Node != "fh3" ||
		hop.Groups[0].LatencySamples != 30 || hop.Groups[1].LatencySamples != 30 {
		t.Errorf("hop groups %+v", hop.Groups)
	}
	if one := phases[3]; len(one.Groups) != 1 || one.Groups[0].LatencySamples != 30 {
		t.Errorf("standalone %+v", one.Groups)
	}
}

func TestMachineJiffies(t *testing.T) {
	b0, t0, err := machineJiffies()
	if err != nil {
		t.Fatal(err)
	}
	// Burn a few ticks so that the machine's counters move.
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	b1, t1, err := machineJiffies()
	if err != nil {
		t.Fatal(err)
	}
	if b0 == 0 || t0 < b0 || b1 < b0 || t1 <= t0 || t1-t0 < b1-b0 {
		t.Errorf("busy %d→%d of total %d→%d", b0, b1, t0, t1)
	}
}
