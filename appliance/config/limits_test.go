package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestLimitsDefaultsAndValues(t *testing.T) {
	d, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	l := d.Limits
	if l.MaxTopicLevels != 64 || l.MaxQueuedBytes != 8<<20 || l.MemoryLimit != SizeAuto || l.MaxKeepalive.D() != time.Hour ||
		l.AuthFailuresPerAddress != (Rate{10, time.Minute}) || len(l.Exempt()) != 0 {
		t.Errorf("default limits = %+v", l)
	}
	c, err := Parse("ok-full.toml", mustRead(t, "testdata/ok-full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l = c.Limits
	if l.MaxQueuedBytes != 4<<20 || l.MaxRetainedBytes != 1<<20 || l.MemoryLimit != 1<<30 || l.AnonymousSessionExpiry != 0 ||
		!l.AuthFailuresPerAccount.IsZero() || l.MaxKeepalive.D() != 30*time.Minute {
		t.Errorf("limits = %+v", l)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.7/32")}
	got := l.Exempt()
	if len(got) != len(want) {
		t.Fatalf("exempt = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("exempt[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"8MiB", 8 << 20}, {"8 MiB", 8 << 20}, {"512kib", 512 << 10},
		{"1GB", 1e9}, {"2TiB", 2 << 40}, {"10B", 10}, {"auto", SizeAuto}, {" AUTO ", SizeAuto},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5MiB", "8 parsecs", "99999999999TiB", "0x10"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
	for _, z := range []Size{0, 1, 1023, 64 << 10, 8 << 20, 3 << 30, 1e9, SizeAuto} {
		back, err := ParseSize(z.String())
		if err != nil || back != z {
			t.Errorf("%d written %q reads back as %d, %v", z, z.String(), back, err)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7/32"}, {"10.1.2.3/8", "10.0.0.0/8"}, {"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"}, {"::ffff:192.0.2.7", "192.0.2.7/32"}, {"::ffff:10.0.0.0/104", "10.0.0.0/8"},
	} {
		got, err := ParsePrefix(tc.in)
		if err != nil || got.String() != tc.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "example.org", "10.0.0.0/33", "fe80::1%eth0", "::ffff:10.0.0.0/90", "1.2.3"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) succeeded", bad)
		}
	}
}

// FuzzParseSize: no input panics; a size that parses writes back to itself.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"8MiB", "1048576", "auto", "1GB", "9223372036854775807", "4611686018427387904KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseSize(s)
		if err != nil {
			return
		}
		if z < SizeAuto {
			t.Fatalf("ParseSize(%q) = %d", s, z)
		}
		if back, err := ParseSize(z.String()); err != nil || back != z {
			t.Fatalf("ParseSize(%q) = %d, written %q, reads back %d, %v", s, z, z.String(), back, err)
		}
	})
}

// FuzzParsePrefix: no input panics; what parses is a masked, unmapped
// prefix that contains its own address and parses back to itself.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "::ffff:1.2.3.4/120", "fe80::1%lo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if !strings.Contains(err.Error(), "prefix") {
				t.Fatalf("error %q does not say what was expected", err)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || !p.Contains(p.Addr()) {
			t.Fatalf("ParsePrefix(%q) = %v", s, p)
		}
		if back, err := ParsePrefix(p.String()); err != nil || back != p {
			t.Fatalf("ParsePrefix(%q) = %v reads back as %v, %v", s, p, back, err)
		}
	})
}
