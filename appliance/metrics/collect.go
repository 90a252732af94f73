package metrics

import (
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firehose/firehose/appliance/apitype"
)

// collector turns one status snapshot and the $SYS topics into samples at
// each scrape. It describes nothing up front (an "unchecked" collector):
// which series exist depends on the config (Gerrit sources, certificates).
type collector struct {
	src Sources
}

func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := &sink{ch: ch, seen: map[string]bool{}}
	if c.src.Status != nil {
		st := c.src.Status()
		for _, p := range parts {
			p(st, s)
		}
	}
	if c.src.Sys != nil {
		sys(c.src.Sys(), s)
	}
}

// sink is what a part writes samples to.
type sink struct {
	ch   chan<- prometheus.Metric
	seen map[string]bool
}

// gauge and counter emit one sample. labels alternate names and values:
// s.gauge("firehose_listener_clients", help, 12, "listener", "mqtt").
func (s *sink) gauge(name, help string, v float64, labels ...string) {
	s.emit(name, help, prometheus.GaugeValue, v, labels)
}

func (s *sink) counter(name, help string, v float64, labels ...string) {
	s.emit(name, help, prometheus.CounterValue, v, labels)
}

func (s *sink) emit(name, help string, t prometheus.ValueType, v float64, labels []string) {
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names = append(names, labels[i])
		values = append(values, labels[i+1])
	}
	// Two samples with the same labels (two certificates for the same
	// names) would fail the scrape: the first one stands.
	key := name + "\xff" + strings.Join(values, "\xff")
	if s.seen[key] {
		return
	}
	s.seen[key] = true
	m, err := prometheus.NewConstMetric(prometheus.NewDesc(name, help, names, nil), t, v, values...)
	if err != nil {
		m = prometheus.NewInvalidMetric(prometheus.NewDesc(name, help, names, nil), err)
	}
	s.ch <- m
}

// seconds is a time as a Prometheus timestamp value.
func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolean(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sortedKeys gives a map's keys in order, so output is stable.
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// part turns one piece of a status snapshot into samples. Adding a part's
// metrics is one function of this shape, listed in parts. Instruments for
// what a snapshot cannot hold are registered on Metrics.Registerer.
type part func(st *apitype.Status, s *sink)

// parts are collected in this order at each scrape.
//
// The journal and the cluster add theirs here when their status exists in
// apitype.Status (journal span, bytes and append latency; cluster peers and
// lag): one function each, names added to testdata/names.txt, and the
// dashboard and alerts may then use them.
var parts = []part{appliance, messages, listeners, refusals, gerritSources, tlsCertificates, firewall, reloads}
