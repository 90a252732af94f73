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

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"1048576": 1 << 20, "4GiB": 4 << 30, "500MB": 500e6, "2 tib": 2 << 40, "10kB": 10e3, "7B": 7,
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("%q = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "1.5GiB", "4 gigs", "99999999999TiB"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q parsed as %d", in, b)
		}
	}
	if s := ByteSize(4 << 30).String(); s != "4GiB" {
		t.Errorf("String = %q", s)
	}
	if s := ByteSize(1000).String(); s != "1000" {
		t.Errorf("String = %q", s)
	}
}
