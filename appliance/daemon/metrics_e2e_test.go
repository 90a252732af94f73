package daemon_test

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const metricsOn = "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"

// scrapeMetrics fetches /metrics and parses it with Prometheus's own text
// parser (strict legacy names, as every Prometheus accepts).
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// sample returns the value of name's sample whose labels include labels
// (name/value pairs), and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func metricNames(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../metrics/testdata/names.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, typ, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			names[name] = typ
		}
	}
	return names
}

// /metrics from the real daemon, after traffic from Mosquitto's and Paho's
// clients, counts exactly that traffic, under the fixed names.
func TestMetricsScrapedAfterKnownTraffic(t *testing.T) {
	d := startDaemon(t, daemonOpts{extra: metricsOn})
	st := d.status()
	if st.Metrics == nil || !st.Metrics.Enabled || st.Metrics.Address == "" || st.State != "ok" {
		t.Fatalf("status: metrics %+v, state %s %q", st.Metrics, st.State, st.Reasons)
	}
	url := "http://" + st.Metrics.Address + "/metrics"

	addr := d.addr["mqtt"]
	a := mosquittoSub(t, addr, "-t", "zuul/#")
	b := mosquittoSub(t, addr, "-t", "zuul/#")
	ws := subscribe(t, "ws://"+d.addr["ws"]+"/mqtt", "zuul/#")
	eventually(t, "three subscriptions", func() bool { return d.status().Subscriptions == 3 })

	const n = 5
	for range n {
		if code, out := mosquittoPub(t, addr, "-u", "zuul", "-P", zuulPass, "-t", "zuul/build", "-m", "done"); code != 0 {
			t.Fatalf("mosquitto_pub: exit %d: %s", code, out)
		}
	}
	for range 2 {
		mosquittoPub(t, addr, "-t", "zuul/spoof", "-m", "anonymous") // refused
	}
	for range n {
		a.expect("zuul/build done")
		b.expect("zuul/build done")
		ws.expect("zuul/build", "done")
	}

	// broker_* follows the once-a-second $SYS tick; wait for the tick that
	// saw the traffic and the publishers gone.
	var fams map[string]*dto.MetricFamily
	eventually(t, "/metrics to show the traffic", func() bool {
		fams = scrapeMetrics(t, url)
		recv, _ := sample(fams, "broker_messages_received")
		conn, _ := sample(fams, "broker_clients_connected")
		return recv == n && conn == 3
	})
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"broker_messages_received", nil, n},
		{"broker_publish_messages_received", nil, n},
		{"broker_messages_sent", nil, 3 * n},
		{"broker_publish_messages_sent", nil, 3 * n},
		{"broker_publish_messages_dropped", nil, 0},
		{"broker_subscriptions_count", nil, 3},
		{"broker_clients_connected", nil, 3},
		{"broker_clients_total", nil, 3},
		{"broker_retained_messages_count", nil, 0},
		{"firehose_messages_received_total", nil, n},
		{"firehose_deliveries_total", nil, 3 * n},
		{"firehose_deliveries_dropped_total", []string{"reason", "slow_subscriber"}, 0},
		{"firehose_refusals_total", []string{"kind", "acl"}, 2},
		{"firehose_refusals_total", []string{"kind", "auth"}, 0},
		{"firehose_clients", nil, 3},
		{"firehose_subscriptions", nil, 3},
		{"firehose_listener_clients", []string{"listener", "mqtt"}, 2},
		{"firehose_listener_clients", []string{"listener", "ws"}, 1},
		{"firehose_degraded", nil, 0},
		{"firehose_publishers", nil, 1},
		{"firehose_reloads_total", []string{"result", "ok"}, 0},
	} {
		if got, ok := sample(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%q = %v (served: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got, _ := sample(fams, "broker_bytes_received"); got <= 0 {
		t.Errorf("broker_bytes_received = %v", got)
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("no Go runtime or process metrics")
	}

	names := metricNames(t)
	for name, f := range fams {
		if !strings.HasPrefix(name, "broker_") && !strings.HasPrefix(name, "firehose_") {
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); names[name] != typ {
			t.Errorf("the daemon serves %s (%s), which appliance/metrics/testdata/names.txt does not list so", name, typ)
		}
	}

	// A reload is counted; one that would move the endpoint is refused by
	// name, and counted as failed.
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code != 0 {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	d.writeConfig(d.configText(daemonOpts{extra: strings.Replace(metricsOn, ":0", ":9", 1)}, zuulPublisher(t)))
	if out, code := d.run("reload", "--socket", d.ctl.Socket); code == 0 || !strings.Contains(out, "metrics.listen") {
		t.Fatalf("reload moving metrics.listen: exit %d: %s; want refused by name", code, out)
	}
	fams = scrapeMetrics(t, url)
	for result, want := range map[string]float64{"ok": 1, "failed": 1} {
		if got, _ := sample(fams, "firehose_reloads_total", "result", result); got != want {
			t.Errorf("firehose_reloads_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got, _ := sample(fams, "firehose_last_reload_success"); got != 0 {
		t.Errorf("firehose_last_reload_success = %v after a refused reload", got)
	}
	if h := fams["firehose_reload_duration_seconds"].GetMetric(); len(h) != 1 || h[0].GetHistogram().GetSampleCount() != 2 {
		t.Errorf("firehose_reload_duration_seconds: %v, want 2 observations", h)
	}
}

// Without [metrics] nothing is served, and turning it on needs a restart.
func TestMetricsOffByDefault(t *testing.T) {
	d := startDaemon(t, daemonOpts{})
	if m := d.status().Metrics; m == nil || m.Enabled || m.Address != "" || m.Listen != "127.0.0.1:9883" {
		t.Fatalf("metrics status %+v, want disabled, default address 127.0.0.1:9883", m)
	}
	d.writeConfig(d.configText(daemonOpts{extra: metricsOn}, zuulPublisher(t)))
	out, code := d.run("reload", "--socket", d.ctl.Socket)
	if code == 0 || !strings.Contains(out, "metrics.enabled") {
		t.Fatalf("reload enabling metrics: exit %d: %s; want refused by name", code, out)
	}
	if m := d.status().Metrics; m.Enabled || m.Address != "" {
		t.Fatalf("metrics after a refused reload: %+v", m)
	}
}
