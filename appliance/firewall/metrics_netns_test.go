package firewall

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/packaging"
)

// The Prometheus endpoint is for monitoring, not for the public: with the
// packaged configuration the firewall opens the broker's ports and never
// [metrics] listen, even when an operator binds it to every address. The
// README's way to open it, allow_tcp, does.
func TestMetricsPortClosedFromOutside(t *testing.T) {
	l := newLabNamed(t, "fhmet")
	c, err := config.Parse("firehose.toml", packaging.SampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Firewall.Enabled || !c.Metrics.Enabled || !strings.HasPrefix(c.Metrics.Listen, "127.0.0.1:") {
		t.Fatalf("the packaged config has firewall %+v, metrics %+v; want both on, metrics on loopback", c.Firewall, c.Metrics)
	}
	_, port, _ := net.SplitHostPort(c.Metrics.Listen)
	metricsPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	c.Metrics.Listen = fmt.Sprintf(":%d", metricsPort) // every address: the worst case
	mqttPort := 1883
	for _, p := range []int{mqttPort, metricsPort} {
		l.listen(t, p)
	}
	// Reachable without the table, so a block below is the table's doing.
	l.mustConnect(t, srv4, metricsPort)

	m := l.manager(t)
	if err := m.Update(c); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{srv4, srv6} {
		t.Run(strings.ReplaceAll(host, ":", "_"), func(t *testing.T) {
			l.mustConnect(t, host, mqttPort)
			l.mustBeBlocked(t, host, metricsPort)
		})
	}
	// A scraper on the host itself still reaches it.
	err = l.srv.do(func() error {
		c, err := dialTimeout(fmt.Sprintf("127.0.0.1:%d", metricsPort), connectTimeout)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("loopback connection to the metrics port: %v", err)
	}

	c.Firewall.AllowTCP = append(c.Firewall.AllowTCP, metricsPort)
	if err := m.Update(c); err != nil {
		t.Fatal(err)
	}
	l.mustConnect(t, srv4, metricsPort)
}
