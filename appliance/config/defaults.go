package config

import "time"

// DefaultMetricsListen is where /metrics is served when [metrics] names no
// address: loopback only, port 9883 (MQTT's 1883 in Prometheus's 9xxx range).
const DefaultMetricsListen = "127.0.0.1:9883"

// Default returns the configuration used for every key a file leaves out.
func Default() *Config {
	return &Config{
		Broker: Broker{
			MQTT:           ":1883",
			Websocket:      ":80",
			MQTTS:          ":8883",
			WebsocketTLS:   ":443",
			MaxClients:     50000,
			MaxPacketSize:  1 << 20,
			ConnectTimeout: Duration(10 * time.Second),
			StateDir:       "/var/lib/firehose",
		},
		Control: Control{Socket: "/run/firehose/control.sock"},
		TLS:     TLS{Mode: TLSOff},
		// Off unless the file turns it on, so that a config written for another
		// host never locks its administrator out; the packaged file turns it on.
		Firewall: Firewall{AllowTCP: []int{22}},
		Limits: Limits{
			MaxTopicLevels:            64,
			MaxTopicLength:            1024,
			MaxSubscriptionsPerClient: 1000,
			MaxConnectionsPerAddress:  500,
			MaxQueuedBytes:            8 << 20,
			MaxKeepalive:              Duration(time.Hour),
			MemoryLimit:               SizeAuto,
			MaxRetainedMessages:       10000,
			MaxRetainedBytes:          64 << 20,
			AnonymousSessionExpiry:    Duration(5 * time.Minute),
			AuthFailuresPerAddress:    Rate{Count: 10, Per: time.Minute},
			AuthFailuresPerAccount:    Rate{Count: 60, Per: time.Minute},
			AuthWait:                  Duration(5 * time.Second),
		},
		// Off unless the file turns it on (the packaged file does), so that
		// no config opens a port it does not name; loopback when on.
		Metrics: Metrics{Listen: DefaultMetricsListen},
		Journal: defaultJournal(),
		Page:    Page{Title: "firehose"},
		Cluster: defaultCluster(),
	}
}

func (g *Gerrit) setDefaults() {
	g.Port = 29418
	g.Topic = "gerrit"
	g.Keepalive = Duration(15 * time.Second)
}
