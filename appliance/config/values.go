package config

import (
	"errors"
	"fmt"
	"net/netip"
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

// sizeUnits are the suffixes a Size may carry, lower case.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseSize reads "8MiB", "512 KiB", "1GB", "1048576" or "auto" (SizeAuto).
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "auto") {
		return SizeAuto, nil
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if i == 0 || !ok || err != nil {
		return 0, fmt.Errorf("%q is not a size (write it like \"8MiB\", \"512KiB\", \"1GB\" or a number of bytes)", s)
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(n * unit), nil
}

// UnmarshalText parses a size; see ParseSize.
func (z *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// MarshalText writes the size back in the largest binary unit that divides it.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

func (z Size) String() string {
	if z == SizeAuto {
		return "auto"
	}
	for _, u := range []struct {
		name string
		n    Size
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if z >= u.n && z%u.n == 0 {
			return strconv.FormatInt(int64(z/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(z), 10)
}

// ParsePrefix reads an IP address ("192.0.2.7", "2001:db8::1", taken as its
// own /32 or /128) or a CIDR prefix ("10.0.0.0/8"). IPv4-mapped IPv6 forms
// are turned into IPv4, as the kernel reports such clients, and host bits
// are masked off.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix (write it like \"192.0.2.7\", \"10.0.0.0/8\" or \"2001:db8::/32\")", s)
		}
		if a := p.Addr(); a.Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix needs at least 96 bits", s)
			}
			p = netip.PrefixFrom(a.Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix (write it like \"192.0.2.7\", \"10.0.0.0/8\" or \"2001:db8::/32\")", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
