package journal

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkAppend is one publisher journaling 1 KiB messages back to back,
// each acknowledged before the next (a QoS 1 publisher's path), and
// reports how long the fan-out consumer takes to deliver them.
func BenchmarkAppend(b *testing.B) {
	cfg := testConfig(b.TempDir())
	cfg.MaxBytes = 1 << 30
	j, err := Open(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	delivered := make(chan uint64, 1<<16)
	if err := j.Start(func(m Message) { delivered <- m.Seq }); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1024)
	b.ResetTimer()
	var last uint64
	var lag time.Duration
	for i := range b.N {
		t0 := time.Now()
		seq, err := j.Append(fmt.Sprintf("gerrit/project/%d/comment-added", i%50), payload, false, 1)
		if err != nil {
			b.Fatal(err)
		}
		for last < seq {
			last = <-delivered
		}
		lag += time.Since(t0)
	}
	b.ReportMetric(float64(lag.Microseconds())/float64(b.N), "µs-to-fan-out")
}
