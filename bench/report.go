package main

// Summaries over repetitions, and their three renderings: a Markdown table on
// stdout, JSON in bench/results/, and an SVG chart of fan-out throughput.

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// metric picks one number out of a run.
type metric struct {
	Name   string
	Unit   string
	Higher bool // higher is better
	get    func(runResult) float64
}

var (
	mDeliveries = metric{"deliveries/s", "1/s", true, func(r runResult) float64 { return r.DeliveriesPerSec }}
	mP50        = metric{"latency p50", "ms", false, func(r runResult) float64 { return r.LatencyP50Ms }}
	mP99        = metric{"latency p99", "ms", false, func(r runResult) float64 { return r.LatencyP99Ms }}
	mMax        = metric{"latency max", "ms", false, func(r runResult) float64 { return r.LatencyMaxMs }}
	mPerConn    = metric{"RSS per subscriber", "KiB", false, func(r runResult) float64 { return r.RSSPerConnKiB }}
	mLast       = metric{"time to last delivery", "s", false, func(r runResult) float64 { return r.DurationSeconds }}
	mCPUPerDel  = metric{"broker CPU per delivery", "µs", false, func(r runResult) float64 { return r.BrokerCPUPerDeliveryUs }}
	mSysPerDel  = metric{"broker system CPU per delivery", "µs", false, func(r runResult) float64 { return r.BrokerSysPerDeliveryUs }}
	mMinPerSub  = metric{"messages to the least-served subscriber", "msgs", true, func(r runResult) float64 { return float64(r.MinPerSub) }}
)

// metricsFor says what each scenario group is about (see README).
func metricsFor(group string) []metric {
	switch group {
	case "a", "d":
		return []metric{mDeliveries, mP99}
	case "b":
		return []metric{mP50, mP99, mMax, mCPUPerDel, mSysPerDel}
	case "c":
		return []metric{mPerConn}
	case "e":
		return []metric{mLast, mDeliveries}
	case "f":
		return []metric{mLast, mMinPerSub, mP99, mCPUPerDel}
	}
	return nil
}

// brokerStat is one broker's medians for one scenario.
type brokerStat struct {
	Median   float64 `json:"median"`
	Runs     int     `json:"runs"`     // runs without error
	Complete int     `json:"complete"` // of those, runs that delivered everything
	Drops    float64 `json:"drops_median"`
	CPU      float64 `json:"broker_cpu_seconds_median"`
	PeakRSS  float64 `json:"broker_peak_rss_mib_median"`
	Errors   int     `json:"errors"`
}

type summaryRow struct {
	Scenario    string                 `json:"scenario"`
	Group       string                 `json:"group"`
	Title       string                 `json:"title"`
	Subscribers int                    `json:"subscribers"`
	Metric      string                 `json:"metric"`
	Unit        string                 `json:"unit"`
	HigherBest  bool                   `json:"higher_is_better"`
	Brokers     map[string]*brokerStat `json:"brokers"`
	// Ratios of the medians, when both sides ran: "B/mosquitto" for every
	// other broker B, and "journal on/off" when both appliances ran.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// Ratio is appliance / mosquitto; results written before Ratios have
	// only this, and -render still reads them.
	Ratio *float64 `json:"ratio_appliance_over_mosquitto,omitempty"`
}

// ratioPairs lists the ratio columns for a set of brokers, in order.
func ratioPairs(brokers []string) (names []string, pairs [][2]string) {
	if slices.Contains(brokers, "mosquitto") {
		for _, b := range brokers {
			if b != "mosquitto" {
				names = append(names, b+"/mosquitto")
				pairs = append(pairs, [2]string{b, "mosquitto"})
			}
		}
	}
	if slices.Contains(brokers, "appliance-journal-on") && slices.Contains(brokers, "appliance-journal-off") {
		names = append(names, "journal on/off")
		pairs = append(pairs, [2]string{"appliance-journal-on", "appliance-journal-off"})
	}
	return names, pairs
}

// rowRatios returns the row's ratios, from Ratio for old results.
func (row summaryRow) rowRatios() map[string]float64 {
	if row.Ratios == nil && row.Ratio != nil {
		return map[string]float64{"appliance/mosquitto": *row.Ratio}
	}
	return row.Ratios
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0 // no successful run; brokerStat.Runs says so
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func summarize(scs []scenario, brokers []string, runs []runResult) []summaryRow {
	var rows []summaryRow
	for _, sc := range scs {
		for _, m := range metricsFor(sc.Group) {
			row := summaryRow{Scenario: sc.Key, Group: sc.Group, Title: sc.Title, Subscribers: sc.Subs,
				Metric: m.Name, Unit: m.Unit, HigherBest: m.Higher, Brokers: map[string]*brokerStat{}}
			for _, b := range brokers {
				var vals, drops, cpu, rss []float64
				st := &brokerStat{}
				for _, r := range runs {
					if r.Scenario != sc.Key || r.Broker != b {
						continue
					}
					if r.Error != "" {
						st.Errors++
						continue
					}
					st.Runs++
					if r.Complete {
						st.Complete++
					}
					vals = append(vals, m.get(r))
					drops = append(drops, float64(r.Drops))
					cpu = append(cpu, r.BrokerCPUSeconds)
					rss = append(rss, r.PeakRSSMiB)
				}
				if st.Runs+st.Errors == 0 {
					continue
				}
				st.Median, st.Drops, st.CPU, st.PeakRSS = median(vals), median(drops), median(cpu), median(rss)
				row.Brokers[b] = st
			}
			names, pairs := ratioPairs(brokers)
			for i, p := range pairs {
				a, okA := row.Brokers[p[0]]
				q, okQ := row.Brokers[p[1]]
				if okA && okQ && a.Runs > 0 && q.Runs > 0 && q.Median != 0 {
					if row.Ratios == nil {
						row.Ratios = map[string]float64{}
					}
					row.Ratios[names[i]] = a.Median / q.Median
					if p[0] == "appliance" && p[1] == "mosquitto" {
						r := a.Median / q.Median
						row.Ratio = &r
					}
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// num formats with about three significant digits.
func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func writeMarkdown(w io.Writer, rows []summaryRow, brokers []string, runs []runResult, reps int) {
	ratioNames, _ := ratioPairs(brokers)
	if len(ratioNames) == 0 {
		// An old report: its one ratio, if any row has it.
		for _, row := range rows {
			if row.Ratio != nil {
				ratioNames = []string{"appliance/mosquitto"}
				break
			}
		}
	}
	fmt.Fprintf(w, "Medians of %d repetition(s); ratios of the medians.\n\n", reps)
	hdr := []string{"scenario", "subs", "metric"}
	hdr = append(hdr, brokers...)
	hdr = append(hdr, ratioNames...)
	hdr = append(hdr, "complete", "drops", "broker CPU s", "peak RSS MiB")
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(hdr, " | "), strings.Repeat("---|", len(hdr)))
	per := func(row summaryRow, f func(*brokerStat) string) string {
		var parts []string
		for _, b := range brokers {
			if st, ok := row.Brokers[b]; ok {
				parts = append(parts, f(st))
			} else {
				parts = append(parts, "–")
			}
		}
		return strings.Join(parts, " / ")
	}
	for _, row := range rows {
		dir := "↓"
		if row.HigherBest {
			dir = "↑"
		}
		cells := []string{row.Scenario, fmt.Sprint(row.Subscribers), fmt.Sprintf("%s (%s) %s", row.Metric, row.Unit, dir)}
		for _, b := range brokers {
			st, ok := row.Brokers[b]
			switch {
			case !ok:
				cells = append(cells, "–")
			case st.Runs == 0:
				cells = append(cells, fmt.Sprintf("error ×%d", st.Errors))
			default:
				cells = append(cells, num(st.Median))
			}
		}
		ratios := row.rowRatios()
		for _, name := range ratioNames {
			if r, ok := ratios[name]; ok {
				cells = append(cells, fmt.Sprintf("%.2f", r))
			} else {
				cells = append(cells, "–")
			}
		}
		cells = append(cells,
			per(row, func(s *brokerStat) string { return fmt.Sprintf("%d/%d", s.Complete, s.Runs+s.Errors) }),
			per(row, func(s *brokerStat) string { return num(s.Drops) }),
			per(row, func(s *brokerStat) string { return num(s.CPU) }),
			per(row, func(s *brokerStat) string { return num(s.PeakRSS) }))
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintf(w, "\nPer-cell pairs are %s.\n", strings.Join(brokers, " / "))
	var errs []string
	for _, r := range runs {
		if r.Error != "" {
			errs = append(errs, fmt.Sprintf("- %s %s rep %d: %s", r.Scenario, r.Broker, r.Rep, r.Error))
		}
		if r.RSSPerConnKiB != 0 && !r.Settled {
			errs = append(errs, fmt.Sprintf("- %s %s rep %d: memory not settled within -idle-settle (%.0f s; %d GC cycles after the storm)",
				r.Scenario, r.Broker, r.Rep, r.SettleSeconds, r.GCsAfterStorm))
		}
		if r.SubscriberErrors > 0 {
			// A broker that hangs up on subscribers mid-run is news even when
			// the run "completed" for the others.
			errs = append(errs, fmt.Sprintf("- %s %s rep %d: %d of %d subscribers lost their connection",
				r.Scenario, r.Broker, r.Rep, r.SubscriberErrors, r.Subscribers))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nErrors:\n%s\n", strings.Join(errs, "\n"))
	}
}

// writeSVG draws deliveries/s against subscribers (log scale) for group a,
// one line per broker. Hand-written to need no plotting dependency.
func writeSVG(w io.Writer, rows []summaryRow, brokers []string, title string) {
	const (
		W, H                   = 640, 400
		left, right, top, bott = 80, 150, 40, 50
	)
	type pt struct {
		x, y     float64
		complete bool
	}
	series := map[string][]pt{}
	var xs []float64
	ymax := 0.0
	for _, row := range rows {
		if row.Group != "a" || row.Metric != mDeliveries.Name {
			continue
		}
		for b, st := range row.Brokers {
			if st.Runs == 0 || math.IsNaN(st.Median) {
				continue
			}
			series[b] = append(series[b], pt{float64(row.Subscribers), st.Median, st.Complete == st.Runs})
			ymax = math.Max(ymax, st.Median)
		}
		xs = append(xs, float64(row.Subscribers))
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(w, `<text x="%d" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, escape(title))
	if len(xs) == 0 || ymax == 0 {
		fmt.Fprintf(w, `<text x="%d" y="%d">no data for scenario (a)</text>`+"\n</svg>\n", left, H/2)
		return
	}
	xlo, xhi := math.Log10(slices.Min(xs)), math.Log10(slices.Max(xs))
	if xhi == xlo {
		xlo, xhi = xlo-0.5, xhi+0.5
	}
	ytop := niceCeil(ymax * 1.1)
	px := func(x float64) float64 {
		return left + (math.Log10(x)-xlo)/(xhi-xlo)*float64(W-left-right)
	}
	py := func(y float64) float64 { return float64(H-bott) - y/ytop*float64(H-top-bott) }
	// Axes and grid.
	for i := 0; i <= 5; i++ {
		y := ytop * float64(i) / 5
		fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, W-right, py(y), py(y))
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, num(y))
	}
	for _, x := range xs {
		fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ddd"/>`+"\n", px(x), px(x), top, H-bott)
		fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">%.0f</text>`+"\n", px(x), H-bott+16, x)
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle">subscribers (log scale)</text>`+"\n", (left+W-right)/2, H-12)
	fmt.Fprintf(w, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">deliveries per second</text>`+"\n", (top+H-bott)/2)
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd"}
	for i, b := range brokers {
		s := series[b]
		if len(s) == 0 {
			continue
		}
		slices.SortFunc(s, func(a, b pt) int { return int(a.x - b.x) })
		c := colors[i%len(colors)]
		var path []string
		for _, p := range s {
			path = append(path, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(path, " "))
		for _, p := range s {
			// A hollow marker: some repetition did not deliver everything.
			fill := c
			if !p.complete {
				fill = "white"
			}
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="2"/>`+"\n", px(p.x), py(p.y), fill, c)
			// Label above the point unless another broker is higher here:
			// then below, so that close values do not print over each other.
			dy := -6.0
			for b2, s2 := range series {
				for _, q := range s2 {
					if b2 != b && q.x == p.x && q.y > p.y {
						dy = 15
					}
				}
			}
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" fill="%s" font-size="11">%s</text>`+"\n", px(p.x)+6, py(p.y)+dy, c, num(p.y))
		}
		ly := top + 10 + 20*i
		fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", W-right+15, W-right+35, ly, ly, c)
		fmt.Fprintf(w, `<text x="%d" y="%d">%s</text>`+"\n", W-right+40, ly+4, escape(b))
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="10" fill="#555">hollow: drops</text>`+"\n", W-right+15, top+10+20*len(brokers)+4)
	fmt.Fprintln(w, "</svg>")
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
