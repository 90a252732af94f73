package config

import (
	"fmt"
	"strings"
	"time"
)

// Journal configures the journal: every published message, numbered and
// kept for a while, so that consumers can resume where they left off.
type Journal struct {
	// Enabled = false keeps the broker as it was before the journal: no
	// sequence numbers, no replay, retained messages in memory only.
	Enabled bool `toml:"enabled"`
	// MaxAge: older messages are removed.
	MaxAge Duration `toml:"max_age"`
	// MaxBytes: the oldest messages are removed to stay under it.
	MaxBytes Size `toml:"max_bytes"`
	// Fsync is how often written messages are forced to disk.
	Fsync SyncPolicy `toml:"fsync"`
}

func defaultJournal() Journal {
	return Journal{
		Enabled:  true,
		MaxAge:   Duration(7 * 24 * time.Hour),
		MaxBytes: 4 << 30,
		Fsync:    SyncPolicy{Interval: time.Second},
	}
}

// Smallest values accepted: below them the journal would hold too little to
// be of use, and the store's own block sizes stop making sense.
const (
	minJournalAge   = time.Second
	minJournalBytes = 1 << 20
)

func (j *Journal) validate(v *validator) {
	v.check(j.MaxAge.D() >= minJournalAge, Key{"journal", "max_age"}, "must be at least %s", minJournalAge)
	if j.MaxBytes == SizeAuto {
		v.fail(Key{"journal", "max_bytes"}, "must be a size such as \"4GiB\" (\"auto\" is for memory_limit)")
	} else {
		v.check(j.MaxBytes >= minJournalBytes, Key{"journal", "max_bytes"}, "must be at least 1MiB")
	}
}

// SyncPolicy is when the journal forces writes to disk: "always" (every
// message, before it is acknowledged) or at an interval ("1s").
type SyncPolicy struct {
	Always   bool
	Interval time.Duration
}

// UnmarshalText parses "always" or a positive duration.
func (p *SyncPolicy) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "always" {
		*p = SyncPolicy{Always: true}
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q is neither \"always\" nor a duration such as \"1s\"", text)
	}
	*p = SyncPolicy{Interval: d}
	return nil
}

// MarshalText writes the policy back in the form it is read.
func (p SyncPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p SyncPolicy) String() string {
	if p.Always {
		return "always"
	}
	return p.Interval.String()
}
