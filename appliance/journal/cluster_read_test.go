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
// while node 3 catches up returns everything journaled before it began,
// each message once. A read used to end at what that replica had, without
// an error; and on a busy machine a pull that outlived the client's wait
// for it lost the messages it carried (the read consumer acknowledges
// nothing), which the next pull went on after: reads came back without
// their first 170 or 256 messages.
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
			got, prev := 0, uint64(0)
			var skipped [][2]uint64 // ranges of sequences the read went past
			err := js[r%2].History(ctx, "t/#", From{Seq: 1}, 0, func(m Message) error {
				got++
				if m.Seq != prev+1 && len(skipped) < 5 {
					skipped = append(skipped, [2]uint64{prev + 1, m.Seq - 1})
				}
				prev = m.Seq
				return nil
			})
			if err == nil && got != n {
				err = fmt.Errorf("read %d on node %d: %d messages, %d were journaled before it; the last %d, skipped %v", r, r%2+1, got, n, prev, skipped)
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
