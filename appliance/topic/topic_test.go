package topic

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{
		"#": true, "a/#": true, "+": true, "+/+/c": true, "a//b": true, "/": true, "$SYS/#": true,
		"": false, "a#": false, "a/#/b": false, "a+/b": false, "a/b+": false, "##": false, "a\x00b": false,
	} {
		if got := ValidFilter(f); got != want {
			t.Errorf("ValidFilter(%q) = %v, want %v", f, got, want)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		f, t string
		want bool
	}{
		{"#", "a/b", true}, {"a/#", "a", true}, {"a/#", "a/b/c", true}, {"a/#", "ab", false},
		{"a/+", "a/b", true}, {"a/+", "a/b/c", false}, {"a/+", "a", false}, {"+/+", "a/b", true},
		{"a/b", "a/b", true}, {"a/b", "a/bc", false}, {"a/+/c", "a//c", true},
		{"#", "$SYS/x", false}, {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true},
		{"zuul/#", "zuul", true}, {"zuul/#", "zuulx/y", false}, {"a/b/#", "a", false},
	} {
		if got := Match(tc.f, tc.t); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.f, tc.t, got, tc.want)
		}
	}
}

func TestEscapeLevel(t *testing.T) {
	for in, want := range map[string]string{
		"openstack/nova": "openstack/nova", "a+b": "a%2Bb", "c#": "c%23", "50%": "50%25",
		"nul\x00": "nul%00", "bad\xffutf8": "bad%FFutf8", "": "", "ünïcode": "ünïcode",
	} {
		if got := EscapeLevel(in); got != want {
			t.Errorf("EscapeLevel(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzEscapeLevel: escaped text is always usable in a topic name, and the
// escaping is reversible.
func FuzzEscapeLevel(f *testing.F) {
	for _, s := range []string{"openstack/nova", "a+b#c", "%2B", "\x00\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := EscapeLevel(s)
		if !utf8.ValidString(e) || strings.ContainsAny(e, "+#\x00") {
			t.Fatalf("EscapeLevel(%q) = %q is not valid in a topic", s, e)
		}
		if s != "" && len(s) < MaxLen/3 && !ValidName(e) {
			t.Fatalf("EscapeLevel(%q) = %q is not a valid topic name", s, e)
		}
		if u := unescape(t, e); u != s {
			t.Fatalf("unescape(EscapeLevel(%q)) = %q", s, u)
		}
	})
}

func unescape(t *testing.T, e string) string {
	var b strings.Builder
	for i := 0; i < len(e); i++ {
		if e[i] == '%' {
			if i+2 >= len(e) {
				t.Fatalf("truncated escape in %q", e)
			}
			var v byte
			for _, c := range []byte(e[i+1 : i+3]) {
				v <<= 4
				switch {
				case c >= '0' && c <= '9':
					v |= c - '0'
				case c >= 'A' && c <= 'F':
					v |= c - 'A' + 10
				default:
					t.Fatalf("bad escape in %q", e)
				}
			}
			b.WriteByte(v)
			i += 2
			continue
		}
		b.WriteByte(e[i])
	}
	return b.String()
}

// FuzzMatch: a valid name always matches itself as a filter, "#" matches
// every name not starting with '$', and Match never panics.
func FuzzMatch(f *testing.F) {
	f.Add("a/+/#", "a/b/c")
	f.Add("$SYS/#", "$SYS/broker")
	f.Fuzz(func(t *testing.T, filter, name string) {
		_ = Match(filter, name)
		if !ValidName(name) {
			return
		}
		if !Match(name, name) {
			t.Fatalf("%q does not match itself", name)
		}
		if name[0] != '$' && !Match("#", name) {
			t.Fatalf("# does not match %q", name)
		}
	})
}
