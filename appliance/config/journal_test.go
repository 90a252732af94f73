package config

import (
	"testing"
	"time"
)

func TestJournalDefaultsAndValues(t *testing.T) {
	empty, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if j := empty.Journal; !j.Enabled || j.MaxAge.D() != 7*24*time.Hour || j.MaxBytes != 4<<30 || j.Fsync != (SyncPolicy{Interval: time.Second}) {
		t.Errorf("journal defaults = %+v", j)
	}
	full, err := Parse("ok-full.toml", mustRead(t, "testdata/ok-full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if j := full.Journal; j.MaxAge.D() != 72*time.Hour || j.MaxBytes != 512<<20 || !j.Fsync.Always || j.Fsync.String() != "always" {
		t.Errorf("journal = %+v", j)
	}
	off, err := Parse("off.toml", []byte("[journal]\nenabled = false\nfsync = \"250ms\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if off.Journal.Enabled || off.Journal.Fsync.Interval != 250*time.Millisecond {
		t.Errorf("journal = %+v", off.Journal)
	}
}
