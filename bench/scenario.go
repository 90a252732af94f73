package main

// Scenarios and the runner of one (scenario, broker, repetition).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// scenario is one measured situation; (a) expands to one per subscriber count.
type scenario struct {
	Key       string  `json:"key"`   // "a-1000"
	Group     string  `json:"group"` // "a"
	Title     string  `json:"title"`
	Transport string  `json:"transport"`
	Client    string  `json:"client,omitempty"` // "" = the bench's own codec; "mqttjs" = MQTT.js in Node
	Subs      int     `json:"subscribers"`
	Msgs      int     `json:"messages"`
	Rate      float64 `json:"rate"` // messages/s; 0 = as fast as the broker reads them
	Payload   int     `json:"payload"`
	JSON      bool    `json:"json_payload,omitempty"`
	QoS       byte    `json:"qos,omitempty"` // publish and subscription QoS (f only)
	Idle      bool    `json:"idle"`
	IdleGCs   int     `json:"idle_gcs,omitempty"` // (c): GC cycles to await after the storm (Go brokers)
}

// runResult is everything measured in one run.
type runResult struct {
	Scenario    string `json:"scenario"`
	Broker      string `json:"broker"`
	Rep         int    `json:"rep"`
	Transport   string `json:"transport"`
	Subscribers int    `json:"subscribers"`
	Published   int    `json:"published"`
	Acked       int64  `json:"publisher_acked,omitempty"` // QoS 1: PUBACKs the publisher got
	Expected    int64  `json:"expected_deliveries"`
	Delivered   int64  `json:"delivered"`
	Drops       int64  `json:"drops"`
	Duplicates  int64  `json:"duplicates,omitempty"`
	Reorders    int64  `json:"reorders"`
	Complete    bool   `json:"complete"`
	// MinPerSub and MaxPerSub are the messages received by the least and the
	// best served subscriber; PerSub lists every subscriber's count (f only).
	MinPerSub int64   `json:"min_per_subscriber"`
	MaxPerSub int64   `json:"max_per_subscriber"`
	PerSub    []int64 `json:"per_subscriber,omitempty"`

	ConnectSeconds   float64 `json:"connect_seconds"`
	DurationSeconds  float64 `json:"duration_seconds"` // first publish to last delivery
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	LatencySamples   int     `json:"latency_samples"` // percentiles are exact over these
	LatencyP50Ms     float64 `json:"latency_p50_ms"`
	LatencyP99Ms     float64 `json:"latency_p99_ms"`
	LatencyMaxMs     float64 `json:"latency_max_ms"`

	// Idle memory (c).
	RSSPerConnKiB      float64 `json:"rss_per_connection_kib,omitempty"`          // after settling (and GCs)
	RSSStormPerConnKiB float64 `json:"rss_per_connection_storm_kib,omitempty"`    // first stable reading after the storm
	SettleSeconds      float64 `json:"settle_seconds,omitempty"`                  // last SUBACK to the final reading
	Settled            bool    `json:"settled,omitempty"`                         // stable RSS (and the GCs seen) within -idle-settle
	GCsAfterStorm      int     `json:"gc_cycles_after_storm,omitempty"`           // from GODEBUG=gctrace=1
	GCLiveHeapMiB      float64 `json:"gc_live_heap_mib,omitempty"`                // after the last GC
	GCStacksMiB        float64 `json:"gc_stacks_mib,omitempty"`                   // the runtime's scannable-stack estimate
	GCHeapPerConnKiB   float64 `json:"gc_live_heap_per_connection_kib,omitempty"` // live heap / N

	BrokerCPUSeconds       float64 `json:"broker_cpu_seconds"` // during the measured phase
	BrokerCPUPerDeliveryUs float64 `json:"broker_cpu_us_per_delivery,omitempty"`
	BrokerSysSeconds       float64 `json:"broker_sys_seconds,omitempty"` // the system (kernel) part of BrokerCPUSeconds
	BrokerSysPerDeliveryUs float64 `json:"broker_sys_us_per_delivery,omitempty"`
	PeakRSSMiB             float64 `json:"broker_peak_rss_mib"`
	BenchCPUSeconds        float64 `json:"bench_cpu_seconds"` // the load generator, Node included
	SubscriberErrors       int     `json:"subscriber_errors"`
	Error                  string  `json:"error,omitempty"`
}

type runOpts struct {
	runTimeout time.Duration
	stall      time.Duration // give up after this long without a delivery
	idleSettle time.Duration // (c): bound on settling after the connect storm
	mqttjs     *mqttJS       // (f): where MQTT.js is; nil when it is missing
}

// runOne starts a fresh broker, runs sc against it and stops it.
func runOne(ctx context.Context, b broker, sc scenario, rep int, tmp string, d *dialer, o runOpts) (res runResult) {
	res = runResult{Scenario: sc.Key, Broker: b.Name(), Rep: rep, Transport: sc.Transport, Subscribers: sc.Subs}

	timeout := o.runTimeout
	if sc.Idle {
		timeout += o.idleSettle
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir := filepath.Join(tmp, fmt.Sprintf("%s-%s-%d", b.Name(), sc.Key, rep))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		res.Error = err.Error()
		return res
	}
	in, err := b.Start(ctx, dir, startOpts{gcTrace: sc.Idle})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer in.stop()
	pid := in.pid()
	defer func() {
		if _, hwm, err := memKiB(pid); err == nil {
			res.PeakRSSMiB = float64(hwm) / 1024
		}
	}()

	runID := fmt.Sprintf("%s%d%s", b.Name()[:1], rep, sc.Key)
	switch {
	case sc.Idle:
		err = runIdle(ctx, in, sc, d, o, runID, &res)
	case sc.Client == "mqttjs":
		err = runMQTTJS(ctx, in, sc, d, o, runID, dir, &res)
	default:
		err = runLean(ctx, in, sc, d, o, runID, &res)
	}
	if err != nil && res.Error == "" {
		res.Error = err.Error()
	}
	if res.Delivered > 0 && res.BrokerCPUSeconds > 0 {
		res.BrokerCPUPerDeliveryUs = res.BrokerCPUSeconds * 1e6 / float64(res.Delivered)
		res.BrokerSysPerDeliveryUs = res.BrokerSysSeconds * 1e6 / float64(res.Delivered)
	}
	return res
}

// warmUp sends sequence 0 and waits until done() reports every subscriber
// got it: that proves the publisher is authorised and every subscription is
// live before anything is timed.
func warmUp(ctx context.Context, p *publisher, o runOpts, done func() (int, int)) error {
	if err := p.send(0); err != nil {
		return fmt.Errorf("warm-up publish: %w", err)
	}
	deadline := time.Now().Add(o.runTimeout / 2)
	for {
		got, want := done()
		if got >= want {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("warm-up message reached %d of %d subscribers", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publishAll sends sequence 1..sc.Msgs, paced at sc.Rate when set, and
// reports on the returned channel when done.
func publishAll(ctx context.Context, p *publisher, sc scenario, t0 int64, published *atomic.Int64) <-chan error {
	pubDone := make(chan error, 1)
	go func() {
		var interval time.Duration
		if sc.Rate > 0 {
			interval = time.Duration(float64(time.Second) / sc.Rate)
		}
		for i := 1; i <= sc.Msgs; i++ {
			if interval > 0 {
				if wait := time.Duration(t0 + int64(i-1)*int64(interval) - monoNow()); wait > 0 {
					time.Sleep(wait)
				}
			}
			if ctx.Err() != nil {
				pubDone <- ctx.Err()
				return
			}
			if err := p.send(uint64(i)); err != nil {
				pubDone <- err
				return
			}
			published.Add(1)
		}
		pubDone <- nil
	}()
	return pubDone
}

// awaitDeliveries polls progress() until every published message has reached
// every subscriber, or nothing arrived for o.stall after the last publish, or
// ctx ends. It returns the publisher's error, if any.
func awaitDeliveries(ctx context.Context, pubDone <-chan error, published *atomic.Int64, subs int, o runOpts, progress func() int64) error {
	var (
		pubErr     error
		done       bool
		prev       int64 = -1
		progressAt       = monoNow()
	)
	for {
		select {
		case pubErr = <-pubDone:
			done = true
		case <-time.After(10 * time.Millisecond):
		}
		total := progress()
		now := monoNow()
		if total != prev {
			prev, progressAt = total, now
		}
		if done && total >= published.Load()*int64(subs) {
			return pubErr
		}
		if done && time.Duration(now-progressAt) > o.stall {
			return pubErr
		}
		if ctx.Err() != nil {
			if !done {
				pubErr = <-pubDone
			}
			return pubErr
		}
	}
}

// runLean measures a, b, d and e with the bench's own subscribers.
func runLean(ctx context.Context, in *instance, sc scenario, d *dialer, o runOpts, runID string, res *runResult) error {
	pid := in.pid()
	t := time.Now()
	f, err := connectFleet(ctx, d, in.addr(sc.Transport), sc.Transport, sc.Subs, sc.Msgs, runID)
	if err != nil {
		return fmt.Errorf("connecting subscribers: %w", err)
	}
	res.ConnectSeconds = time.Since(t).Seconds()
	defer f.close()

	p, err := connectPublisher(ctx, d, in.mqtt, pubUser, pubPass, runID+"-pub", pubSpec{size: sc.Payload})
	if err != nil {
		return err
	}
	defer p.close()
	if err := warmUp(ctx, p, o, func() (int, int) { return f.warmCount(), sc.Subs }); err != nil {
		return err
	}

	user0, sys0, _ := cpuTimes(pid)
	self0 := selfCPUSeconds()
	deadline, _ := ctx.Deadline()
	_ = p.c.SetWriteDeadline(deadline)
	var published atomic.Int64
	t0 := monoNow()
	pubDone := publishAll(ctx, p, sc, t0, &published)
	pubErr := awaitDeliveries(ctx, pubDone, &published, sc.Subs, o, func() int64 { n, _ := f.received(); return n })
	user1, sys1, _ := cpuTimes(pid)
	res.BrokerCPUSeconds = user1 + sys1 - user0 - sys0
	res.BrokerSysSeconds = sys1 - sys0
	res.BenchCPUSeconds = selfCPUSeconds() - self0

	p.close()
	f.close() // after this the subscribers' own fields may be read
	total, last := f.received()
	res.Published = int(published.Load())
	res.Expected = int64(sc.Msgs) * int64(sc.Subs)
	res.Delivered = total
	for _, s := range f.subs {
		res.Duplicates += s.dups
	}
	// A repeat does not make up for a message that never came.
	res.Drops = res.Expected - (total - res.Duplicates)
	res.Complete = res.Drops == 0
	if last > t0 {
		res.DurationSeconds = float64(last-t0) / 1e9
		res.DeliveriesPerSec = float64(total) / res.DurationSeconds
	}
	perSub := make([][]int64, 0, len(f.subs))
	res.MinPerSub = -1
	for _, s := range f.subs {
		res.Reorders += s.reorders
		n := s.received.Load()
		if res.MinPerSub < 0 || n < res.MinPerSub {
			res.MinPerSub = n
		}
		res.MaxPerSub = max(res.MaxPerSub, n)
		perSub = append(perSub, s.lat)
		if s.err != nil {
			res.SubscriberErrors++
		}
	}
	setLatency(res, computeLatency(perSub))
	if pubErr != nil {
		return fmt.Errorf("publisher: %w", pubErr)
	}
	return nil
}

func setLatency(res *runResult, ls latencyStats) {
	res.LatencySamples = ls.N
	res.LatencyP50Ms = float64(ls.P50) / 1e6
	res.LatencyP99Ms = float64(ls.P99) / 1e6
	res.LatencyMaxMs = float64(ls.Max) / 1e6
}

// runIdle measures (c): RSS per subscriber once the connect storm has
// settled. "Settled" means VmRSS stable across settlePolls readings
// settleEvery apart (within 1 %); for a broker started with a GC trace (the
// appliance) it also means sc.IdleGCs GC cycles have completed since the
// last SUBACK, RSS then stable again. A Go process that allocates nothing
// runs a GC only every 2 minutes (the runtime's forced GC), hence the
// generous -idle-settle bound.
func runIdle(ctx context.Context, in *instance, sc scenario, d *dialer, o runOpts, runID string, res *runResult) error {
	pid := in.pid()
	rss0, _, _ := memKiB(pid)
	t := time.Now()
	f, err := connectFleet(ctx, d, in.addr(sc.Transport), sc.Transport, sc.Subs, 0, runID)
	if err != nil {
		return fmt.Errorf("connecting subscribers: %w", err)
	}
	res.ConnectSeconds = time.Since(t).Seconds()
	defer f.close()

	stormEnd := time.Now()
	deadline := stormEnd.Add(o.idleSettle)
	cpu0, _ := cpuSeconds(pid)
	gc0 := gcTrace(in.log).cycles
	perConn := func(rss int64) float64 { return float64(rss-rss0) / float64(sc.Subs) }

	rss, stable := settledRSS(ctx, pid, deadline)
	res.RSSStormPerConnKiB = perConn(rss)
	gcsOK := true
	if in.gcTrace && sc.IdleGCs > 0 {
		gcsOK = false
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if gcTrace(in.log).cycles-gc0 >= sc.IdleGCs {
				gcsOK = true
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		rss, stable = settledRSS(ctx, pid, deadline)
	}
	cpu1, _ := cpuSeconds(pid)
	res.BrokerCPUSeconds = cpu1 - cpu0
	res.SettleSeconds = time.Since(stormEnd).Seconds()
	res.RSSPerConnKiB = perConn(rss)
	res.Settled = stable && gcsOK
	if in.gcTrace {
		g := gcTrace(in.log)
		res.GCsAfterStorm = g.cycles - gc0
		res.GCLiveHeapMiB, res.GCStacksMiB = g.liveMB, g.stacksMB
		res.GCHeapPerConnKiB = g.liveMB * 1024 / float64(sc.Subs)
	}
	for _, s := range f.subs {
		if s.err != nil {
			res.SubscriberErrors++
		}
	}
	res.Complete = true
	return nil
}

const (
	settlePolls = 5
	settleEvery = 500 * time.Millisecond
)

// settledRSS samples VmRSS every settleEvery until the last settlePolls
// readings lie within 1 % of each other, or the deadline passes; it returns
// the last reading and whether it was stable.
func settledRSS(ctx context.Context, pid int, deadline time.Time) (int64, bool) {
	var win []int64
	for {
		cur, _, err := memKiB(pid)
		if err != nil {
			return 0, false
		}
		win = append(win, cur)
		if len(win) > settlePolls {
			win = win[1:]
		}
		if len(win) == settlePolls {
			lo, hi := win[0], win[0]
			for _, v := range win {
				lo, hi = min(lo, v), max(hi, v)
			}
			if (hi-lo)*100 <= hi {
				return cur, true
			}
		}
		if ctx.Err() != nil || time.Now().Add(settleEvery).After(deadline) {
			return cur, false
		}
		time.Sleep(settleEvery)
	}
}
