package config

import (
	"strings"
	"testing"
	"time"
)

func TestClusterDefaultsAndPeers(t *testing.T) {
	empty, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := empty.Cluster; c.Enabled() || c.Replicas != 3 || c.DedupeWindow.D() != 2*time.Minute {
		t.Errorf("cluster defaults = %+v", c)
	}
	// Every node may share one peer list that names itself too.
	c, err := Parse("c.toml", []byte(`[cluster]
name = "fh-1"
listen = "10.0.0.1:6222"
peers = ["10.0.0.1:6222", "10.0.0.2:6222", "nats-route://10.0.0.3:6222", "10.0.0.2:6222"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Cluster.Enabled() || c.Cluster.External() || c.Cluster.Nodes() != 3 {
		t.Fatalf("cluster = %+v, nodes %d", c.Cluster, c.Cluster.Nodes())
	}
	var got []string
	for _, u := range c.Cluster.PeerURLs() {
		got = append(got, u.String())
	}
	if strings.Join(got, " ") != "nats-route://10.0.0.2:6222 nats-route://10.0.0.3:6222" {
		t.Errorf("peers = %v", got)
	}
	// Two nodes cannot hold three replicas.
	_, err = Parse("c.toml", []byte("[cluster]\nname = \"a\"\nlisten = \":6222\"\npeers = [\"10.0.0.2:6222\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "c.toml:1: cluster.replicas: is 3, but the cluster has 2 nodes") {
		t.Errorf("err = %v", err)
	}
	ext, err := Parse("e.toml", []byte("[cluster]\nname = \"a\"\nnats_urls = [\"nats://10.0.0.9:4222\"]\nreplicas = 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Cluster.External() || !ext.Cluster.Enabled() {
		t.Errorf("external = %+v", ext.Cluster)
	}
}
