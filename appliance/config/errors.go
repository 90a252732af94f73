package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Key is a path to a value: table and key names, and indexes into [[arrays]].
// Key{"publisher", 1, "topics"} is written publisher[1].topics.
type Key []any

// Append returns a new Key with parts added.
func (k Key) Append(parts ...any) Key {
	return append(append(Key{}, k...), parts...)
}

func (k Key) String() string {
	var b strings.Builder
	for i, p := range k {
		switch p := p.(type) {
		case int:
			b.WriteString("[" + strconv.Itoa(p) + "]")
		default:
			if i > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, p)
		}
	}
	return b.String()
}

// Error is one problem in a config file. Line is 0 when unknown.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorAt returns an error about the value at key, located in the file. Other
// packages use it for problems they find while building from the config (a
// certificate that does not load, a key file that does not parse).
func (c *Config) ErrorAt(key Key, format string, args ...any) error {
	return &Error{File: c.Path, Line: c.locate(key), Key: key.String(), Msg: fmt.Sprintf(format, args...)}
}

// errors turns field errors into one error, sorted by line, or nil.
func (c *Config) errors(fes []fieldError) error {
	if len(fes) == 0 {
		return nil
	}
	errs := make([]*Error, len(fes))
	for i, fe := range fes {
		errs[i] = &Error{File: c.Path, Line: c.locate(fe.key), Key: fe.key.String(), Msg: fe.msg}
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// locate finds the line where key is written, or where its nearest written
// parent is (a missing key is reported at its table's header). It asks the
// TOML parser itself about ever longer prefixes of the file, so it agrees with
// the parser on every syntax; it runs only when there is an error to report.
func (c *Config) locate(key Key) int {
	if len(c.src) == 0 {
		return 0
	}
	lines := strings.SplitAfter(string(c.src), "\n")
	for k := key; len(k) > 0; k = k[:len(k)-1] {
		prefix := ""
		for n, l := range lines {
			prefix += l
			var m map[string]any
			if _, err := toml.Decode(prefix, &m); err != nil {
				continue
			}
			v, ok := lookup(m, k)
			if !ok {
				continue
			}
			if _, isIndex := k[len(k)-1].(int); isIndex {
				if _, isTable := v.(map[string]any); !isTable {
					// An element of a value list: the list is complete only at
					// its last line, so find the element's own line in it.
					return elementLine(lines, startOf(lines, n, k[:len(k)-1]), n, v)
				}
			}
			return startOf(lines, n, k)
		}
	}
	return 0
}

// elementLine finds the line, between the list's first and last, holding
// element v; failing that, the list's first line.
func elementLine(lines []string, first, last int, v any) int {
	var text string
	switch v := v.(type) {
	case string:
		text = v
	case int64:
		text = strconv.FormatInt(v, 10)
	default:
		return first
	}
	for i := first - 1; i <= last && i < len(lines); i++ {
		if strings.Contains(lines[i], text) && (i > first-1 || strings.Count(lines[i], text) == 1) {
			return i + 1
		}
	}
	return first
}

// startOf walks back from line n (0-based, where the value became complete)
// to the line that names the key, for values spanning several lines.
func startOf(lines []string, n int, k Key) int {
	name, ok := k[len(k)-1].(string)
	if !ok {
		return n + 1
	}
	for i := n; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, name) || strings.HasPrefix(l, `"`+name+`"`) || strings.HasPrefix(l, "["+name) || strings.HasPrefix(l, "[["+name) {
			return i + 1
		}
	}
	return n + 1
}

func lookup(v any, k Key) (any, bool) {
	for _, p := range k {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[p]; !ok {
				return nil, false
			}
		case int:
			switch a := v.(type) {
			case []map[string]any:
				if p >= len(a) {
					return nil, false
				}
				v = a[p]
			case []any:
				if p >= len(a) {
					return nil, false
				}
				v = a[p]
			default:
				return nil, false
			}
		}
	}
	return v, true
}
