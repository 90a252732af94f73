package journal

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterHistoryReplicaBehind: a read is served by a consumer the
// cluster places on any replica of the stream, including one that is
// behind its leader (a node just restarted, catching up). Every read made
// while node 3 catches up returns everything journaled before it began:
// it used to end at what that replica had, without an error.
func TestClusterHistoryReplicaBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	js, _, cfgs := openClusterWith(t, 3, nil)
	js[2].Close()
	const n = 3000
	payload := strings.Repeat("x", 512)
	for i := range n {
		if _, err := js[i%2].Append("t/x", []byte(payload), false, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Node 3 comes back behind by n messages; reads start at once, on both
	// other nodes, while it catches up.
	open(t, cfgs[2])
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for r := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			got := 0
			err := js[r%2].History(ctx, "t/#", From{Seq: 1}, 0, func(Message) error { got++; return nil })
			if err == nil && got != n {
				err = fmt.Errorf("read %d on node %d: %d messages, %d were journaled before it", r, r%2+1, got, n)
			}
			errs <- err
		}()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
