// Package metrics owns the appliance's Prometheus exposition: /metrics, in
// the Prometheus text format, on a listener of its own ([metrics] listen,
// loopback by default; the firewall never opens it).
//
// Most values are read at scrape time from the status snapshot the control
// API serves (apitype.Status) and from the broker's $SYS topics, so a metric
// and `firehosectl status` cannot disagree and nothing is counted twice.
// What a snapshot cannot hold (how long reloads take) is an instrument here.
// The names are a promise to dashboards and alerts: testdata/names.txt
// lists every one, and a test fails when they differ.
//
// It never changes the appliance: it only reads.
package metrics

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/firehose/firehose/appliance/apitype"
	"github.com/firehose/firehose/appliance/broker"
)

// Sources are what a scrape reads.
type Sources struct {
	// Status returns the appliance's status, once per scrape.
	Status func() *apitype.Status
	// Sys returns the broker's $SYS topics as last published.
	Sys func() []broker.SysValue
}

// Metrics is the registry and its endpoint.
type Metrics struct {
	log *slog.Logger
	reg *prometheus.Registry

	reloads        *prometheus.CounterVec
	reloadDuration prometheus.Histogram

	mu      sync.Mutex
	ep      *endpoint // nil until Start with enabled = true
	enabled bool
	listen  string
}

// New builds the registry: the status and $SYS collector, the reload
// instruments, and Go's standard runtime and process collectors.
func New(src Sources, log *slog.Logger) *Metrics {
	m := &Metrics{
		log: log,
		reg: prometheus.NewRegistry(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "firehose_reloads_total",
			Help: "Config reloads (SIGHUP, systemctl reload, firehosectl reload) by result: ok, or failed (the running config stayed).",
		}, []string{"result"}),
		reloadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "firehose_reload_duration_seconds",
			Help:    "How long a reload took, from reading the file to the new config running (or its refusal).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	// Both results exist from the start, so rate() and alerts see a zero.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.reg.MustRegister(
		&collector{src: src},
		m.reloads, m.reloadDuration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registerer is where a part registers instruments of its own, for what a
// status snapshot cannot hold: a latency histogram (the journal's append
// latency), an event counter. Their names go into testdata/names.txt.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Handler serves the registry in the Prometheus text format. A metric that
// fails is left out rather than failing the scrape; at most two scrapes run
// at once, since each one walks every client.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 2,
		Timeout:             30 * time.Second,
	})
}

// ObserveReload records one reload's result and duration.
func (m *Metrics) ObserveReload(ok bool, took time.Duration) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.reloads.WithLabelValues(result).Inc()
	m.reloadDuration.Observe(took.Seconds())
}
