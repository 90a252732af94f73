package gerrit

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type gotLine struct {
	line    string
	tooLong bool
}

func collect(t *testing.T, r io.Reader, max int) ([]gotLine, error) {
	t.Helper()
	var out []gotLine
	err := readLines(r, max, func(line []byte, tooLong bool) error {
		out = append(out, gotLine{string(line), tooLong})
		return nil
	})
	return out, err
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the bufio buffer
	tests := []struct {
		name string
		in   string
		max  int
		want []gotLine
	}{
		{"simple", "a\nb\n", 10, []gotLine{{"a", false}, {"b", false}}},
		{"no final newline", "a\nb", 10, []gotLine{{"a", false}, {"b", false}}},
		{"crlf", "a\r\n", 10, []gotLine{{"a", false}}},
		{"exactly max", "abcd\n", 4, []gotLine{{"abcd", false}}},
		{"over max", "abcde\nok\n", 4, []gotLine{{"", true}, {"ok", false}}},
		{"over max at EOF", "abcde", 4, []gotLine{{"", true}}},
		{"long within max", long + "\nz\n", len(long), []gotLine{{long, false}, {"z", false}}},
		{"long over max", long + "\nz\n", len(long) - 1, []gotLine{{"", true}, {"z", false}}},
		{"empty lines", "\n\n", 4, []gotLine{{"", false}, {"", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				got, err := collect(t, r, tt.max)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tt.want) {
					t.Fatalf("got %d lines, want %d", len(got), len(tt.want))
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("line %d: got %.20q/%v, want %.20q/%v", i, got[i].line, got[i].tooLong, tt.want[i].line, tt.want[i].tooLong)
					}
				}
			}
		})
	}
}

func TestReadLinesError(t *testing.T) {
	boom := errors.New("boom")
	_, err := collect(t, io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)), 10)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
}

// FuzzReadLines checks that joining the lines gives back the input (when no
// line is too long) and that no line exceeds the limit.
func FuzzReadLines(f *testing.F) {
	f.Add([]byte("a\nb\n"), 4)
	f.Add([]byte("abcdef\n\r\n{}"), 3)
	f.Add([]byte{}, 1)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<20 {
			return
		}
		var lines [][]byte
		anyLong := false
		err := readLines(bytes.NewReader(in), max, func(line []byte, tooLong bool) error {
			if len(line) > max {
				t.Fatalf("line of %d bytes, limit %d", len(line), max)
			}
			anyLong = anyLong || tooLong
			lines = append(lines, append([]byte(nil), line...))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if anyLong || bytes.Contains(in, []byte("\r")) {
			return
		}
		joined := bytes.Join(lines, []byte("\n"))
		if want := bytes.TrimSuffix(in, []byte("\n")); !bytes.Equal(joined, want) {
			t.Fatalf("lines %q do not rebuild %q", lines, in)
		}
	})
}
