package broker

import (
	"log/slog"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/firehose/firehose/appliance/config"
)

// The ACL check runs for every delivery to every subscriber: a read must not
// allocate, whatever the publisher table holds.
func TestACLReadPathDoesNotAllocate(t *testing.T) {
	var pubs []config.Publisher
	for _, u := range []string{"zuul", "gerrit", "ansible"} {
		pubs = append(pubs, config.Publisher{Username: u, PasswordHash: "x", Topics: []string{u + "/#"}})
	}
	b := New(slog.New(slog.DiscardHandler), Settings{Publishers: pubs, MaxClients: 10, MaxPacketSize: 1024})
	cl := &mqtt.Client{}
	allocs := testing.AllocsPerRun(1000, func() {
		if !b.access.OnACLCheck(cl, "gerrit/openstack/nova/comment-added", false) {
			t.Fatal("read refused")
		}
	})
	if allocs != 0 {
		t.Fatalf("the per-delivery ACL check allocates %.1f times", allocs)
	}
}

func TestACLWrite(t *testing.T) {
	b := New(slog.New(slog.DiscardHandler), Settings{
		Publishers: []config.Publisher{{Username: "zuul", PasswordHash: "x", Topics: []string{"zuul/#", "ci/+/done"}}},
		MaxClients: 10, MaxPacketSize: 1024,
	})
	zuul := &mqtt.Client{}
	zuul.Properties.Username = []byte("zuul")
	anon := &mqtt.Client{}
	for _, tc := range []struct {
		cl    *mqtt.Client
		topic string
		want  bool
	}{
		{zuul, "zuul/build", true}, {zuul, "zuul", true}, {zuul, "ci/x/done", true},
		{zuul, "gerrit/x", false}, {zuul, "ci/x/y/done", false}, {anon, "zuul/build", false},
	} {
		if got := b.access.OnACLCheck(tc.cl, tc.topic, true); got != tc.want {
			t.Errorf("%q may publish %q = %v, want %v", tc.cl.Properties.Username, tc.topic, got, tc.want)
		}
	}
	// A reload that removes the account takes its right to publish at once.
	b.Apply(Settings{MaxClients: 10, MaxPacketSize: 1024})
	if b.access.OnACLCheck(zuul, "zuul/build", true) {
		t.Error("a removed publisher may still publish")
	}
}

func BenchmarkACLRead(b *testing.B) {
	br := New(slog.New(slog.DiscardHandler), Settings{MaxClients: 10, MaxPacketSize: 1024})
	cl := &mqtt.Client{}
	for b.Loop() {
		br.access.OnACLCheck(cl, "gerrit/openstack/nova/comment-added", false)
	}
}
