package config

import "time"

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
		Journal:  defaultJournal(),
		Cluster:  defaultCluster(),
	}
}

func (g *Gerrit) setDefaults() {
	g.Port = 29418
	g.Topic = "gerrit"
	g.Keepalive = Duration(15 * time.Second)
}
