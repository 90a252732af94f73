package config

import (
	"fmt"
	"strconv"
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
	MaxBytes ByteSize `toml:"max_bytes"`
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
	v.check(j.MaxBytes >= minJournalBytes, Key{"journal", "max_bytes"}, "must be at least 1MiB")
}

// ByteSize is a number of bytes written with a unit: "4GiB", "500MB",
// "1048576". KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB of 1024.
type ByteSize int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// UnmarshalText parses a size such as "4GiB".
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	unit, known := sizeUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	if err != nil || !known {
		return fmt.Errorf("%q is not a size (write it like \"4GiB\", \"500MB\" or \"1048576\")", text)
	}
	if n > (1<<62)/unit {
		return fmt.Errorf("%q is too large", text)
	}
	*b = ByteSize(n * unit)
	return nil
}

// MarshalText writes the size with the largest binary unit that divides it.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
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
