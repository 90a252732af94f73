package main

// A fixed-size log-linear latency histogram. Deliveries run at up to ~10^5
// per second across thousands of goroutines, so recording must be one atomic
// add with no allocation and no lock; shards keep the adds off one cache line.

import (
	"math/bits"
	"sync/atomic"
)

const (
	histSubBits = 5                // 32 sub-buckets per power of two: ≤ 3 % error
	histLinear  = 2 << histSubBits // values below this are exact (µs)
	histMaxLen  = 40               // 2^40 µs ≈ 12 days: nothing real exceeds it
	histBuckets = histLinear + (histMaxLen-histSubBits-1)*(1<<histSubBits)
	histShards  = 16
)

// histogram counts latencies in microseconds.
type histogram struct {
	shards [histShards][histBuckets]atomic.Uint64
}

func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	l := bits.Len64(us)
	if l > histMaxLen {
		l = histMaxLen
		us = 1<<histMaxLen - 1
	}
	shift := l - histSubBits - 1
	top := us >> shift // in [32, 63]
	return histLinear + (l-histSubBits-2)*(1<<histSubBits) + int(top-(1<<histSubBits))
}

// bucketMid is a representative value for bucket i: the middle of its range.
func bucketMid(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	k := i - histLinear
	l := k/(1<<histSubBits) + histSubBits + 2
	top := uint64(k%(1<<histSubBits) + 1<<histSubBits)
	shift := l - histSubBits - 1
	lo := top << shift
	hi := (top+1)<<shift - 1
	return (lo + hi) / 2
}

func (h *histogram) record(shard int, us int64) {
	if us < 0 {
		us = 0 // clocks are monotonic, but stay safe
	}
	h.shards[shard%histShards][bucketOf(uint64(us))].Add(1)
}

// merged sums the shards.
func (h *histogram) merged() []uint64 {
	out := make([]uint64, histBuckets)
	for s := range h.shards {
		for i := range h.shards[s] {
			out[i] += h.shards[s][i].Load()
		}
	}
	return out
}

// quantile returns the q-quantile (0 < q ≤ 1) in µs, or 0 when empty.
func quantile(counts []uint64, q float64) uint64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	target := uint64(q * float64(total))
	if target < 1 {
		target = 1
	}
	var cum uint64
	for i, c := range counts {
		cum += c
		if cum >= target {
			return bucketMid(i)
		}
	}
	return bucketMid(len(counts) - 1)
}
