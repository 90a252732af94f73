package daemon

import (
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/firehose/firehose/appliance/config"
	"github.com/firehose/firehose/appliance/web"
)

// httpHandler routes what arrives on the websocket listeners once the
// journal's API (events.API.Wrap, in front of it) has taken its /v0/ paths:
// upgrades go to the broker (paths / and /mqtt), plain GETs of / and the
// page's assets to the page, the rest to the broker's handler, which
// explains itself.
func (d *Daemon) httpHandler(broker http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/{$}", d.web)
	mux.Handle(web.StaticPrefix, d.web)
	mux.Handle("/", broker)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			broker.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// pageOptions is what the page says, from the config and the sockets
// actually served (systemd's may differ from the config's addresses).
func pageOptions(c *config.Config, addrs map[string]net.Addr) web.Options {
	o := web.Options{Title: c.Page.Title, Hostname: c.Page.Hostname, Journal: c.Journal.Enabled}
	if o.Hostname == "" && c.TLS.Mode == config.TLSACME && len(c.TLS.Domains) > 0 {
		o.Hostname = c.TLS.Domains[0]
	}
	port := func(name string) int {
		if a, ok := addrs[name].(*net.TCPAddr); ok {
			return a.Port
		}
		return 0
	}
	o.MQTTPort, o.MQTTSPort, o.WSPort, o.WSSPort = port("mqtt"), port("mqtts"), port("ws"), port("wss")
	seen := map[string]bool{}
	add := func(f string) {
		if !seen[f] && !strings.HasPrefix(f, "$") {
			seen[f] = true
			o.Topics = append(o.Topics, f)
		}
	}
	for _, g := range c.Gerrit {
		if o.GerritTopic == "" {
			o.GerritTopic = g.Topic
		}
		add(g.Topic + "/#")
	}
	for _, p := range c.Publishers {
		for _, f := range p.Topics {
			add(f)
		}
	}
	return o
}
