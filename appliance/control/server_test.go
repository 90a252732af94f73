package control

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/apitype"
)

// The public view copies an allow-list of fields: everything else, a field
// added later included, stays empty for users who may not read the config.
func TestPublicViewKeepsOnlyPublicFields(t *testing.T) {
	public := map[string]bool{"Version": true, "Config": true, "Started": true, "UptimeSeconds": true, "State": true,
		"Listeners": true, "Clients": true, "Subscriptions": true, "Messages": true, "LastReload": true, "Reasons": true, "Redacted": true}
	st := &apitype.Status{
		Version: "v1", Config: "/etc/firehose/firehose.toml", Started: time.Now(), UptimeSeconds: 3, State: apitype.StateDegraded,
		Reasons:    []string{`gerrit "secret-host": backing off`, "tls: /etc/secret.pem"},
		Listeners:  []apitype.Listener{{Name: "mqtt", Address: "[::]:1883"}},
		Clients:    2,
		Publishers: []string{"zuul"},
		LastReload: &apitype.Reload{OK: false, Error: `broker.connect_timeout: "hunter2" is not a duration`},
		Gerrit:     []apitype.GerritSource{{Name: "secret-host"}},
		TLS:        &apitype.TLSStatus{Mode: "files"},
		Firewall:   &apitype.FirewallStatus{LastError: "x"},
	}
	pub := PublicView(st)
	v := reflect.ValueOf(pub).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if !public[name] && !v.Field(i).IsZero() {
			t.Errorf("the public view shows %s: %v", name, v.Field(i).Interface())
		}
	}
	if !pub.Redacted || pub.Clients != 2 || len(pub.Listeners) != 1 || pub.LastReload.OK || pub.LastReload.Error != "" {
		t.Errorf("public view: %+v (last reload %+v)", pub, pub.LastReload)
	}
	if len(pub.Reasons) != 1 || strings.Contains(pub.Reasons[0], "secret") || !strings.Contains(pub.Reasons[0], "2 problem(s)") {
		t.Errorf("public reasons: %q", pub.Reasons)
	}
}
