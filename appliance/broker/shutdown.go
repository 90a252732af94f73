package broker

import (
	"github.com/mochi-mqtt/server/v2/packets"
)

// Drain stops accepting connections and closes MQTT 3 clients without a
// DISCONNECT packet. In MQTT 3.1.1 only clients send DISCONNECT; a client
// library that receives one (libmosquitto: "protocol error") gives up
// instead of reconnecting, so every restart or upgrade would lose its
// subscribers for good. MQTT 5 clients are left to Close, which tells them
// "server shutting down" as MQTT 5 allows.
func (b *Broker) Drain() {
	b.mu.Lock()
	names := make([]string, len(b.listeners))
	for i, l := range b.listeners {
		names[i] = l.Name
	}
	b.mu.Unlock()
	for _, name := range names {
		b.server.Listeners.Close(name, func(string) {})
	}
	for _, cl := range b.server.Clients.GetAll() {
		if !cl.Net.Inline && cl.Properties.ProtocolVersion < 5 {
			cl.Stop(packets.ErrServerShuttingDown)
		}
	}
}
