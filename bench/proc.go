package main

// Readings of a broker process from /proc, and the file-descriptor limit the
// bench raises for itself so that brokers started as children inherit it.

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ. Linux reports 100 on every architecture Go targets;
// reading it for real would need cgo for sysconf(_SC_CLK_TCK).
const clockTicks = 100

// cpuSeconds is user+system CPU time of pid.
func cpuSeconds(pid int) (float64, error) {
	user, sys, err := cpuTimes(pid)
	return user + sys, err
}

// cpuTimes is the user and the system CPU time of pid (fields 14 and 15 of
// stat). The system part is mostly the kernel's work for the broker's
// write(2)s: the same for every broker that makes one write per delivery.
func cpuTimes(pid int) (user, sys float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may contain spaces and parentheses: split after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return float64(ut) / clockTicks, float64(st) / clockTicks, nil
}

// memKiB returns VmRSS and VmHWM (peak RSS) of pid in KiB.
func memKiB(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %v", pid, k, err)
		}
		*dst = n
	}
	return rss, hwm, nil
}

// machineJiffies returns the whole machine's busy and total CPU time from
// the first line of /proc/stat, in clock ticks: what every process used,
// the bench's, the brokers' and anyone else's on a shared machine.
func machineJiffies() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already counted in user and nice).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %v", err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// selfCPUSeconds is the bench's own CPU time: when it is as high as the
// broker's, the load generator, not the broker, may be the bottleneck.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// raiseNoFile lifts RLIMIT_NOFILE to at least want if it can, else to the hard
// limit, and returns the soft limit in force. Setting it explicitly matters:
// os/exec restores the original soft limit in children unless the program set
// one itself, and the brokers need the same headroom as the bench.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Max < want {
		// Root may raise the hard limit; an unprivileged run keeps what it has.
		try := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			return want, nil
		}
	}
	cur := min(want, lim.Max)
	if cur < lim.Cur {
		cur = lim.Cur
	}
	set := syscall.Rlimit{Cur: cur, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &set); err != nil {
		return lim.Cur, err
	}
	return cur, nil
}

// gcStats is what a Go broker's GODEBUG=gctrace=1 lines in its log say: how
// many GC cycles have completed, and the live heap and scannable stacks
// after the latest one.
type gcStats struct {
	cycles   int
	liveMB   float64
	stacksMB float64
}

// gcLine matches the runtime's trace line (runtime/mgc.go, gcMarkTermination):
// "gc 12 @3.4s 1%: ... ms cpu, 120->122->61 MB, 125 MB goal, 1 MB stacks, ...".
var gcLine = regexp.MustCompile(`^gc (\d+) @.* (\d+)->(\d+)->(\d+) MB, (\d+) MB goal, (\d+) MB stacks`)

// gcTrace reads the log at path; a log without trace lines gives zeros.
func gcTrace(path string) gcStats {
	var g gcStats
	b, err := os.ReadFile(path)
	if err != nil {
		return g
	}
	for _, line := range strings.Split(string(b), "\n") {
		m := gcLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		g.cycles++
		g.liveMB, _ = strconv.ParseFloat(m[4], 64)
		g.stacksMB, _ = strconv.ParseFloat(m[6], 64)
	}
	return g
}
