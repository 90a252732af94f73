package firewall

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"

	"github.com/firehose/firehose/appliance/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.nft from Render")

func TestListenerPorts(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    config.Broker
		tls  string
		want []int
	}{
		{"defaults_tls_off", config.Default().Broker, config.TLSOff, []int{80, 1883}},
		{"defaults_tls_files", config.Default().Broker, config.TLSFiles, []int{80, 443, 1883, 8883}},
		{"defaults_tls_acme", config.Default().Broker, config.TLSACME, []int{80, 443, 1883, 8883}},
		{"all_off", config.Broker{}, config.TLSACME, nil},
		{"tls_only_listeners_with_tls_off", config.Broker{MQTTS: ":8883", WebsocketTLS: ":443"}, config.TLSOff, nil},
		{"hosts_and_ipv6", config.Broker{MQTT: "192.0.2.1:1883", Websocket: "[2001:db8::1]:8080"}, config.TLSOff, []int{1883, 8080}},
		{"duplicates", config.Broker{MQTT: "127.0.0.1:1883", Websocket: ":1883"}, config.TLSOff, []int{1883}},
		{"port_zero_and_garbage", config.Broker{MQTT: ":0", Websocket: "nonsense", MQTTS: ":99999", WebsocketTLS: ":-1"}, config.TLSFiles, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.Broker, c.TLS.Mode = tc.b, tc.tls
			got := ListenerPorts(c)
			if !slices.Equal(got, tc.want) {
				t.Errorf("ListenerPorts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	c := config.Default()
	c.Firewall.AllowTCP = []int{22, 1883, 22, 0}
	c.Firewall.AllowUDP = []int{500, 123}
	c.Firewall.NewConnectionsPerSource = config.Rate{Count: 5, Per: time.Second}
	p := newPlan(c)
	if want := []int{22, 80, 1883}; !slices.Equal(p.tcp, want) {
		t.Errorf("tcp = %v, want %v", p.tcp, want)
	}
	if want := []int{123, 500}; !slices.Equal(p.udp, want) {
		t.Errorf("udp = %v, want %v", p.udp, want)
	}
	if want := []int{80, 1883}; !slices.Equal(p.limited, want) {
		t.Errorf("limited = %v, want the broker ports %v (ssh is never limited)", p.limited, want)
	}

	c.Broker = config.Broker{}
	if p := newPlan(c); p.limited != nil {
		t.Errorf("no listeners: limited = %v, want none", p.limited)
	}
}

// TestRenderGolden pins the text `firehosectl firewall show` prints for each
// config in testdata. Run with -update after an intended change.
func TestRenderGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		t.Fatal("no testdata/*.toml")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			c, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			got := Render(c)
			golden := strings.TrimSuffix(f, ".toml") + ".nft"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestRenderGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("Render(%s) differs from %s:\n--- got\n%s--- want\n%s", f, golden, got, want)
			}
		})
	}
}

// TestRulesetShape checks what the golden text cannot: every rule's
// expressions marshal, tags are unique (the self-heal check relies on them),
// and every anonymous set a rule looks up is sent with it.
func TestRulesetShape(t *testing.T) {
	c := config.Default()
	c.TLS.Mode = config.TLSFiles
	c.Firewall.Enabled = true
	c.Firewall.AllowUDP = []int{53, 123}
	c.Firewall.NewConnectionsPerSource = config.Rate{Count: 10, Per: time.Second}
	checkRuleset(t, newPlan(c).build())
}

func checkRuleset(t *testing.T, rs *ruleset) {
	t.Helper()
	tags := map[string]bool{}
	named := map[string]bool{}
	for _, s := range rs.sets {
		named[s.set.Name] = true
	}
	for _, r := range rs.rules {
		if tags[r.tag] {
			t.Errorf("rule %q: tag %s used twice", r.text, r.tag)
		}
		tags[r.tag] = true
		for _, e := range r.exprs {
			if _, err := expr.Marshal(byte(rs.table.Family), e); err != nil {
				t.Errorf("rule %q: %T does not marshal: %v", r.text, e, err)
			}
			switch e := e.(type) {
			case *expr.Lookup:
				if !slices.ContainsFunc(r.anon, func(a anonSet) bool { return a.set.ID == e.SetID }) {
					t.Errorf("rule %q looks up set id %d it does not send", r.text, e.SetID)
				}
			case *expr.Dynset:
				if !named[e.SetName] {
					t.Errorf("rule %q updates set %q that is not declared", r.text, e.SetName)
				}
			}
		}
		if v, ok := r.exprs[len(r.exprs)-1].(*expr.Verdict); !ok || (v.Kind != expr.VerdictAccept && v.Kind != expr.VerdictDrop) {
			t.Errorf("rule %q does not end in accept or drop", r.text)
		}
	}
}

func TestFloodTimeout(t *testing.T) {
	for per, want := range map[time.Duration]string{time.Second: "1m", time.Minute: "1m", time.Hour: "1h"} {
		if got := nftDuration(floodTimeout(config.Rate{Count: 1, Per: per})); got != want {
			t.Errorf("per %v: timeout %s, want %s", per, got, want)
		}
	}
}
