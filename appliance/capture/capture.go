// Package capture keeps what a part under test, or a process a test runs,
// writes (its log, its stdout), so that the test can read it while the
// writing goes on. Only tests import it.
package capture

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is an io.Writer that is safe to read from while it is written.
// Its zero value is empty and ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *Buffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

// String returns everything written so far.
func (c *Buffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// Lines returns the lines written so far that contain every one of with.
func (c *Buffer) Lines(with ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(c.String(), "\n") {
		for _, w := range with {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}
