package main

// Scenarios g and h (issue #14): appliances clustered on loopback through
// their embedded nats-servers, each node with its own ports and state
// directory, one publisher on node 1.
//
//   - g: deliveries/s with N subscribers all on node 1, then the same N
//     spread over every node (which goes first alternates), same publisher,
//     same cluster; with every node's CPU, so that a reader can tell what a
//     core per node would give on a machine where all nodes share the cores.
//   - h: at a steady rate, subscribers on node 1 and on the last node at the
//     same time; the difference of their latencies is the cluster hop. Then,
//     once the cluster is stopped, the same on one appliance without a
//     cluster: what clustering adds to node 1's own subscribers.
//
// The journal promises every subscriber every message once, in order, QoS
// 0 or not: a loss, a repeat or a reorder here fails the bench.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// clusterGroup is one node's subscribers in one phase.
type clusterGroup struct {
	Node             string  `json:"node"`
	Subscribers      int     `json:"subscribers"`
	Expected         int64   `json:"expected_deliveries"`
	Delivered        int64   `json:"delivered"` // repeats included
	Drops            int64   `json:"drops"`
	Duplicates       int64   `json:"duplicates"`
	Reorders         int64   `json:"reorders"`
	SubscriberErrors int     `json:"subscriber_errors"`
	LatencySamples   int     `json:"latency_samples"`
	LatencyP50Ms     float64 `json:"latency_p50_ms"`
	LatencyP99Ms     float64 `json:"latency_p99_ms"`
	LatencyMaxMs     float64 `json:"latency_max_ms"`
}

// clusterNodeStat is one node's process during one phase.
type clusterNodeStat struct {
	Node        string  `json:"node"`
	Subscribers int     `json:"subscribers"`
	Deliveries  int64   `json:"deliveries"` // to its own subscribers
	CPUSeconds  float64 `json:"cpu_seconds"`
	// CPUPerDeliveryUs is the node's CPU over its own deliveries (0 when it
	// had none: it still replicates and consumes the stream).
	CPUPerDeliveryUs float64 `json:"cpu_us_per_own_delivery,omitempty"`
	PeakRSSMiB       float64 `json:"peak_rss_mib"` // VmHWM at the end of the phase
}

// clusterPhase is one measured placement of subscribers in one cluster.
type clusterPhase struct {
	Scenario    string  `json:"scenario"`  // "g" or "h"
	Placement   string  `json:"placement"` // "node1", "spread" (g); "hop", "standalone" (h)
	Rep         int     `json:"rep"`
	Nodes       int     `json:"nodes"`
	Rate        float64 `json:"rate"` // messages/s; 0 = as fast as the cluster takes them
	Payload     int     `json:"payload"`
	Subscribers int     `json:"subscribers"`
	Published   int     `json:"published"`
	Expected    int64   `json:"expected_deliveries"`
	Delivered   int64   `json:"delivered"`
	Drops       int64   `json:"drops"`
	Duplicates  int64   `json:"duplicates"`
	Reorders    int64   `json:"reorders"`
	Complete    bool    `json:"complete"` // every subscriber got every message once, in order

	ConnectSeconds   float64 `json:"connect_seconds"`
	DurationSeconds  float64 `json:"duration_seconds"` // first publish to last delivery
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	// JournaledSeconds is when node 1 had read (and so journaled) the last
	// publish, from the first; JournaledPerSec the rate of that. Close to
	// DurationSeconds: the journal's write rate bounded the run, not the
	// fan-out.
	JournaledSeconds float64 `json:"journaled_seconds"`
	JournaledPerSec  float64 `json:"journaled_per_second"`

	// All nodes' CPU and the load generator's, during the measured phase.
	NodesCPUSeconds       float64 `json:"nodes_cpu_seconds"`
	NodesCPUPerDeliveryUs float64 `json:"nodes_cpu_us_per_delivery"`
	BenchCPUSeconds       float64 `json:"bench_cpu_seconds"`
	BenchCPUPerDeliveryUs float64 `json:"bench_cpu_us_per_delivery"`
	// MachineBusy is (nodes' + bench's CPU) / (CPUs × duration): near 1
	// the run was bound by the machine's cores, not by the cluster.
	MachineBusy float64 `json:"machine_busy"`
	// MachineBusyAll is the same from /proc/stat: every process, the
	// other users of a shared machine included.
	MachineBusyAll float64 `json:"machine_busy_all_processes"`
	// CoreBoundPerSec is deliveries / the busiest node's CPU seconds: the
	// rate if every node had a core of its own (and the load generator
	// others) and stayed CPU-bound. An estimate from CPU time, not a
	// measurement.
	CoreBoundPerSec float64 `json:"core_per_node_estimate_deliveries_per_second"`

	StreamLeader string            `json:"stream_leader"` // the journal stream's leader when the phase began
	Groups       []clusterGroup    `json:"groups"`
	NodeStats    []clusterNodeStat `json:"node_stats"`
	Error        string            `json:"error,omitempty"`
}

// failures says what a phase lost, repeated or reordered, or why it did
// not run to the end; "" when every message reached every subscriber once.
func (p clusterPhase) failures() string {
	var f []string
	if p.Error != "" {
		f = append(f, p.Error)
	}
	if p.Drops != 0 {
		f = append(f, fmt.Sprintf("%d deliveries lost", p.Drops))
	}
	if p.Duplicates != 0 {
		f = append(f, fmt.Sprintf("%d duplicated", p.Duplicates))
	}
	if p.Reorders != 0 {
		f = append(f, fmt.Sprintf("%d out of order", p.Reorders))
	}
	for _, g := range p.Groups {
		if g.SubscriberErrors > 0 {
			f = append(f, fmt.Sprintf("%d subscribers on %s lost their connection", g.SubscriberErrors, g.Node))
		}
	}
	return strings.Join(f, ", ")
}

// clusterSpec is what the cluster scenarios run: g and/or h.
type clusterSpec struct {
	nodes int
	g, h  *scenario // h.Subs is per node (node 1 and the last)
}

// clusterNode is one appliance of a running cluster.
type clusterNode struct {
	name string // fh1, fh2, ...
	sock string // control socket
	in   *instance
}

type applianceCluster struct {
	a     *appliance
	nodes []*clusterNode
	// standalone: one appliance without [cluster], for h's baseline; it
	// has no cluster status to wait for.
	standalone bool
}

// clusterConfig is a.config plus the [cluster] section of node name.
func (a *appliance) clusterConfig(mq, ws, state, sock, name, listen string, peers []string) string {
	return a.config(mq, ws, state, sock) + fmt.Sprintf("\n[cluster]\nname = %q\nlisten = %q\npeers = [\"%s\"]\nreplicas = %d\n",
		name, listen, strings.Join(peers, `", "`), len(peers))
}

// clusterPrecheck runs `firehosectl check` on a generated node config, so
// that a binary without [cluster] is refused once, with its own message.
func (a *appliance) clusterPrecheck(ctx context.Context, tmp string, nodes int) error {
	dir := filepath.Join(tmp, "check-cluster")
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	var peers []string
	for i := range nodes {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", 3+i))
	}
	conf := a.clusterConfig("127.0.0.1:1", "127.0.0.1:2", state, filepath.Join(dir, "control.sock"), "fh1", peers[0], peers)
	confPath := filepath.Join(dir, "firehose.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, a.bin, "check", "--config", confPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("firehosectl check refuses a clustered config: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startCluster starts n nodes under dir, all at once (a node may wait for
// its peers), and returns once every one answers MQTT and reports the
// journal's quorum with its fan-out running.
func startCluster(ctx context.Context, a *appliance, n int, dir string) (*applianceCluster, error) {
	cl := &applianceCluster{a: a}
	var routes, mqs, wss []string
	for range n {
		r, err1 := freePort()
		mq, err2 := freePort()
		ws, err3 := freePort()
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, err
		}
		routes, mqs, wss = append(routes, r), append(mqs, mq), append(wss, ws)
	}
	for i := range n {
		name := fmt.Sprintf("fh%d", i+1)
		nd := filepath.Join(dir, name)
		state := filepath.Join(nd, "state")
		if err := os.MkdirAll(state, 0o700); err != nil {
			cl.stop()
			return nil, err
		}
		sock := filepath.Join(nd, "control.sock")
		confPath := filepath.Join(nd, "firehose.toml")
		if err := os.WriteFile(confPath, []byte(a.clusterConfig(mqs[i], wss[i], state, sock, name, routes[i], routes)), 0o600); err != nil {
			cl.stop()
			return nil, err
		}
		in, err := spawn(name, nd, mqs[i], wss[i], a.env, a.bin, "serve", "--config", confPath)
		if err != nil {
			cl.stop()
			return nil, err
		}
		cl.nodes = append(cl.nodes, &clusterNode{name: name, sock: sock, in: in})
	}
	// A first election takes up to ~10 s; the bound is for a busy machine.
	deadline := time.Now().Add(90 * time.Second)
	for _, nd := range cl.nodes {
		if err := nd.in.waitReady(ctx, deadline); err != nil {
			cl.stop()
			return nil, err
		}
	}
	for _, nd := range cl.nodes {
		if err := cl.await(ctx, nd, deadline, "a quorum", func(s clusterState) bool { return s.Quorum && s.StreamLeader != "" }); err != nil {
			cl.stop()
			return nil, err
		}
	}
	return cl, nil
}

// stop stops every node at once.
func (cl *applianceCluster) stop() {
	var wg sync.WaitGroup
	for _, nd := range cl.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nd.in.stop() }()
	}
	wg.Wait()
}

// clusterState is the part of `firehosectl status --json` the bench reads.
type clusterState struct {
	Node         string `json:"node"`
	StreamLeader string `json:"stream_leader"`
	Quorum       bool   `json:"quorum"`
	ConsumerLag  uint64 `json:"consumer_lag"`
	LastError    string `json:"last_error"`
}

// status asks a node through the CLI and its control socket. The CLI exits
// 1 when the node is degraded and prints the status all the same.
func (cl *applianceCluster) status(ctx context.Context, nd *clusterNode) (clusterState, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, runErr := exec.CommandContext(ctx, cl.a.bin, "status", "--json", "--socket", nd.sock).Output()
	var st struct {
		Cluster *clusterState `json:"cluster"`
		Reasons []string      `json:"reasons"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return clusterState{}, fmt.Errorf("%s status: %v (%v)", nd.name, err, runErr)
	}
	if st.Cluster == nil {
		return clusterState{}, fmt.Errorf("%s status has no cluster block: %q", nd.name, st.Reasons)
	}
	return *st.Cluster, nil
}

// await polls a node's status until ok holds or the deadline passes.
func (cl *applianceCluster) await(ctx context.Context, nd *clusterNode, deadline time.Time, what string, ok func(clusterState) bool) error {
	var last clusterState
	var lastErr error
	for {
		select {
		case <-nd.in.exited:
			return fmt.Errorf("%s exited: %s", nd.name, nd.in.logTail())
		default:
		}
		last, lastErr = cl.status(ctx, nd)
		if lastErr == nil && ok(last) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: no %s in time (last status %+v, %v); log: %s", nd.name, what, last, lastErr, nd.in.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runClusterRep starts a fresh cluster and runs spec's phases in it: g's
// two placements (node 1 first on odd repetitions, spread first on even
// ones), then h.
func runClusterRep(ctx context.Context, a *appliance, spec clusterSpec, rep int, tmp string, d *dialer, o runOpts) []clusterPhase {
	var todo []clusterPhase
	if spec.g != nil {
		placements := []string{"node1", "spread"}
		if rep%2 == 0 {
			placements = []string{"spread", "node1"}
		}
		for _, pl := range placements {
			todo = append(todo, clusterPhase{Scenario: "g", Placement: pl, Rep: rep, Nodes: spec.nodes, Payload: spec.g.Payload, Subscribers: spec.g.Subs})
		}
	}
	if spec.h != nil {
		todo = append(todo, clusterPhase{Scenario: "h", Placement: "hop", Rep: rep, Nodes: spec.nodes, Rate: spec.h.Rate, Payload: spec.h.Payload, Subscribers: 2 * spec.h.Subs},
			clusterPhase{Scenario: "h", Placement: "standalone", Rep: rep, Nodes: 1, Rate: spec.h.Rate, Payload: spec.h.Payload, Subscribers: spec.h.Subs})
	}
	fail := func(err error) []clusterPhase {
		for i := range todo {
			todo[i].Error = err.Error()
		}
		return todo
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second+time.Duration(len(todo))*o.runTimeout)
	defer cancel()
	dir := filepath.Join(tmp, fmt.Sprintf("cluster-%d", rep))
	t := time.Now()
	cl, err := startCluster(ctx, a, spec.nodes, dir)
	if err != nil {
		return fail(fmt.Errorf("starting the cluster: %w", err))
	}
	fmt.Fprintf(os.Stderr, "bench: cluster of %d  rep %d: quorum on every node %.1fs after the start\n", spec.nodes, rep, time.Since(t).Seconds())
	defer func() {
		t := time.Now()
		cl.stop()
		fmt.Fprintf(os.Stderr, "bench: cluster of %d  rep %d: stopped in %.1fs\n", spec.nodes, rep, time.Since(t).Seconds())
	}()
	for i := range todo {
		p := &todo[i]
		sc := spec.g
		if p.Scenario == "h" {
			sc = spec.h
		}
		t := time.Now()
		if p.Placement == "standalone" {
			// The cluster's processes would compete for the cores.
			cl.stop()
			in, err := a.Start(ctx, filepath.Join(dir, "standalone"), startOpts{})
			if err != nil {
				p.Error = fmt.Sprintf("starting one appliance: %v", err)
				continue
			}
			cl = &applianceCluster{a: a, nodes: []*clusterNode{{name: "one", in: in}}, standalone: true}
		}
		if err := cl.runPhase(ctx, p, sc, d, o); err != nil && p.Error == "" {
			p.Error = err.Error()
		}
		fmt.Fprintf(os.Stderr, "bench: %s-%-10s rep %d: %s (%.1fs)\n", p.Scenario, p.Placement, rep, p.oneLine(), time.Since(t).Seconds())
	}
	return todo
}

// counts is how many subscribers each node gets in a placement.
func (p *clusterPhase) counts(sc *scenario) []int {
	n := make([]int, p.Nodes)
	switch p.Placement {
	case "node1":
		n[0] = sc.Subs
	case "spread":
		for i := range n {
			n[i] = sc.Subs / p.Nodes
			if i < sc.Subs%p.Nodes {
				n[i]++
			}
		}
	case "hop":
		n[0], n[p.Nodes-1] = sc.Subs, sc.Subs
	case "standalone":
		n[0] = sc.Subs
	}
	return n
}

// runPhase measures one placement: fleets on their nodes, the publisher
// on node 1, every node's CPU from /proc.
func (cl *applianceCluster) runPhase(ctx context.Context, p *clusterPhase, sc *scenario, d *dialer, o runOpts) error {
	if !cl.standalone {
		// Start from a quiet cluster: every node has fanned out all there is.
		deadline := time.Now().Add(60 * time.Second)
		for _, nd := range cl.nodes {
			if err := cl.await(ctx, nd, deadline, "idle fan-out", func(s clusterState) bool { return s.Quorum && s.ConsumerLag == 0 }); err != nil {
				return err
			}
		}
		if st, err := cl.status(ctx, cl.nodes[0]); err == nil {
			p.StreamLeader = st.StreamLeader
		}
	}

	counts := p.counts(sc)
	runID := fmt.Sprintf("c%d%s%s", p.Rep, p.Scenario, p.Placement)
	fleets := make([]*fleet, len(cl.nodes))
	defer func() {
		for _, f := range fleets {
			if f != nil {
				f.close()
			}
		}
	}()
	t := time.Now()
	subs := 0
	for i, nd := range cl.nodes {
		if counts[i] == 0 {
			continue
		}
		f, err := connectFleet(ctx, d, nd.in.mqtt, "tcp", counts[i], sc.Msgs, runID+nd.name)
		if err != nil {
			return fmt.Errorf("connecting subscribers to %s: %w", nd.name, err)
		}
		fleets[i] = f
		subs += counts[i]
	}
	p.ConnectSeconds = time.Since(t).Seconds()
	warmed := func() int {
		n := 0
		for _, f := range fleets {
			if f != nil {
				n += f.warmCount()
			}
		}
		return n
	}
	received := func() (total, last int64) {
		for _, f := range fleets {
			if f != nil {
				n, l := f.received()
				total, last = total+n, max(last, l)
			}
		}
		return total, last
	}

	pub, err := connectPublisher(ctx, d, cl.nodes[0].in.mqtt, pubUser, pubPass, runID+"-pub", pubSpec{size: sc.Payload})
	if err != nil {
		return err
	}
	defer pub.close()
	// Sequence 0 until every subscriber on every node has it: a node whose
	// fan-out started a moment later would miss a single warm-up message.
	warmDeadline := time.Now().Add(o.runTimeout / 2)
	var sent time.Time
	for ; warmed() < subs; time.Sleep(5 * time.Millisecond) {
		if ctx.Err() != nil || time.Now().After(warmDeadline) {
			return fmt.Errorf("warm-up message reached %d of %d subscribers", warmed(), subs)
		}
		if time.Since(sent) > time.Second {
			if err := pub.send(0); err != nil {
				return fmt.Errorf("warm-up publish: %w", err)
			}
			sent = time.Now()
		}
	}

	cpu0 := make([]float64, len(cl.nodes))
	for i, nd := range cl.nodes {
		cpu0[i], _ = cpuSeconds(nd.in.pid())
	}
	self0 := selfCPUSeconds()
	mBusy0, mTotal0, _ := machineJiffies()
	if dl, ok := ctx.Deadline(); ok {
		_ = pub.c.SetWriteDeadline(dl)
	}
	var published atomic.Int64
	t0 := monoNow()
	// When the publisher's node has read the last PUBLISH its journal has
	// taken every message (a QoS 0 publish is journaled before the next
	// packet is read): a PINGREQ round trip after the last one says when.
	pubDone := make(chan error, 1)
	var takenAt atomic.Int64
	go func() {
		err := <-publishAll(ctx, pub, *sc, t0, &published)
		if err == nil && pub.sync(o.runTimeout) == nil {
			takenAt.Store(monoNow())
		}
		pubDone <- err
	}()
	pubErr := awaitDeliveries(ctx, pubDone, &published, subs, o, func() int64 { n, _ := received(); return n })
	cpu1 := make([]float64, len(cl.nodes))
	for i, nd := range cl.nodes {
		cpu1[i], _ = cpuSeconds(nd.in.pid())
	}
	p.BenchCPUSeconds = selfCPUSeconds() - self0
	if mBusy1, mTotal1, err := machineJiffies(); err == nil && mTotal1 > mTotal0 {
		p.MachineBusyAll = float64(mBusy1-mBusy0) / float64(mTotal1-mTotal0)
	}

	pub.close()
	for _, f := range fleets {
		if f != nil {
			f.close() // after this the subscribers' own fields may be read
		}
	}
	total, last := received()
	p.Published = int(published.Load())
	if last > t0 {
		p.DurationSeconds = float64(last-t0) / 1e9
	}
	if at := takenAt.Load(); at > t0 {
		p.JournaledSeconds = float64(at-t0) / 1e9
		p.JournaledPerSec = float64(p.Published) / p.JournaledSeconds
	}
	var maxCPU float64
	for i, nd := range cl.nodes {
		ns := clusterNodeStat{Node: nd.name, Subscribers: counts[i], CPUSeconds: cpu1[i] - cpu0[i]}
		if _, hwm, err := memKiB(nd.in.pid()); err == nil {
			ns.PeakRSSMiB = float64(hwm) / 1024
		}
		if f := fleets[i]; f != nil {
			g := clusterGroup{Node: nd.name, Subscribers: counts[i], Expected: int64(sc.Msgs) * int64(counts[i])}
			var lat [][]int64
			for _, s := range f.subs {
				g.Delivered += s.received.Load()
				g.Duplicates += s.dups
				g.Reorders += s.reorders
				if s.err != nil {
					g.SubscriberErrors++
				}
				lat = append(lat, s.lat)
			}
			g.Drops = g.Expected - (g.Delivered - g.Duplicates)
			ls := computeLatency(lat)
			g.LatencySamples, g.LatencyP50Ms, g.LatencyP99Ms, g.LatencyMaxMs = ls.N, float64(ls.P50)/1e6, float64(ls.P99)/1e6, float64(ls.Max)/1e6
			p.Groups = append(p.Groups, g)
			p.Expected += g.Expected
			p.Drops += g.Drops
			p.Duplicates += g.Duplicates
			p.Reorders += g.Reorders
			ns.Deliveries = g.Delivered - g.Duplicates
			if ns.Deliveries > 0 {
				ns.CPUPerDeliveryUs = ns.CPUSeconds * 1e6 / float64(ns.Deliveries)
			}
		}
		p.NodesCPUSeconds += ns.CPUSeconds
		maxCPU = max(maxCPU, ns.CPUSeconds)
		p.NodeStats = append(p.NodeStats, ns)
	}
	p.Delivered = total
	p.Complete = p.Drops == 0 && p.Duplicates == 0 && p.Reorders == 0
	if distinct := total - p.Duplicates; distinct > 0 {
		if p.DurationSeconds > 0 {
			p.DeliveriesPerSec = float64(distinct) / p.DurationSeconds
			p.MachineBusy = (p.NodesCPUSeconds + p.BenchCPUSeconds) / (float64(runtime.NumCPU()) * p.DurationSeconds)
		}
		p.NodesCPUPerDeliveryUs = p.NodesCPUSeconds * 1e6 / float64(distinct)
		p.BenchCPUPerDeliveryUs = p.BenchCPUSeconds * 1e6 / float64(distinct)
		if maxCPU > 0 {
			p.CoreBoundPerSec = float64(distinct) / maxCPU
		}
	}
	if pubErr != nil {
		return fmt.Errorf("publisher: %w", pubErr)
	}
	return nil
}

func (p clusterPhase) oneLine() string {
	if p.Error != "" && p.Delivered == 0 {
		return "ERROR " + p.Error
	}
	s := fmt.Sprintf("%d/%d delivered, %.0f/s, journaled by %.2fs, last at %.2fs, nodes CPU %.2fs (%.1f µs/delivery), bench CPU %.2fs, machine busy %.0f %% (all processes %.0f %%)",
		p.Delivered-p.Duplicates, p.Expected, p.DeliveriesPerSec, p.JournaledSeconds, p.DurationSeconds, p.NodesCPUSeconds, p.NodesCPUPerDeliveryUs, p.BenchCPUSeconds, 100*p.MachineBusy, 100*p.MachineBusyAll)
	if p.StreamLeader != "" {
		s += ", stream leader " + p.StreamLeader
	}
	var ns []string
	for _, n := range p.NodeStats {
		ns = append(ns, fmt.Sprintf("%s %d subs %.2fs", n.Node, n.Subscribers, n.CPUSeconds))
	}
	s += "; " + strings.Join(ns, ", ")
	if p.Scenario == "h" {
		for _, g := range p.Groups {
			s += fmt.Sprintf("; %s p50 %.2f p99 %.2f max %.2f ms", g.Node, g.LatencyP50Ms, g.LatencyP99Ms, g.LatencyMaxMs)
		}
	}
	if f := p.failures(); f != "" {
		s += "; FAILED: " + f
	}
	return s
}

// clusterSummary is the medians over repetitions.
type clusterSummary struct {
	Nodes int `json:"nodes"`
	// g: per placement.
	Fanout map[string]*clusterFanoutStat `json:"fanout,omitempty"`
	// SpreadOverNode1 is the ratio of the median deliveries/s; CoreBound
	// that of the core-per-node estimates.
	SpreadOverNode1          float64 `json:"spread_over_node1,omitempty"`
	SpreadOverNode1CoreBound float64 `json:"spread_over_node1_core_per_node_estimate,omitempty"`
	// h: per node group, and the hop = last node − node 1, taken within
	// each repetition (same messages, same moment), then the median.
	Hop map[string]*latencyTriple `json:"hop_latency_ms,omitempty"`
	// Failed lists every phase that lost, repeated or reordered a message,
	// or did not finish.
	Failed []string `json:"failed,omitempty"`
}

type clusterFanoutStat struct {
	Runs                  int       `json:"runs"`
	Complete              int       `json:"complete"`
	SubscribersPerNode    []int     `json:"subscribers_per_node"`
	DeliveriesPerSec      float64   `json:"deliveries_per_second"`
	NodeCPUPerDeliveryUs  []float64 `json:"node_cpu_us_per_own_delivery"` // per node; 0: no subscribers there
	NodeCPUSeconds        []float64 `json:"node_cpu_seconds"`
	NodesCPUPerDeliveryUs float64   `json:"nodes_cpu_us_per_delivery"`
	BenchCPUPerDeliveryUs float64   `json:"bench_cpu_us_per_delivery"`
	MachineBusy           float64   `json:"machine_busy"`
	MachineBusyAll        float64   `json:"machine_busy_all_processes"`
	CoreBoundPerSec       float64   `json:"core_per_node_estimate_deliveries_per_second"`
	LatencyP99Ms          float64   `json:"latency_p99_ms"`
	JournaledPerSec       float64   `json:"journaled_per_second"`
	JournaledSeconds      float64   `json:"journaled_seconds"`
	DurationSeconds       float64   `json:"duration_seconds"`
}

type latencyTriple struct {
	Runs int     `json:"runs"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

func summarizeCluster(nodes int, phases []clusterPhase) *clusterSummary {
	s := &clusterSummary{Nodes: nodes, Fanout: map[string]*clusterFanoutStat{}, Hop: map[string]*latencyTriple{}}
	for _, p := range phases {
		if f := p.failures(); f != "" {
			s.Failed = append(s.Failed, fmt.Sprintf("%s %s rep %d: %s", p.Scenario, p.Placement, p.Rep, f))
		}
	}
	for _, pl := range []string{"node1", "spread"} {
		var ps []clusterPhase
		for _, p := range phases {
			if p.Scenario == "g" && p.Placement == pl && p.Error == "" {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			continue
		}
		med := func(f func(clusterPhase) float64) float64 {
			var xs []float64
			for _, p := range ps {
				xs = append(xs, f(p))
			}
			return median(xs)
		}
		st := &clusterFanoutStat{Runs: len(ps)}
		for _, p := range ps {
			if p.Complete {
				st.Complete++
			}
		}
		for i := range ps[0].NodeStats {
			st.SubscribersPerNode = append(st.SubscribersPerNode, ps[0].NodeStats[i].Subscribers)
			st.NodeCPUPerDeliveryUs = append(st.NodeCPUPerDeliveryUs, med(func(p clusterPhase) float64 { return p.NodeStats[i].CPUPerDeliveryUs }))
			st.NodeCPUSeconds = append(st.NodeCPUSeconds, med(func(p clusterPhase) float64 { return p.NodeStats[i].CPUSeconds }))
		}
		st.DeliveriesPerSec = med(func(p clusterPhase) float64 { return p.DeliveriesPerSec })
		st.NodesCPUPerDeliveryUs = med(func(p clusterPhase) float64 { return p.NodesCPUPerDeliveryUs })
		st.BenchCPUPerDeliveryUs = med(func(p clusterPhase) float64 { return p.BenchCPUPerDeliveryUs })
		st.MachineBusy = med(func(p clusterPhase) float64 { return p.MachineBusy })
		st.MachineBusyAll = med(func(p clusterPhase) float64 { return p.MachineBusyAll })
		st.CoreBoundPerSec = med(func(p clusterPhase) float64 { return p.CoreBoundPerSec })
		st.JournaledPerSec = med(func(p clusterPhase) float64 { return p.JournaledPerSec })
		st.JournaledSeconds = med(func(p clusterPhase) float64 { return p.JournaledSeconds })
		st.DurationSeconds = med(func(p clusterPhase) float64 { return p.DurationSeconds })
		st.LatencyP99Ms = med(func(p clusterPhase) float64 {
			var all float64
			for _, g := range p.Groups {
				all = max(all, g.LatencyP99Ms)
			}
			return all
		})
		s.Fanout[pl] = st
	}
	if a, b := s.Fanout["node1"], s.Fanout["spread"]; a != nil && b != nil && a.DeliveriesPerSec > 0 && a.CoreBoundPerSec > 0 {
		s.SpreadOverNode1 = b.DeliveriesPerSec / a.DeliveriesPerSec
		s.SpreadOverNode1CoreBound = b.CoreBoundPerSec / a.CoreBoundPerSec
	}
	// h: per repetition, the hop phase's two groups, its difference, and
	// the standalone baseline with clustering's cost to node 1 over it.
	rows := map[string]*[3][]float64{}
	add := func(key string, v [3]float64) {
		if rows[key] == nil {
			rows[key] = &[3][]float64{}
		}
		for i := range v {
			rows[key][i] = append(rows[key][i], v[i])
		}
	}
	lat := func(g clusterGroup) [3]float64 { return [3]float64{g.LatencyP50Ms, g.LatencyP99Ms, g.LatencyMaxMs} }
	diff := func(a, b [3]float64) [3]float64 { return [3]float64{a[0] - b[0], a[1] - b[1], a[2] - b[2]} }
	for _, p := range phases {
		if p.Scenario != "h" || p.Placement != "hop" || p.Error != "" || len(p.Groups) != 2 {
			continue
		}
		near, far := lat(p.Groups[0]), lat(p.Groups[1])
		add(p.Groups[0].Node, near)
		add(p.Groups[1].Node, far)
		add("hop", diff(far, near))
		for _, q := range phases {
			if q.Scenario == "h" && q.Placement == "standalone" && q.Rep == p.Rep && q.Error == "" && len(q.Groups) == 1 {
				one := lat(q.Groups[0])
				add("standalone", one)
				add("cluster_over_standalone", diff(near, one))
			}
		}
	}
	for k, v := range rows {
		s.Hop[k] = &latencyTriple{Runs: len(v[0]), P50: median(v[0]), P99: median(v[1]), Max: median(v[2])}
	}
	return s
}

// writeClusterMarkdown prints the cluster tables.
func writeClusterMarkdown(w io.Writer, s *clusterSummary, phases []clusterPhase, reps int) {
	fmt.Fprintf(w, "\n### Cluster of %d appliances on loopback (issue #14), medians of %d repetition(s)\n\n", s.Nodes, reps)
	nodeCols := func(xs []float64) string {
		var parts []string
		for _, x := range xs {
			if x == 0 {
				parts = append(parts, "–")
			} else {
				parts = append(parts, num(x))
			}
		}
		return strings.Join(parts, " / ")
	}
	if len(s.Fanout) > 0 {
		fmt.Fprintln(w, "Fan-out, one publisher on fh1 as fast as the cluster takes it; per-node cells are fh1 / fh2 / ….")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| subscribers | deliveries/s ↑ | journaled by / last delivery (s) | node CPU per own delivery (µs) | node CPU (s) | all nodes' CPU per delivery (µs) | bench CPU per delivery (µs) | machine busy: nodes + bench / all | core-per-node estimate (deliveries/s) | p99 (ms) | complete |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
		for _, pl := range []string{"node1", "spread"} {
			st := s.Fanout[pl]
			if st == nil {
				continue
			}
			var per []string
			for _, n := range st.SubscribersPerNode {
				per = append(per, fmt.Sprint(n))
			}
			fmt.Fprintf(w, "| %s | %s | %s / %s | %s | %s | %s | %s | %.0f / %.0f %% | %s | %s | %d/%d |\n",
				strings.Join(per, " / "), num(st.DeliveriesPerSec), num(st.JournaledSeconds), num(st.DurationSeconds), nodeCols(st.NodeCPUPerDeliveryUs), nodeCols(st.NodeCPUSeconds),
				num(st.NodesCPUPerDeliveryUs), num(st.BenchCPUPerDeliveryUs), 100*st.MachineBusy, 100*st.MachineBusyAll, num(st.CoreBoundPerSec), num(st.LatencyP99Ms), st.Complete, st.Runs)
		}
		if s.SpreadOverNode1 > 0 {
			fmt.Fprintf(w, "| **spread / all on fh1** | **%.2f×** | | | | | | | **%.2f×** | | |\n", s.SpreadOverNode1, s.SpreadOverNode1CoreBound)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Journaled by: when fh1 had journaled the publisher's last message (a PINGREQ round trip after it); near the last delivery, the journal's write rate bounded the run, not the fan-out. Machine busy: the nodes' and the bench's CPU over all cores × the run, then every process's (/proc/stat). Core-per-node estimate: deliveries / the busiest node's CPU seconds, the rate if every node had a core of its own and stayed CPU-bound (an estimate, not a measurement).")
		fmt.Fprintln(w)
	}
	if h := s.Hop["hop"]; h != nil {
		fmt.Fprintln(w, "Steady rate, publisher on fh1, subscribers on fh1 and on the last node at the same time (exact percentiles over every delivery); differences are taken within each repetition, then the median:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| subscribers on | p50 (ms) | p99 (ms) | max (ms) |")
		fmt.Fprintln(w, "|---|---|---|---|")
		row := func(label, key string, bold bool) {
			t := s.Hop[key]
			if t == nil {
				return
			}
			f := "| %s | %s | %s | %s |\n"
			if bold {
				f = "| **%s** | **%s** | **%s** | **%s** |\n"
			}
			fmt.Fprintf(w, f, label, num(t.P50), num(t.P99), num(t.Max))
		}
		var nodes []string
		for k := range s.Hop {
			if strings.HasPrefix(k, "fh") {
				nodes = append(nodes, k)
			}
		}
		slices.Sort(nodes)
		for i, k := range nodes {
			label := k
			if i == 0 {
				label += " (the publisher's node)"
			}
			row(label, k, false)
		}
		row("hop: last node − fh1", "hop", true)
		row("one appliance, no cluster (run after the cluster, not at the same time)", "standalone", false)
		row("fh1 − one appliance: what clustering adds", "cluster_over_standalone", true)
		fmt.Fprintln(w)
	}
	var leaders []string
	for _, p := range phases {
		if p.StreamLeader != "" {
			leaders = append(leaders, fmt.Sprintf("%s %s rep %d: %s", p.Scenario, p.Placement, p.Rep, p.StreamLeader))
		}
	}
	if len(leaders) > 0 {
		fmt.Fprintf(w, "Stream leader: %s.\n", strings.Join(leaders, "; "))
	}
	if len(s.Failed) > 0 {
		fmt.Fprintf(w, "\nFAILED (lost, repeated or reordered messages, or unfinished):\n- %s\n", strings.Join(s.Failed, "\n- "))
	}
}
