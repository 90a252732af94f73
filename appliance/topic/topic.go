// Package topic owns MQTT topic syntax as the appliance uses it: which names
// and filters are valid, whether a filter matches a name, and how arbitrary
// text (a Gerrit project, an event type) is made into a valid topic level.
// It is pure string work with no allocation on the matching path.
package topic

import (
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest topic MQTT can carry (a two-byte length prefix).
const MaxLen = 65535

// ValidName reports whether s may be published to: non-empty, UTF-8, no NUL,
// no wildcards.
func ValidName(s string) bool {
	if s == "" || len(s) > MaxLen || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsAny(s, "+#\x00")
}

// ValidFilter reports whether s is a valid subscription or ACL filter: '#'
// only as the whole last level, '+' only as a whole level.
func ValidFilter(s string) bool {
	if s == "" || len(s) > MaxLen || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return false
	}
	for rest := s; ; {
		level, tail, more := strings.Cut(rest, "/")
		if strings.ContainsAny(level, "+#") && len(level) != 1 {
			return false
		}
		if level == "#" && more {
			return false
		}
		if !more {
			return true
		}
		rest = tail
	}
}

// Match reports whether topic name t is matched by filter f. As MQTT requires,
// a filter starting with a wildcard does not match names starting with '$'.
func Match(f, t string) bool {
	if len(t) > 0 && t[0] == '$' && len(f) > 0 && (f[0] == '+' || f[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// "a/#" also matches "a": the '#' stands for the parent level too.
			return fmore == tmore || (fmore && frest == "#")
		}
		f, t = frest, trest
	}
}

// EscapeLevel makes arbitrary text usable inside a topic name: '+', '#', NUL
// and '%' itself are percent-encoded ("%2B", "%23", "%00", "%25"), so the
// mapping is reversible, and invalid UTF-8 bytes are encoded the same way.
// '/' is kept: it deliberately splits a value such as a project name
// "openstack/nova" into levels. Text that needs no escaping is returned as is.
func EscapeLevel(s string) string {
	if !needsEscape(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c == '+' || c == '#' || c == 0 || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			i++
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	return strings.ContainsAny(s, "+#%\x00") || !utf8.ValidString(s)
}
