package firewall

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/config"
)

// FuzzRender feeds listen addresses and port lists from outside (the config
// file) through ListenerPorts, the plan and the rule builder. Whatever comes
// in, the result must be well-formed: ports in range, sorted and unique, and
// every rule marshalable with a unique tag.
func FuzzRender(f *testing.F) {
	f.Add(":1883", ":80", ":8883", ":443", "files", 22, 8080, 53, 10, int64(time.Second))
	f.Add("0.0.0.0:1883", "[::]:8080", "", "", "off", 0, -1, 70000, 0, int64(0))
	f.Add("[::1]:0", "host:port", ":65535", ":65536", "acme", 65535, 1, 1, 1, int64(time.Hour))
	f.Add("1.2.3.4", "::", "[::]:+1", ":00443", "", 1883, 1883, 0, 3, int64(time.Minute))
	f.Add("[fe80::1%eth0]:1883", ":-0", " :1883", ":1883 ", "acme", 25, 465, 500, 1<<30, int64(7*time.Second))
	f.Fuzz(func(t *testing.T, mqtt, ws, mqtts, wss, tlsMode string, tcp1, tcp2, udp, count int, per int64) {
		c := config.Default()
		c.Broker.MQTT, c.Broker.Websocket, c.Broker.MQTTS, c.Broker.WebsocketTLS = mqtt, ws, mqtts, wss
		c.TLS.Mode = tlsMode
		c.Firewall.Enabled = true
		c.Firewall.AllowTCP = []int{tcp1, tcp2}
		c.Firewall.AllowUDP = []int{udp}
		c.Firewall.NewConnectionsPerSource = config.Rate{Count: count, Per: time.Duration(per)}

		for _, ports := range [][]int{ListenerPorts(c), newPlan(c).tcp, newPlan(c).udp, newPlan(c).limited} {
			if !slices.IsSorted(ports) || len(slices.Compact(slices.Clone(ports))) != len(ports) {
				t.Fatalf("ports %v not sorted and unique", ports)
			}
			for _, p := range ports {
				if !validPort(p) {
					t.Fatalf("port %d out of range in %v", p, ports)
				}
			}
		}
		p := newPlan(c)
		if len(p.limited) > 0 && (p.rate.Count < 1 || limitUnit(p.rate.Per) == 0) {
			t.Fatalf("limit with rate %+v the kernel cannot express", p.rate)
		}
		checkRuleset(t, p.build())
		out := Render(c)
		if !strings.HasPrefix(out, "table inet firehose {\n") || !strings.HasSuffix(out, "\t}\n}\n") {
			t.Fatalf("Render output not one table:\n%s", out)
		}
	})
}
