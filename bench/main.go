// Command bench measures MQTT fan-out of the firehose appliance and of
// Mosquitto side by side, in one run: deliveries per second at 100 to 10,000
// subscribers, exact publish-to-delivery latency and broker CPU per delivery
// at a steady rate, memory per idle subscriber, the time a burst takes to
// reach everyone, and the same for websocket subscribers running MQTT.js
// (issues #7 and #13). The appliance can run with its journal on, off, or
// both in one run (issue #12). Scenarios g and h cluster three appliances
// on loopback (issue #14): fan-out with the subscribers on one node against
// spread over all, and the latency of the cluster hop.
//
// It starts both brokers itself, on 127.0.0.1 only, alternates them for each
// scenario and repetition, and reports medians as a Markdown table on stdout,
// JSON and an SVG chart in bench/results/. Every loop is bounded in count and
// time. It reports; it never fails on a timing, so CI can run -quick. It
// does fail (exit 1, after writing its report) when the cluster lost,
// repeated or reordered a message: its journal promises that never happens.
//
// Run it from the module root: make bench, make bench-quick, or
// go run ./bench -h.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// report is the JSON document in bench/results/; -render reads it back.
type report struct {
	Mode        string            `json:"mode"`
	Started     string            `json:"started"`
	Seconds     float64           `json:"seconds"`
	CPUs        int               `json:"cpus"`
	Go          string            `json:"go"`
	Repetitions int               `json:"repetitions"`
	Payload     int               `json:"payload"`
	Load        int               `json:"background_load,omitempty"` // -load
	Brokers     []string          `json:"brokers"`
	Versions    map[string]string `json:"versions"`
	Skipped     []string          `json:"skipped"`
	Scenarios   []scenario        `json:"scenarios"`
	Summary     []summaryRow      `json:"summary"`
	Runs        []runResult       `json:"runs"`
	Cluster     *clusterReport    `json:"cluster,omitempty"`
}

// clusterReport is scenarios g and h: every phase, and the medians.
type clusterReport struct {
	Nodes       int             `json:"nodes"`
	Repetitions int             `json:"repetitions"`
	Summary     *clusterSummary `json:"summary"`
	Phases      []clusterPhase  `json:"phases"`
}

func (r report) chartTitle() string {
	return fmt.Sprintf("QoS 0 fan-out, %d B payload, median of %d (%s run)", r.Payload, r.Repetitions, r.Mode)
}

// render prints the table of a stored report and rewrites its SVG beside it,
// so that a change to the presentation needs no new measurement.
func render(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Summary) > 0 || r.Cluster == nil {
		writeMarkdown(os.Stdout, r.Summary, r.Brokers, r.Runs, r.Repetitions)
	}
	if r.Cluster != nil {
		writeClusterMarkdown(os.Stdout, r.Cluster.Summary, r.Cluster.Phases, r.Cluster.Repetitions)
	}
	if len(r.Summary) == 0 && r.Cluster != nil {
		return nil // the cluster only: no chart
	}
	svg := strings.TrimSuffix(path, filepath.Ext(path)) + ".svg"
	f, err := os.Create(svg)
	if err != nil {
		return err
	}
	writeSVG(f, r.Summary, r.Brokers, r.chartTitle())
	return f.Close()
}

type config struct {
	quick       bool
	reps        int
	brokers     string
	scenarios   string
	subs        string
	msgsA       int // target deliveries per (a)/(d) run; messages = this / subscribers
	steadyRate  float64
	steadyFor   time.Duration
	steadyMsgs  int
	steadySubs  int
	steadySize  int
	idleSubs    int
	idleGCs     int
	idleSettle  time.Duration
	wsSubs      int
	burst       int
	burstSubs   int
	wsbSubs     int
	wsbMsgs     int
	wsbSize     int
	wsbQoS      int
	payload     int
	journal     string
	clusterN    int // nodes of g and h
	clusterSubs int // g: subscribers, all on node 1 or spread
	hopSubs     int // h: subscribers on node 1 and on the last node, each
	clusterReps int // g, h: repetitions, each in a fresh cluster; 0: -reps
	runTimeout  time.Duration
	stall       time.Duration
	maxTime     time.Duration
	out         string
	applianceBn string
	applEnv     string
	mosquitto   string
	load        int
}

func main() {
	burnIfAsked()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var c config
	flag.BoolVar(&c.quick, "quick", false, "small sizes, under two minutes (CI); explicit flags still win")
	flag.IntVar(&c.reps, "reps", 3, "repetitions of every scenario on every broker")
	flag.StringVar(&c.brokers, "brokers", "appliance,mosquitto", "brokers to compare, comma-separated")
	flag.StringVar(&c.scenarios, "scenarios", "a,b,c,d,e,f,g,h", "scenarios to run: a fan-out, b steady rate (exact latency, CPU per delivery), c idle memory, d websocket fan-out, e burst, f websocket burst to MQTT.js, g cluster fan-out (subscribers on one node, then spread), h cluster hop latency")
	flag.StringVar(&c.subs, "subs", "100,1000,10000", "subscriber counts for scenario a")
	flag.IntVar(&c.msgsA, "deliveries", 500000, "deliveries per fan-out run (a, d): messages = deliveries / subscribers, at least 20")
	flag.Float64Var(&c.steadyRate, "steady-rate", 20, "scenario b: messages per second")
	flag.IntVar(&c.steadyMsgs, "steady-msgs", 300, "scenario b: messages")
	flag.DurationVar(&c.steadyFor, "steady-for", 0, "scenario b: publish for this long instead (messages = rate × duration)")
	flag.IntVar(&c.steadySubs, "steady-subs", 1000, "scenario b: subscribers")
	flag.IntVar(&c.steadySize, "steady-payload", 4096, "scenario b: payload bytes")
	flag.IntVar(&c.idleSubs, "idle-subs", 10000, "scenario c: idle subscribers")
	flag.IntVar(&c.idleGCs, "idle-gcs", 1, "scenario c: GC cycles of the appliance to await after the connect storm (an idle Go process runs one every 2 minutes)")
	flag.DurationVar(&c.idleSettle, "idle-settle", 150*time.Second, "scenario c: bound on settling (stable RSS and -idle-gcs) after the storm")
	flag.IntVar(&c.wsSubs, "ws-subs", 1000, "scenario d: websocket subscribers")
	flag.IntVar(&c.burst, "burst", 100, "scenario e: messages in the burst")
	flag.IntVar(&c.burstSubs, "burst-subs", 10000, "scenario e: subscribers")
	flag.IntVar(&c.wsbSubs, "ws-burst-subs", 200, "scenario f: MQTT.js websocket subscribers")
	flag.IntVar(&c.wsbMsgs, "ws-burst-msgs", 1000, "scenario f: JSON events in the burst")
	flag.IntVar(&c.wsbSize, "ws-burst-payload", 4096, "scenario f: bytes per JSON event")
	flag.IntVar(&c.wsbQoS, "ws-burst-qos", 1, "scenario f: QoS of the publish and of the subscriptions (0 or 1; brokers may grant less)")
	flag.IntVar(&c.payload, "payload", 1024, "payload bytes of a, d and e (at least 16: sequence and timestamp)")
	flag.IntVar(&c.clusterN, "cluster", 3, "g, h: appliances in the cluster (2 to 5), clustered on loopback through their embedded nats-servers")
	flag.IntVar(&c.clusterSubs, "cluster-subs", 3000, "g: subscribers, all on node 1, then spread over the nodes; messages = -deliveries / this")
	flag.IntVar(&c.clusterReps, "cluster-reps", 0, "g, h: repetitions, each in a fresh cluster (forming one takes ~10 s here); 0: as -reps")
	flag.IntVar(&c.hopSubs, "hop-subs", 500, "h: subscribers on node 1 and as many on the last node; rate, messages and payload of -steady-*")
	flag.StringVar(&c.journal, "journal", "", "appliance journal: on, off or both (two appliances); unset writes no [journal] section")
	flag.DurationVar(&c.runTimeout, "run-timeout", 120*time.Second, "bound on one run, broker start to stop")
	flag.DurationVar(&c.stall, "stall", 3*time.Second, "end a run when no delivery arrived for this long after the last publish")
	flag.DurationVar(&c.maxTime, "max-time", 30*time.Minute, "bound on the whole bench; remaining runs are skipped")
	flag.StringVar(&c.out, "out", "bench/results", "directory for JSON and SVG (relative to the module root)")
	flag.StringVar(&c.applianceBn, "appliance-bin", "", "prebuilt firehosectl; default: go build ./cmd/firehosectl")
	flag.StringVar(&c.applEnv, "appliance-env", "", "extra environment for the appliance, comma-separated (GOGC=200,GOMAXPROCS=1): knob trials")
	flag.StringVar(&c.mosquitto, "mosquitto", "mosquitto", "mosquitto binary")
	flag.IntVar(&c.load, "load", 0, "background CPU load: processes spinning on the CPU during every run (both brokers meet the same)")
	renderPath := flag.String("render", "", "print the table of a stored results JSON and rewrite its SVG; runs nothing")
	flag.Parse()
	if *renderPath != "" {
		return render(*renderPath)
	}
	if c.quick {
		quickDefaults(&c)
	}
	if c.reps < 1 || c.payload < payloadHeader || c.steadySize < payloadHeader {
		return errors.New("-reps must be ≥ 1, -payload and -steady-payload ≥ 16")
	}
	if c.wsbQoS != 0 && c.wsbQoS != 1 {
		return errors.New("-ws-burst-qos must be 0 or 1")
	}
	if c.clusterN < 2 || c.clusterN > 5 {
		return errors.New("-cluster must be 2 to 5 (the journal's replicas)")
	}
	if _, _, _, err := jsonPayload(c.wsbSize); err != nil {
		return fmt.Errorf("-ws-burst-payload: %w", err)
	}
	var journals []string
	switch c.journal {
	case "":
		journals = []string{""}
	case "on", "off":
		journals = []string{c.journal}
	case "both":
		journals = []string{"off", "on"}
	default:
		return fmt.Errorf("-journal %q: want on, off or both", c.journal)
	}

	started := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.maxTime)
	defer cancel()

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	allScs, err := buildScenarios(c)
	if err != nil {
		return err
	}
	// g and h run in a cluster of their own, after the others.
	spec := clusterSpec{nodes: c.clusterN}
	var scs []scenario
	maxSubs := 0
	for _, sc := range allScs {
		switch sc.Group {
		case "g":
			spec.g = &sc
		case "h":
			spec.h = &sc
			maxSubs = max(maxSubs, 2*sc.Subs)
			continue
		default:
			scs = append(scs, sc)
		}
		maxSubs = max(maxSubs, sc.Subs)
	}
	// Subscribers + publisher + probes + broker's own files, with headroom.
	limit, err := raiseNoFile(uint64(maxSubs)*2 + 1024)
	if err != nil || limit < uint64(maxSubs)+256 {
		return fmt.Errorf("open-file limit %d is too low for %d subscribers (%v): raise ulimit -n", limit, maxSubs, err)
	}

	tmp, err := os.MkdirTemp("", "firehose-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var brokers []broker
	var skipped []string
	// Report without a missing broker or scenario rather than fail: the
	// bench informs, and half a comparison beats none.
	skip := func(what string, err error) {
		skipped = append(skipped, fmt.Sprintf("%s: %v", what, err))
		fmt.Fprintf(os.Stderr, "bench: skipping %s: %v\n", what, err)
	}
	var env []string
	if c.applEnv != "" {
		env = strings.Split(c.applEnv, ",")
	}
	var (
		applBin    string
		applBinErr error
		applBuilt  bool
	)
	applianceBin := func() (string, error) {
		if !applBuilt {
			applBin, applBinErr = buildAppliance(ctx, root, c.applianceBn, tmp)
			applBuilt = true
		}
		return applBin, applBinErr
	}
	for _, name := range strings.Split(c.brokers, ",") {
		switch strings.TrimSpace(name) {
		case "appliance":
			if len(scs) == 0 {
				continue // only g and h: they start their own appliances
			}
			bin, err := applianceBin()
			if err != nil {
				skip(name, err)
				continue
			}
			for _, j := range journals {
				a, err := newAppliance(ctx, root, bin, c.applianceBn != "", tmp, env, j)
				if err != nil {
					skip(name+" journal "+j, err)
					continue
				}
				brokers = append(brokers, a)
			}
		case "mosquitto":
			if len(scs) == 0 {
				continue
			}
			m, err := newMosquitto(c.mosquitto)
			if err != nil {
				skip(name, err)
				continue
			}
			brokers = append(brokers, m)
		default:
			return fmt.Errorf("unknown broker %q", name)
		}
	}
	var mjs *mqttJS
	if slices.ContainsFunc(scs, func(sc scenario) bool { return sc.Client == "mqttjs" }) {
		if mjs, err = findMQTTJS(root); err != nil {
			skip("scenario f", err)
			scs = slices.DeleteFunc(scs, func(sc scenario) bool { return sc.Client == "mqttjs" })
		}
	}
	var clusterAppl *appliance
	if spec.g != nil || spec.h != nil {
		err := func() error {
			bin, err := applianceBin()
			if err != nil {
				return err
			}
			if clusterAppl, err = newAppliance(ctx, root, bin, c.applianceBn != "", tmp, env, ""); err != nil {
				return err
			}
			return clusterAppl.clusterPrecheck(ctx, tmp, c.clusterN)
		}()
		if err != nil {
			skip("cluster scenarios g, h", err)
			clusterAppl = nil
		}
	}
	if len(brokers) == 0 && (len(scs) > 0 || clusterAppl == nil) {
		return errors.New("no broker to measure")
	}
	var names []string
	for _, b := range brokers {
		names = append(names, b.Name())
	}

	if c.load > 0 {
		stopLoad, err := startLoad(c.load)
		if err != nil {
			return err
		}
		defer stopLoad()
	}
	d := &dialer{perAddr: 1000}
	o := runOpts{runTimeout: c.runTimeout, stall: c.stall, idleSettle: c.idleSettle, mqttjs: mjs}
	var runs []runResult
	for _, sc := range scs {
		for rep := 1; rep <= c.reps; rep++ {
			// Alternate who goes first, so neither always meets a warmer machine.
			order := brokers
			if rep%2 == 0 {
				order = reversed(brokers)
			}
			for _, b := range order {
				if ctx.Err() != nil {
					break
				}
				t := time.Now()
				r := runOne(ctx, b, sc, rep, tmp, d, o)
				runs = append(runs, r)
				fmt.Fprintf(os.Stderr, "bench: %-8s %-9s rep %d: %s (%.1fs)\n", sc.Key, b.Name(), rep, oneLine(r), time.Since(t).Seconds())
			}
		}
	}
	var cluster *clusterReport
	if clusterAppl != nil {
		reps := c.clusterReps
		if reps <= 0 {
			reps = c.reps
		}
		cluster = &clusterReport{Nodes: c.clusterN, Repetitions: reps}
		for rep := 1; rep <= reps && ctx.Err() == nil; rep++ {
			cluster.Phases = append(cluster.Phases, runClusterRep(ctx, clusterAppl, spec, rep, tmp, d, o)...)
		}
		cluster.Summary = summarizeCluster(c.clusterN, cluster.Phases)
	}
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "bench: stopped early: %v\n", context.Cause(ctx))
	}

	rows := summarize(scs, names, runs)
	elapsed := time.Since(started)
	mode := "full"
	if c.quick {
		mode = "quick"
	}
	fmt.Printf("## firehose bench (%s): %s, %d CPU, %.0f s\n\n", mode, started.UTC().Format(time.RFC3339), runtime.NumCPU(), elapsed.Seconds())
	if c.load > 0 {
		fmt.Printf("- background load: %d processes spinning on the CPU throughout\n", c.load)
	}
	for _, b := range brokers {
		fmt.Printf("- %s: %s\n", b.Name(), b.Version())
	}
	if clusterAppl != nil {
		fmt.Printf("- cluster (g, h): %d × %s\n", c.clusterN, clusterAppl.Version())
	}
	if mjs != nil {
		fmt.Printf("- scenario f subscribers: %s\n", mjs.version)
	}
	for _, s := range skipped {
		fmt.Printf("- skipped %s\n", s)
	}
	if len(scs) > 0 {
		fmt.Println()
		writeMarkdown(os.Stdout, rows, names, runs, c.reps)
	}
	if cluster != nil {
		writeClusterMarkdown(os.Stdout, cluster.Summary, cluster.Phases, cluster.Repetitions)
	}

	outDir := c.out
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(root, outDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	versions := map[string]string{}
	for _, b := range brokers {
		versions[b.Name()] = b.Version()
	}
	if mjs != nil {
		versions["mqttjs"] = mjs.version
	}
	if clusterAppl != nil {
		versions["cluster"] = fmt.Sprintf("%d × %s", c.clusterN, clusterAppl.Version())
	}
	doc := report{
		Mode: mode, Started: started.UTC().Format(time.RFC3339), Seconds: elapsed.Seconds(),
		CPUs: runtime.NumCPU(), Go: runtime.Version(), Repetitions: c.reps, Payload: c.payload, Load: c.load,
		Brokers: names, Versions: versions, Skipped: skipped, Scenarios: allScs, Summary: rows, Runs: runs,
		Cluster: cluster,
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(outDir, mode+".json")
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		return err
	}
	wrote := rel(root, jsonPath)
	if len(scs) > 0 { // the chart is of (a); a cluster-only run has none
		svgPath := filepath.Join(outDir, mode+".svg")
		sf, err := os.Create(svgPath)
		if err != nil {
			return err
		}
		writeSVG(sf, rows, names, doc.chartTitle())
		if err := sf.Close(); err != nil {
			return err
		}
		wrote += " and " + rel(root, svgPath)
	}
	fmt.Printf("\nWrote %s in %.0f s.\n", wrote, elapsed.Seconds())
	if cluster != nil && len(cluster.Summary.Failed) > 0 {
		return fmt.Errorf("the cluster lost, repeated or reordered messages, or a phase did not finish:\n  %s",
			strings.Join(cluster.Summary.Failed, "\n  "))
	}
	return nil
}

// quickDefaults shrinks every scenario so that both brokers, all six
// scenarios, fit in about two minutes on two shared cores. Flags given
// explicitly on the command line keep their values.
func quickDefaults(c *config) {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	def := func(name string, apply func()) {
		if !set[name] {
			apply()
		}
	}
	def("reps", func() { c.reps = 3 })
	def("subs", func() { c.subs = "100,1000" })
	def("deliveries", func() { c.msgsA = 100000 })
	def("steady-msgs", func() { c.steadyMsgs = 40 })
	def("idle-subs", func() { c.idleSubs = 5000 })
	def("idle-gcs", func() { c.idleGCs = 0 })
	def("idle-settle", func() { c.idleSettle = 15 * time.Second })
	def("ws-burst-subs", func() { c.wsbSubs = 50 })
	def("ws-burst-msgs", func() { c.wsbMsgs = 200 })
	def("burst", func() { c.burst = 20 })
	def("burst-subs", func() { c.burstSubs = 5000 })
	def("run-timeout", func() { c.runTimeout = 30 * time.Second })
	def("cluster-subs", func() { c.clusterSubs = 300 })
	def("hop-subs", func() { c.hopSubs = 100 })
	def("cluster-reps", func() { c.clusterReps = 1 })
	def("max-time", func() { c.maxTime = 4 * time.Minute })
}

func buildScenarios(c config) ([]scenario, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(c.scenarios, ",") {
		want[strings.TrimSpace(s)] = true
	}
	msgs := func(n int) int { return max(20, c.msgsA/n) }
	var out []scenario
	if want["a"] {
		for _, s := range strings.Split(c.subs, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-subs: bad count %q", s)
			}
			out = append(out, scenario{Key: fmt.Sprintf("a-%d", n), Group: "a", Title: "fan-out, as fast as the broker takes it",
				Transport: "tcp", Subs: n, Msgs: msgs(n), Payload: c.payload})
		}
	}
	if want["b"] {
		n := c.steadyMsgs
		if c.steadyFor > 0 {
			n = int(c.steadyRate * c.steadyFor.Seconds())
		}
		out = append(out, scenario{Key: "b", Group: "b", Title: fmt.Sprintf("steady %g msg/s × %d B, exact latency, CPU per delivery", c.steadyRate, c.steadySize),
			Transport: "tcp", Subs: c.steadySubs, Msgs: max(1, n), Rate: c.steadyRate, Payload: c.steadySize})
	}
	if want["c"] {
		out = append(out, scenario{Key: "c", Group: "c", Title: "idle subscribers, settled memory", Transport: "tcp", Subs: c.idleSubs, Idle: true, IdleGCs: c.idleGCs})
	}
	if want["d"] {
		out = append(out, scenario{Key: "d", Group: "d", Title: "fan-out over websockets", Transport: "ws", Subs: c.wsSubs, Msgs: msgs(c.wsSubs), Payload: c.payload})
	}
	if want["e"] {
		out = append(out, scenario{Key: "e", Group: "e", Title: fmt.Sprintf("burst of %d", c.burst), Transport: "tcp", Subs: c.burstSubs, Msgs: c.burst, Payload: c.payload})
	}
	if want["f"] {
		out = append(out, scenario{Key: "f", Group: "f", Title: fmt.Sprintf("websocket burst of %d × %d B JSON to MQTT.js, QoS %d", c.wsbMsgs, c.wsbSize, c.wsbQoS),
			Transport: "ws", Client: "mqttjs", Subs: c.wsbSubs, Msgs: c.wsbMsgs, Payload: c.wsbSize, JSON: true, QoS: byte(c.wsbQoS)})
	}
	if want["g"] {
		if c.clusterSubs < c.clusterN {
			return nil, fmt.Errorf("-cluster-subs %d: at least one per node", c.clusterSubs)
		}
		out = append(out, scenario{Key: "g", Group: "g", Title: fmt.Sprintf("cluster of %d: fan-out to %d subscribers on node 1, then spread over the nodes", c.clusterN, c.clusterSubs),
			Transport: "tcp", Subs: c.clusterSubs, Msgs: msgs(c.clusterSubs), Payload: c.payload})
	}
	if want["h"] {
		n := c.steadyMsgs
		if c.steadyFor > 0 {
			n = int(c.steadyRate * c.steadyFor.Seconds())
		}
		out = append(out, scenario{Key: "h", Group: "h", Title: fmt.Sprintf("cluster of %d: steady %g msg/s × %d B to %d subscribers on node 1 and %d on node %d, the hop", c.clusterN, c.steadyRate, c.steadySize, c.hopSubs, c.hopSubs, c.clusterN),
			Transport: "tcp", Subs: c.hopSubs, Msgs: max(1, n), Rate: c.steadyRate, Payload: c.steadySize})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-scenarios %q selects nothing", c.scenarios)
	}
	return out, nil
}

func oneLine(r runResult) string {
	if r.Error != "" {
		return "ERROR " + r.Error
	}
	if r.RSSPerConnKiB != 0 {
		s := fmt.Sprintf("%.1f KiB/subscriber (%.1f right after the storm), connect %.1fs, settled in %.1fs", r.RSSPerConnKiB, r.RSSStormPerConnKiB, r.ConnectSeconds, r.SettleSeconds)
		if r.GCLiveHeapMiB > 0 || r.GCsAfterStorm > 0 {
			s += fmt.Sprintf(", %d GC after, live heap %.0f MiB (%.1f KiB/subscriber), stacks %.0f MiB", r.GCsAfterStorm, r.GCLiveHeapMiB, r.GCHeapPerConnKiB, r.GCStacksMiB)
		}
		if !r.Settled {
			s += " (NOT settled)"
		}
		return s
	}
	s := fmt.Sprintf("%d/%d delivered, %.0f/s, last at %.2fs, p50 %.2f ms, p99 %.2f ms, max %.2f ms, broker CPU %.2fs (%.1f µs/delivery), bench CPU %.1fs, peak %.0f MiB",
		r.Delivered, r.Expected, r.DeliveriesPerSec, r.DurationSeconds, r.LatencyP50Ms, r.LatencyP99Ms, r.LatencyMaxMs, r.BrokerCPUSeconds, r.BrokerCPUPerDeliveryUs, r.BenchCPUSeconds, r.PeakRSSMiB)
	if r.PerSub != nil {
		s += fmt.Sprintf(", per subscriber %d..%d", r.MinPerSub, r.MaxPerSub)
	}
	if r.Duplicates > 0 || r.Reorders > 0 {
		s += fmt.Sprintf(", %d duplicates, %d reorders", r.Duplicates, r.Reorders)
	}
	return s
}

func reversed(bs []broker) []broker {
	out := make([]broker, len(bs))
	for i, b := range bs {
		out[len(bs)-1-i] = b
	}
	return out
}

// moduleRoot walks up from the working directory to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}
