package metrics

import (
	"bufio"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/broker"
	"github.com/firehose/firehose/appliance/config"
)

var update = flag.Bool("update", false, "rewrite testdata/names.txt from the current output")

var quiet = slog.New(slog.DiscardHandler)

// fullStatus has every part the appliance can report, so that every
// firehose_* name appears.
func fullStatus() *apitype.Status {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	created := at.Add(-2 * time.Second)
	return &apitype.Status{
		Version: "1.2.3", Started: at, State: apitype.StateDegraded, Reasons: []string{"gerrit: review: backing off"},
		Listeners: []apitype.Listener{
			{Name: "mqtt", Address: "[::]:1883", Source: apitype.SourceSystemd, Clients: 7},
			{Name: "wss", Address: "[::]:443", Source: apitype.SourceSystemd, TLS: true, Clients: 2},
		},
		Clients: 9, Subscriptions: 11,
		Messages: apitype.Messages{ReceivedTotal: 100, SentTotal: 900, DroppedTotal: 3,
			Drops: map[string]int64{apitype.DropSlowSubscriber: 3, apitype.DropInflight: 1}},
		Refusals:   map[string]int64{"auth": 4, "acl": 5, "max_clients": 0},
		Publishers: []string{"zuul", "gerrit"},
		LastReload: &apitype.Reload{Time: at.Add(time.Hour), OK: false, Error: "bad"},
		Gerrit: []apitype.GerritSource{{
			Name: "review", Server: "review.example.org:29418", State: apitype.GerritBackingOff,
			LastEvent: &at, LastEventCreated: &created, EventsPublished: 50, Replayed: 5, DuplicatesSkipped: 2,
			ParseErrors: 1, LinesTooLong: 1, Reconnects: 3, Replays: 1, ReplayFailures: 0, QueueLength: 4, QueueOverflow: 0, PublishErrors: 0,
		}},
		TLS: &apitype.TLSStatus{Mode: "acme", Pending: []string{"b.example.org"},
			Certificates:  []apitype.TLSCertificate{{Names: []string{"a.example.org"}, Issuer: "Let's Encrypt", NotAfter: at.Add(30 * 24 * time.Hour)}},
			LastACMEError: &apitype.ACMEError{Time: at, Domain: "b.example.org", Error: "rate limited"}},
		Firewall: &apitype.FirewallStatus{Enabled: true, Table: "inet firehose", InPlace: true, LastApplied: at, Reapplied: 1},
	}
}

// realSys is one tick of $SYS from a real broker (no listeners).
func realSys(t *testing.T) []broker.SysValue {
	t.Helper()
	b := broker.New(quiet, broker.SettingsFrom(config.Default()))
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(10 * time.Second) })
	sys := b.Sys()
	if len(sys) == 0 {
		t.Fatal("the broker published no $SYS topics at start")
	}
	return sys
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// golden reads testdata/names.txt: "name type" lines.
func golden(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/names.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, typ, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("testdata/names.txt: %q is not \"name type\"", line)
		}
		names[name] = typ
	}
	return names
}

// ours are the names this appliance defines; the others in names.txt come
// from Go's standard collectors and are only checked to exist.
func ours(name string) bool {
	return strings.HasPrefix(name, "firehose_") || strings.HasPrefix(name, "broker_")
}

// Every name is a promise to dashboards and alerts: a rename, a new name or
// a removed one shows up here and is made deliberately (go test -update).
func TestNamesMatchGolden(t *testing.T) {
	sys := realSys(t)
	m := New(Sources{Status: fullStatus, Sys: func() []broker.SysValue { return sys }}, quiet)
	m.ObserveReload(true, 10*time.Millisecond)
	got := map[string]string{}
	for name, f := range gather(t, m) {
		got[name] = strings.ToLower(f.GetType().String())
	}
	want := golden(t)
	if *update {
		var lines []string
		for name, typ := range got {
			if ours(name) {
				lines = append(lines, name+" "+typ)
			}
		}
		for name, typ := range want {
			if !ours(name) {
				lines = append(lines, name+" "+typ)
			}
		}
		sort.Strings(lines)
		text := "# Every metric /metrics serves (firehose_*, broker_*), and the Go runtime and\n" +
			"# process ones the dashboard uses. A test compares this with the output;\n" +
			"# rewrite it with: go test ./appliance/metrics -run TestNamesMatchGolden -update\n" +
			strings.Join(lines, "\n") + "\n"
		if err := os.WriteFile("testdata/names.txt", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for name, typ := range got {
		if ours(name) && want[name] != typ {
			t.Errorf("served %s (%s), which testdata/names.txt does not list so", name, typ)
		}
	}
	for name, typ := range want {
		if got[name] != typ {
			t.Errorf("testdata/names.txt lists %s (%s), which is not served so (got %q)", name, typ, got[name])
		}
	}
}

func TestSysNames(t *testing.T) {
	for topic, want := range map[string]string{
		"$SYS/broker/clients/connected":           "broker_clients_connected",
		"$SYS/broker/retained messages/count":     "broker_retained_messages_count",
		"$SYS/broker/load/messages/received/1min": "broker_load_messages_received_1min",
		"$SYS/broker/publish/messages/dropped":    "broker_publish_messages_dropped",
		"$SYS/broker/some-thing.x":                "broker_some_thing_x",
	} {
		if got := sysName(topic); got != want {
			t.Errorf("sysName(%q) = %q, want %q", topic, got, want)
		}
	}
}

// scrape fetches url and parses it with Prometheus's own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %q\n%s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	return fams
}

// value returns the sample of name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("%s is not served", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == want[i] && l.GetValue() == want[i+1] }) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("%s has no sample labelled %q", name, want)
	return 0
}

func TestServeOverHTTP(t *testing.T) {
	m := New(Sources{Status: fullStatus}, quiet)
	m.Start(config.Metrics{Enabled: true, Listen: "127.0.0.1:0"})
	t.Cleanup(m.Close)
	addr := waitBound(t, m)
	m.ObserveReload(false, 2*time.Second)

	fams := scrape(t, "http://"+addr+"/metrics")
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"firehose_listener_clients", []string{"listener", "wss"}, 2},
		{"firehose_refusals_total", []string{"kind", "acl"}, 5},
		{"firehose_deliveries_dropped_total", []string{"reason", "slow_subscriber"}, 3},
		{"firehose_gerrit_state", []string{"source", "review", "state", "backing_off"}, 1},
		{"firehose_gerrit_streaming", []string{"source", "review"}, 0},
		{"firehose_gerrit_lag_seconds", []string{"source", "review"}, 2},
		{"firehose_gerrit_duplicates_skipped_total", []string{"source", "review"}, 2},
		{"firehose_tls_certificate_expiry_timestamp_seconds", []string{"names", "a.example.org"}, float64(time.Date(2026, 12, 31, 12, 0, 0, 0, time.UTC).Unix())},
		{"firehose_reloads_total", []string{"result", "failed"}, 1},
		{"firehose_reloads_total", []string{"result", "ok"}, 0},
		{"firehose_reload_duration_seconds", nil, 1},
		{"firehose_last_reload_success", nil, 0},
		{"firehose_degraded", nil, 1},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("the Go runtime and process collectors are missing")
	}
	if fams["firehose_clients"].GetHelp() == "" {
		t.Error("firehose_clients has no help text")
	}

	for _, path := range []string{"/", "/metrics/x", "/debug/pprof/"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404: only /metrics is served", path, resp.Status)
		}
	}
	if st := m.Status(); !st.Enabled || st.Address != addr || st.LastError != "" || m.Problems() != nil {
		t.Errorf("status %+v, problems %q", st, m.Problems())
	}
}

func waitBound(t *testing.T, m *Metrics) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for m.Status().Address == "" {
		if time.Now().After(deadline) {
			t.Fatalf("never bound: %+v", m.Status())
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	return m.Status().Address
}

// An address that cannot be bound leaves the appliance serving, degraded
// and saying why, and is retried until it can.
func TestBusyAddressRetried(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := squatter.Addr().String()
	m := New(Sources{Status: fullStatus}, quiet)
	m.Start(config.Metrics{Enabled: true, Listen: addr})
	t.Cleanup(m.Close)

	deadline := time.Now().Add(60 * time.Second)
	for m.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("no error while the address is taken")
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	if p := m.Problems(); len(p) != 1 || !strings.Contains(p[0], addr) || !strings.Contains(p[0], "retrying") {
		t.Fatalf("problems = %q, want one naming %s", p, addr)
	}
	squatter.Close()
	if got := waitBound(t, m); got != addr {
		t.Fatalf("bound %s, want %s", got, addr)
	}
	if p := m.Problems(); p != nil {
		t.Fatalf("problems after binding: %q", p)
	}
	scrape(t, "http://"+addr+"/metrics")
}

func TestDisabledServesNothing(t *testing.T) {
	m := New(Sources{Status: fullStatus}, quiet)
	m.Start(config.Metrics{Enabled: false, Listen: "127.0.0.1:0"})
	m.Close()
	if st := m.Status(); st.Enabled || st.Address != "" || m.Problems() != nil {
		t.Fatalf("disabled: status %+v problems %q", st, m.Problems())
	}
	var nilMetrics *Metrics
	nilMetrics.Close()
	if nilMetrics.Status() != nil || nilMetrics.Problems() != nil {
		t.Fatal("a nil *Metrics reports something")
	}
}

// Two certificates for the same names must not fail the whole scrape.
func TestDuplicateSeriesKeepsScrape(t *testing.T) {
	st := fullStatus()
	c := st.TLS.Certificates[0]
	st.TLS.Certificates = append(st.TLS.Certificates, c)
	m := New(Sources{Status: func() *apitype.Status { return st }}, quiet)
	fams := gather(t, m)
	if n := len(fams["firehose_tls_certificate_expiry_timestamp_seconds"].GetMetric()); n != 1 {
		t.Fatalf("%d series, want 1", n)
	}
}
