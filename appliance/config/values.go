package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

func itoa(n int) string { return strconv.Itoa(n) }

// UnmarshalText parses a Go duration such as "10s"; negative values are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like \"10s\" or \"1m30s\")", b)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration back in the form it is read.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses "N/second", "N/minute" or "N/hour"; "" is off.
func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "" {
		*r = Rate{}
		return nil
	}
	n, unit, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(strings.TrimSpace(n))
	per, known := map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour}[strings.TrimSpace(unit)]
	if !ok || err != nil || !known {
		return fmt.Errorf("%q is not a rate (write it like \"50/second\", \"600/minute\" or \"\" for none)", b)
	}
	if count <= 0 {
		return errors.New("the count must be at least 1 (use \"\" for no limit)")
	}
	*r = Rate{Count: count, Per: per}
	return nil
}

// MarshalText writes the rate back in the form it is read.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
