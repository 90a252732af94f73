package daemon

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/appliance/config"
)

// A reload whose files hang is given up after its limit; while the hung
// read lasts, later reloads fail at once instead of piling up; shutdown
// ends a wait at once.
func TestReloadReadIsBounded(t *testing.T) {
	d := newDaemon("/etc/firehose/firehose.toml", slog.New(slog.DiscardHandler))
	d.readLimit = 50 * time.Millisecond
	release := make(chan struct{})
	d.prepare = func(string) (*config.Config, error) {
		<-release
		return nil, errors.New("read at last")
	}
	if _, err := d.prepareBounded(); err == nil || !strings.Contains(err.Error(), "took longer than 50ms") {
		t.Fatalf("a hung read: %v, want a timeout", err)
	}
	if _, err := d.prepareBounded(); err == nil || !strings.Contains(err.Error(), "an earlier reload is still reading") {
		t.Fatalf("a reload while the hung read lasts: %v", err)
	}
	close(release)
	deadline := time.Now().Add(30 * time.Second)
	for d.preparing.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the released read never finished")
		}
		time.Sleep(time.Millisecond)
	}
	good := &config.Config{}
	d.prepare = func(string) (*config.Config, error) { return good, nil }
	if c, err := d.prepareBounded(); err != nil || c != good {
		t.Fatalf("after the read returned: %v, %v", c, err)
	}

	// Shutdown does not wait for the limit.
	d.readLimit = time.Hour
	block := make(chan struct{})
	defer close(block)
	d.prepare = func(string) (*config.Config, error) { <-block; return nil, nil }
	go close(d.done)
	if _, err := d.prepareBounded(); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("at shutdown: %v", err)
	}
}
