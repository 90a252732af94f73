// Command bench measures MQTT fan-out of the firehose appliance and of
// Mosquitto side by side, in one run: deliveries per second at 100 to 10,000
// subscribers, publish-to-delivery latency, memory per connected subscriber,
// and the time a burst takes to reach everyone (issue #7).
//
// It starts both brokers itself, on 127.0.0.1 only, alternates them for each
// scenario and repetition, and reports medians as a Markdown table on stdout,
// JSON and an SVG chart in bench/results/. Every loop is bounded in count and
// time. It reports; it never fails on a timing, so CI can run -quick.
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
	Brokers     []string          `json:"brokers"`
	Versions    map[string]string `json:"versions"`
	Skipped     []string          `json:"skipped"`
	Scenarios   []scenario        `json:"scenarios"`
	Summary     []summaryRow      `json:"summary"`
	Runs        []runResult       `json:"runs"`
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
	writeMarkdown(os.Stdout, r.Summary, r.Brokers, r.Runs, r.Repetitions)
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
	steadySubs  int
	idleSubs    int
	wsSubs      int
	burst       int
	burstSubs   int
	payload     int
	runTimeout  time.Duration
	stall       time.Duration
	maxTime     time.Duration
	out         string
	applianceBn string
	applEnv     string
	journal     bool
	mosquitto   string
}

func main() {
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
	flag.StringVar(&c.scenarios, "scenarios", "a,b,c,d,e", "scenarios to run: a fan-out, b steady latency, c idle memory, d websocket fan-out, e burst")
	flag.StringVar(&c.subs, "subs", "100,1000,10000", "subscriber counts for scenario a")
	flag.IntVar(&c.msgsA, "deliveries", 500000, "deliveries per fan-out run (a, d): messages = deliveries / subscribers, at least 20")
	flag.Float64Var(&c.steadyRate, "steady-rate", 20, "scenario b: messages per second")
	flag.DurationVar(&c.steadyFor, "steady-for", 30*time.Second, "scenario b: how long to publish")
	flag.IntVar(&c.steadySubs, "steady-subs", 1000, "scenario b: subscribers")
	flag.IntVar(&c.idleSubs, "idle-subs", 10000, "scenario c: idle subscribers")
	flag.IntVar(&c.wsSubs, "ws-subs", 1000, "scenario d: websocket subscribers")
	flag.IntVar(&c.burst, "burst", 100, "scenario e: messages in the burst")
	flag.IntVar(&c.burstSubs, "burst-subs", 10000, "scenario e: subscribers")
	flag.IntVar(&c.payload, "payload", 1024, "payload bytes (at least 16: sequence and timestamp)")
	flag.DurationVar(&c.runTimeout, "run-timeout", 120*time.Second, "bound on one run, broker start to stop")
	flag.DurationVar(&c.stall, "stall", 3*time.Second, "end a run when no delivery arrived for this long after the last publish")
	flag.DurationVar(&c.maxTime, "max-time", 30*time.Minute, "bound on the whole bench; remaining runs are skipped")
	flag.StringVar(&c.out, "out", "bench/results", "directory for JSON and SVG (relative to the module root)")
	flag.StringVar(&c.applianceBn, "appliance-bin", "", "prebuilt firehosectl; default: go build ./cmd/firehosectl")
	flag.StringVar(&c.applEnv, "appliance-env", "", "extra environment for the appliance, comma-separated (GOGC=200,GOMAXPROCS=1): knob trials")
	flag.BoolVar(&c.journal, "journal", true, "run the appliance with its journal ([journal] enabled); -journal=false for the comparison")
	flag.StringVar(&c.mosquitto, "mosquitto", "mosquitto", "mosquitto binary")
	renderPath := flag.String("render", "", "print the table of a stored results JSON and rewrite its SVG; runs nothing")
	flag.Parse()
	if *renderPath != "" {
		return render(*renderPath)
	}
	if c.quick {
		quickDefaults(&c)
	}
	if c.reps < 1 || c.payload < payloadHeader {
		return errors.New("-reps must be ≥ 1 and -payload ≥ 16")
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
	scs, err := buildScenarios(c)
	if err != nil {
		return err
	}
	maxSubs := 0
	for _, sc := range scs {
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
	for _, name := range strings.Split(c.brokers, ",") {
		var b broker
		switch strings.TrimSpace(name) {
		case "appliance":
			var env []string
			if c.applEnv != "" {
				env = strings.Split(c.applEnv, ",")
			}
			var a *appliance
			if a, err = newAppliance(ctx, root, c.applianceBn, tmp, env); err == nil {
				a.noJournal = !c.journal
				if a.noJournal {
					a.version += " journal off"
				}
				b = a
			}
		case "mosquitto":
			b, err = newMosquitto(c.mosquitto)
		default:
			return fmt.Errorf("unknown broker %q", name)
		}
		if err != nil {
			// Report without the missing broker rather than fail: the bench
			// informs, and half a comparison beats none.
			skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
			fmt.Fprintf(os.Stderr, "bench: skipping %s: %v\n", name, err)
			continue
		}
		brokers = append(brokers, b)
	}
	if len(brokers) == 0 {
		return errors.New("no broker to measure")
	}
	var names []string
	for _, b := range brokers {
		names = append(names, b.Name())
	}

	d := &dialer{perAddr: 1000}
	o := runOpts{payload: c.payload, runTimeout: c.runTimeout, stall: c.stall}
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
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "bench: stopped early: %v\n", context.Cause(ctx))
	}

	rows := summarize(scs, names, runs)
	elapsed := time.Since(started)
	mode := "full"
	if c.quick {
		mode = "quick"
	}
	fmt.Printf("## firehose bench (%s): %s, QoS 0, %d-byte payload, %d CPU, %.0f s\n\n", mode, started.UTC().Format(time.RFC3339), c.payload, runtime.NumCPU(), elapsed.Seconds())
	for _, b := range brokers {
		fmt.Printf("- %s: %s\n", b.Name(), b.Version())
	}
	for _, s := range skipped {
		fmt.Printf("- skipped %s\n", s)
	}
	fmt.Println()
	writeMarkdown(os.Stdout, rows, names, runs, c.reps)

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
	doc := report{
		Mode: mode, Started: started.UTC().Format(time.RFC3339), Seconds: elapsed.Seconds(),
		CPUs: runtime.NumCPU(), Go: runtime.Version(), Repetitions: c.reps, Payload: c.payload,
		Brokers: names, Versions: versions, Skipped: skipped, Scenarios: scs, Summary: rows, Runs: runs,
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(outDir, mode+".json")
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		return err
	}
	svgPath := filepath.Join(outDir, mode+".svg")
	sf, err := os.Create(svgPath)
	if err != nil {
		return err
	}
	writeSVG(sf, rows, names, doc.chartTitle())
	if err := sf.Close(); err != nil {
		return err
	}
	fmt.Printf("\nWrote %s and %s in %.0f s.\n", rel(root, jsonPath), rel(root, svgPath), elapsed.Seconds())
	return nil
}

// quickDefaults shrinks every scenario so that both brokers, all five
// scenarios, fit in under two minutes on two shared cores. Flags given
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
	def("steady-for", func() { c.steadyFor = 3 * time.Second })
	def("idle-subs", func() { c.idleSubs = 5000 })
	def("burst", func() { c.burst = 20 })
	def("burst-subs", func() { c.burstSubs = 5000 })
	def("run-timeout", func() { c.runTimeout = 30 * time.Second })
	def("max-time", func() { c.maxTime = 3 * time.Minute })
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
				Transport: "tcp", Subs: n, Msgs: msgs(n)})
		}
	}
	if want["b"] {
		out = append(out, scenario{Key: "b", Group: "b", Title: fmt.Sprintf("steady %g msg/s, latency", c.steadyRate),
			Transport: "tcp", Subs: c.steadySubs, Msgs: max(1, int(c.steadyRate*c.steadyFor.Seconds())), Rate: c.steadyRate})
	}
	if want["c"] {
		out = append(out, scenario{Key: "c", Group: "c", Title: "idle subscribers, memory", Transport: "tcp", Subs: c.idleSubs, Idle: true})
	}
	if want["d"] {
		out = append(out, scenario{Key: "d", Group: "d", Title: "fan-out over websockets", Transport: "ws", Subs: c.wsSubs, Msgs: msgs(c.wsSubs)})
	}
	if want["e"] {
		out = append(out, scenario{Key: "e", Group: "e", Title: fmt.Sprintf("burst of %d", c.burst), Transport: "tcp", Subs: c.burstSubs, Msgs: c.burst})
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
		return fmt.Sprintf("%.1f KiB/conn, connect %.1fs", r.RSSPerConnKiB, r.ConnectSeconds)
	}
	return fmt.Sprintf("%d/%d delivered, %.0f/s, p50 %.2f ms, p99 %.2f ms, broker CPU %.1fs, bench CPU %.1fs, peak %.0f MiB",
		r.Delivered, r.Expected, r.DeliveriesPerSec, r.LatencyP50Ms, r.LatencyP99Ms, r.BrokerCPUSeconds, r.BenchCPUSeconds, r.PeakRSSMiB)
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
