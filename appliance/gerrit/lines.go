package gerrit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// readLines calls fn for every newline-terminated line of r, without the
// newline (and without a trailing '\r'). A line longer than max bytes is
// not kept: fn gets nil and tooLong, and reading goes on after its newline,
// so one monster event never stops the stream. Memory stays bounded by max.
// A last line without a newline is delivered too. It returns r's error, or
// nil at EOF, or fn's error, whichever comes first.
func readLines(r io.Reader, max int, fn func(line []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	tooLong := false
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(frag) > max+1 { // +1: the newline does not count
				tooLong = true
				buf = nil
			} else {
				buf = append(buf, frag...)
			}
		}
		switch {
		case err == nil: // a whole line
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 && !tooLong {
				return nil
			}
		default:
			return err
		}
		line := bytes.TrimSuffix(bytes.TrimSuffix(buf, []byte("\n")), []byte("\r"))
		var ferr error
		if tooLong {
			ferr = fn(nil, true)
		} else if len(line) <= max {
			ferr = fn(line, false)
		} else {
			ferr = fn(nil, true)
		}
		if ferr != nil {
			return ferr
		}
		if err != nil { // EOF after a last unterminated line
			return nil
		}
		// fn may keep line: start a new buffer rather than reuse it.
		buf, tooLong = nil, false
	}
}
