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

// nearest returns the known keys closest to a misspelt key, when they are
// close enough to be what was meant: the fewest single-letter edits
// (insert, delete, replace, swap two neighbours), ignoring case and
// treating '-' as '_', and also ignoring '_' altogether ("maxpacketsize").
// A key of n letters may be off by 1 + n/5 edits.
func nearest(key string, known []string) []string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	bare := func(s string) string { return strings.ReplaceAll(norm(s), "_", "") }
	limit := 1 + len(key)/5
	best := limit + 1
	var out []string
	for _, k := range known {
		d := min(editDistance(norm(key), norm(k)), editDistance(bare(key), bare(k)))
		switch {
		case d < best:
			best, out = d, []string{k}
		case d == best:
			out = append(out, k)
		}
	}
	return out
}

// editDistance is the optimal string alignment distance between a and b,
// counted in bytes (keys are ASCII). Keys are short; a and b are cut at 64
// bytes so that a hostile file costs nothing.
func editDistance(a, b string) int {
	const maxLen = 64
	if len(a) > maxLen {
		a = a[:maxLen]
	}
	if len(b) > maxLen {
		b = b[:maxLen]
	}
	// Three rows: two back for transpositions.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// quoteOr writes ["a", "b", "c"] as "a", "b" or "c".
func quoteOr(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
