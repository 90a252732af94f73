package main

// Exact latency percentiles. Every delivery's latency is kept (8 bytes each;
// a million deliveries are 8 MB), so p50, p99 and max are order statistics
// of the samples themselves, not bucket estimates. Each subscriber appends to
// its own slice, preallocated for the run, so recording takes no lock and no
// allocation.

import (
	"slices"
)

// latencyStats are order statistics of one run's deliveries, in ns.
type latencyStats struct {
	N   int
	P50 int64
	P99 int64
	Max int64
}

// percentile returns the nearest-rank quantile of sorted, q given in parts
// per ten thousand (5000 = p50, 9900 = p99): the smallest sample with at
// least q/10000 of all samples at or below it, i.e. sorted[ceil(q·N)-1].
// Integer arithmetic keeps the rank exact at every N. sorted must be
// ascending and not empty.
func percentile(sorted []int64, q int) int64 {
	n := len(sorted)
	rank := (q*n + 9999) / 10000
	rank = max(1, min(n, rank))
	return sorted[rank-1]
}

// computeLatency merges the per-subscriber samples, sorts them and takes the
// order statistics. The inputs are left untouched.
func computeLatency(perSub [][]int64) latencyStats {
	total := 0
	for _, s := range perSub {
		total += len(s)
	}
	if total == 0 {
		return latencyStats{}
	}
	all := make([]int64, 0, total)
	for _, s := range perSub {
		all = append(all, s...)
	}
	slices.Sort(all)
	return latencyStats{N: total, P50: percentile(all, 5000), P99: percentile(all, 9900), Max: all[total-1]}
}
