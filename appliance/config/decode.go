package config

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/BurntSushi/toml"
)

// MaxFileSize bounds a config file, and any file it names that is read whole.
const MaxFileSize = 16 << 20

// Load reads, parses and validates the file at path, which must be a
// regular file.
func Load(path string) (*Config, error) {
	src, err := ReadRegular(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, src)
}

// ReadRegular reads the regular file at path. Anything else is refused
// before a byte is read: a named pipe or a device would block a reload for
// ever, or never end. The open itself is non-blocking (opening a FIFO
// otherwise waits for a writer).
func ReadRegular(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, MaxFileSize>>20)
	}
	return b, nil
}

func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fileKind(fi.Mode()))
	}
	return f, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// Parse parses and validates src, naming path in errors.
//
// toml decodes every value, but it reports the line of the last occurrence of
// a key inside [[arrays]] and quietly turns numbers into text, so the tables
// are walked here one key at a time: each error then carries the exact key
// path, and its line is found afterwards by Config.locate.
func Parse(path string, src []byte) (*Config, error) {
	c := Default()
	c.Path, c.src = path, src
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(src), &top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		return nil, &Error{File: path, Msg: err.Error()}
	}
	d := decoder{md: md}
	d.table(top, nil, reflect.ValueOf(c).Elem())
	d.errs = append(d.errs, c.validate()...)
	if err := c.errors(d.errs); err != nil {
		return nil, err
	}
	return c, nil
}

// fieldError is an error at a key path, before its line is known.
type fieldError struct {
	key Key
	msg string
}

type decoder struct {
	md   toml.MetaData
	errs []fieldError
}

func (d *decoder) fail(k Key, format string, args ...any) {
	d.errs = append(d.errs, fieldError{k, fmt.Sprintf(format, args...)})
}

// table decodes the keys of one TOML table into the struct dst.
func (d *decoder) table(t map[string]toml.Primitive, path Key, dst reflect.Value) {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kp := path.Append(k)
		f, ok := fieldByTag(dst, k)
		if !ok {
			d.fail(kp, "unknown key%s", suggest(dst.Type(), k))
			continue
		}
		d.value(t[k], kp, f)
	}
}

func (d *decoder) value(p toml.Primitive, k Key, f reflect.Value) {
	if f.Kind() == reflect.Struct && !isText(f) {
		var sub map[string]toml.Primitive
		if err := d.md.PrimitiveDecode(p, &sub); err != nil {
			d.fail(k, "must be a table ([%s])", k)
			return
		}
		d.table(sub, k, f)
		return
	}
	if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct {
		var elems []map[string]toml.Primitive
		if err := d.md.PrimitiveDecode(p, &elems); err != nil {
			d.fail(k, "must be written as [[%s]] tables", k)
			return
		}
		out := reflect.MakeSlice(f.Type(), len(elems), len(elems))
		for i, e := range elems {
			el := out.Index(i)
			if def, ok := el.Addr().Interface().(interface{ setDefaults() }); ok {
				def.setDefaults()
			}
			d.table(e, k.Append(i), el)
		}
		f.Set(out)
		return
	}
	var raw any
	if err := d.md.PrimitiveDecode(p, &raw); err != nil {
		d.fail(k, "%v", err)
		return
	}
	if isText(f) {
		// A size may also be a plain number of bytes.
		if n, ok := raw.(int64); ok && f.Type() == reflect.TypeFor[Size]() {
			f.SetInt(n)
			return
		}
		if _, ok := raw.(string); !ok {
			d.fail(k, "must be %s, not %s", article(describe(f.Type())), tomlType(raw))
			return
		}
	}
	v := reflect.New(f.Type())
	if err := d.md.PrimitiveDecode(p, v.Interface()); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) && isText(f) {
			d.fail(k, "%s", pe.Message)
		} else {
			d.fail(k, "must be %s, not %s", article(describe(f.Type())), tomlType(raw))
		}
		return
	}
	f.Set(v.Elem())
}

var textType = reflect.TypeFor[encoding.TextUnmarshaler]()

func isText(f reflect.Value) bool { return reflect.PointerTo(f.Type()).Implements(textType) }

func fieldByTag(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// suggest names the known key closest to a misspelt one.
func suggest(t reflect.Type, key string) string {
	var known []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" && tag != "-" {
			known = append(known, tag)
		}
	}
	if near := nearest(key, known); len(near) > 0 {
		return fmt.Sprintf(" (did you mean %s?)", quoteOr(near))
	}
	return fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
}

func describe(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return `duration string such as "10s"`
	case reflect.TypeFor[Rate]():
		return `rate string such as "50/second"`
	case reflect.TypeFor[SyncPolicy]():
		return `string such as "1s" or "always"`
	case reflect.TypeFor[Size]():
		return `size such as "8MiB" or a number of bytes`
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int:
		return "integer"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Slice:
		return "list of " + describe(t.Elem()) + "s"
	}
	return t.String()
}

func article(s string) string {
	if strings.IndexByte("aeiou", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + s
}

func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + strconv.Quote(v)
	case int64:
		return "the integer " + strconv.FormatInt(v, 10)
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// ControlSocket returns the [control] socket of the file at path, for the
// commands that look for a running daemon. Unlike Load it checks nothing
// else and gets past errors elsewhere in the file, even TOML syntax errors,
// since a daemon whose file was broken after it started is still running on
// the socket named there.
func ControlSocket(path string) (string, error) {
	src, err := ReadRegular(path)
	if err != nil {
		return "", err
	}
	return controlSocket(src), nil
}

func controlSocket(src []byte) string {
	def := Default().Control.Socket
	var f struct {
		Control struct {
			Socket any `toml:"socket"`
		} `toml:"control"`
	}
	if _, err := toml.Decode(string(src), &f); err == nil {
		if s, ok := f.Control.Socket.(string); ok {
			return s
		}
		return def
	}
	// Not TOML: look for the line, the way a reader of the file would.
	table := ""
	for line := range strings.Lines(string(src)) {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") {
			table, _, _ = strings.Cut(strings.Trim(l, "[ \t"), "]")
			table = strings.TrimSpace(table)
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if (table == "control" && k == "socket") || (table == "" && k == "control.socket") {
			var s struct {
				V string `toml:"v"`
			}
			if _, err := toml.Decode("v = "+strings.TrimSpace(v), &s); err == nil {
				return s.V
			}
		}
	}
	return def
}
