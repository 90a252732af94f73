package broker

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
)

// GCPercent is the GOGC TuneGC sets: a fan-out allocates a packet and an
// encode buffer per delivery, all garbage within milliseconds, and at the
// default of 100 the collector's assists took ~20 % of the broker's CPU.
// 200 measured +35 % deliveries/s at 1,000 subscribers and a burst to 10,000
// 20 % faster, for 40 % more peak memory (bench/README.md, "Knobs tried").
const GCPercent = 200

// TuneGC sets the garbage collector for the broker, once, at daemon start:
// GOGC to GCPercent, and a soft memory limit of half the host's memory so
// that the higher GOGC never grows the heap into the host's last gigabytes.
// An operator's GOGC or GOMEMLIMIT in the environment wins over either.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if total := memTotal(); total > 0 {
			debug.SetMemoryLimit(total / 2)
			gcTuned.Store(true)
		}
	}
}

var gcTuned atomic.Bool

// alignGCLimit lowers the collector's soft limit to memory_limit when that
// is below half the host's memory, so that garbage is collected before the
// broker starts refusing clients for memory it would get back. It changes
// nothing unless TuneGC set the limit (the environment's GOMEMLIMIT wins).
func alignGCLimit(memoryLimit int64) {
	if !gcTuned.Load() {
		return
	}
	target := memTotal() / 2
	if memoryLimit > 0 && memoryLimit < target {
		target = memoryLimit
	}
	debug.SetMemoryLimit(target)
}

// memTotal is the host's memory in bytes from /proc/meminfo, or 0.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kib << 10
	}
	return 0
}
