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
	Subs      int     `json:"subscribers"`
	Msgs      int     `json:"messages"`
	Rate      float64 `json:"rate"` // messages/s; 0 = as fast as the broker reads them
	Idle      bool    `json:"idle"`
}

// runResult is everything measured in one run.
type runResult struct {
	Scenario    string `json:"scenario"`
	Broker      string `json:"broker"`
	Rep         int    `json:"rep"`
	Transport   string `json:"transport"`
	Subscribers int    `json:"subscribers"`
	Published   int    `json:"published"`
	Expected    int64  `json:"expected_deliveries"`
	Delivered   int64  `json:"delivered"`
	Drops       int64  `json:"drops"`
	Reorders    int64  `json:"reorders"`
	Complete    bool   `json:"complete"`

	ConnectSeconds   float64 `json:"connect_seconds"`
	DurationSeconds  float64 `json:"duration_seconds"` // first publish to last delivery
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	LatencyP50Ms     float64 `json:"latency_p50_ms"`
	LatencyP99Ms     float64 `json:"latency_p99_ms"`
	LatencyMaxMs     float64 `json:"latency_max_ms"`
	RSSPerConnKiB    float64 `json:"rss_per_connection_kib,omitempty"`

	BrokerCPUSeconds float64 `json:"broker_cpu_seconds"` // during the measured phase
	PeakRSSMiB       float64 `json:"broker_peak_rss_mib"`
	BenchCPUSeconds  float64 `json:"bench_cpu_seconds"`
	SubscriberErrors int     `json:"subscriber_errors"`
	Error            string  `json:"error,omitempty"`
}

type runOpts struct {
	payload    int
	runTimeout time.Duration
	stall      time.Duration // give up after this long without a delivery
}

// runOne starts a fresh broker, runs sc against it and stops it.
func runOne(ctx context.Context, b broker, sc scenario, rep int, tmp string, d *dialer, o runOpts) (res runResult) {
	res = runResult{Scenario: sc.Key, Broker: b.Name(), Rep: rep, Transport: sc.Transport, Subscribers: sc.Subs}
	fail := func(err error) runResult { res.Error = err.Error(); return res }

	ctx, cancel := context.WithTimeout(ctx, o.runTimeout)
	defer cancel()
	dir := filepath.Join(tmp, fmt.Sprintf("%s-%s-%d", b.Name(), sc.Key, rep))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	in, err := b.Start(ctx, dir)
	if err != nil {
		return fail(err)
	}
	defer in.stop()
	pid := in.pid()
	defer func() {
		if _, hwm, err := memKiB(pid); err == nil {
			res.PeakRSSMiB = float64(hwm) / 1024
		}
	}()

	rss0, _, _ := memKiB(pid)
	t := time.Now()
	runID := fmt.Sprintf("%s%d%s", b.Name()[:1], rep, sc.Key)
	f, err := connectFleet(ctx, d, in.addr(sc.Transport), sc.Transport, sc.Subs, runID)
	if err != nil {
		return fail(fmt.Errorf("connecting subscribers: %w", err))
	}
	res.ConnectSeconds = time.Since(t).Seconds()
	defer f.close()

	if sc.Idle {
		cpu0, _ := cpuSeconds(pid)
		rss := settledRSS(ctx, pid)
		cpu1, _ := cpuSeconds(pid)
		res.BrokerCPUSeconds = cpu1 - cpu0
		res.RSSPerConnKiB = float64(rss-rss0) / float64(sc.Subs)
		res.Complete = true
		return res
	}

	p, err := connectPublisher(ctx, d, in.mqtt, pubUser, pubPass, runID+"-pub", o.payload)
	if err != nil {
		return fail(err)
	}
	defer p.close()
	// Warm-up: one message every subscriber must see. It proves the ACL lets
	// the publisher through before anything is timed.
	if err := p.send(0); err != nil {
		return fail(fmt.Errorf("warm-up publish: %w", err))
	}
	for f.warmCount() < sc.Subs {
		if ctx.Err() != nil || time.Since(t) > o.runTimeout/2 {
			return fail(fmt.Errorf("warm-up message reached %d of %d subscribers", f.warmCount(), sc.Subs))
		}
		time.Sleep(5 * time.Millisecond)
	}

	cpu0, _ := cpuSeconds(pid)
	self0 := selfCPUSeconds()
	deadline, _ := ctx.Deadline()
	_ = p.c.SetWriteDeadline(deadline)
	var published atomic.Int64
	pubDone := make(chan error, 1)
	t0 := monoNow()
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

	var (
		pubErr   error
		done     bool
		total    int64
		last     int64
		progress       = monoNow()
		prev     int64 = -1
	)
	for {
		select {
		case pubErr = <-pubDone:
			done = true
		case <-time.After(10 * time.Millisecond):
		}
		total, last = f.received()
		now := monoNow()
		if total != prev {
			prev, progress = total, now
		}
		if done && total >= published.Load()*int64(sc.Subs) {
			break
		}
		if done && time.Duration(now-progress) > o.stall {
			break
		}
		if ctx.Err() != nil {
			if !done {
				pubErr = <-pubDone
			}
			break
		}
	}
	cpu1, _ := cpuSeconds(pid)
	res.BrokerCPUSeconds = cpu1 - cpu0
	res.BenchCPUSeconds = selfCPUSeconds() - self0

	p.close()
	f.close()
	res.Published = int(published.Load())
	res.Expected = int64(sc.Msgs) * int64(sc.Subs)
	res.Delivered = total
	res.Drops = res.Expected - total
	res.Complete = res.Drops == 0
	if last > t0 {
		res.DurationSeconds = float64(last-t0) / 1e9
		res.DeliveriesPerSec = float64(total) / res.DurationSeconds
	}
	var maxLat int64
	for _, s := range f.subs {
		res.Reorders += s.reorders
		maxLat = max(maxLat, s.maxLat)
		if s.err != nil {
			res.SubscriberErrors++
		}
	}
	h := f.hist.merged()
	res.LatencyP50Ms = float64(quantile(h, 0.50)) / 1000
	res.LatencyP99Ms = float64(quantile(h, 0.99)) / 1000
	res.LatencyMaxMs = float64(maxLat) / 1e6
	if pubErr != nil {
		res.Error = "publisher: " + pubErr.Error()
	}
	return res
}

// settledRSS samples VmRSS until two readings 200 ms apart differ by less
// than 1 %, or 3 s pass: a broker may still be allocating for the last
// connections when their SUBACKs arrive.
func settledRSS(ctx context.Context, pid int) int64 {
	prev, _, _ := memKiB(pid)
	for i := 0; i < 15 && ctx.Err() == nil; i++ {
		time.Sleep(200 * time.Millisecond)
		cur, _, _ := memKiB(pid)
		if d := cur - prev; d*100 < cur && -d*100 < cur {
			return cur
		}
		prev = cur
	}
	return prev
}
