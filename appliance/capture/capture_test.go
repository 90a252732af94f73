package capture

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// Written from many goroutines and read meanwhile (the race detector
// checks the locking), every write is kept whole.
func TestBufferConcurrent(t *testing.T) {
	var c Buffer
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				fmt.Fprintf(&c, "g=%d i=%d\n", g, i)
				_ = c.String()
			}
		}()
	}
	wg.Wait()
	if n := len(c.Lines("g=")); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
	if got := c.Lines("g=3 ", "i=42"); !slices.Equal(got, []string{"g=3 i=42"}) {
		t.Fatalf("Lines(g=3, i=42) = %q", got)
	}
}
