package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat. It is 100 on every mainstream Linux architecture; Go has
// no portable sysconf(_SC_CLK_TCK).
const clockTicks = 100

// cpuTime returns the CPU time (user + system) a process has used so far,
// from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields are counted from
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM %q", pid, v)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// procsNamed returns the ids of the processes whose command name (comm) is
// one of names.
func procsNamed(names ...string) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		comm, err := os.ReadFile(filepath.Join(d, "comm"))
		if err != nil {
			continue
		}
		c := strings.TrimSpace(string(comm))
		for _, n := range names {
			if c == n {
				pid, _ := strconv.Atoi(filepath.Base(d))
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// cpuSample is the CPU time of a set of processes at one instant.
type cpuSample struct {
	at   time.Time
	cpus map[int]time.Duration
}

func sampleCPU(pids []int) cpuSample {
	s := cpuSample{at: time.Now(), cpus: map[int]time.Duration{}}
	for _, pid := range pids {
		if c, err := cpuTime(pid); err == nil {
			s.cpus[pid] = c
		}
	}
	return s
}

// cpuPercent returns the CPU the processes used between two samples, in
// percent of one core. A process only in the later sample started in
// between: all of its CPU time counts. A process gone by the later sample
// is not counted (its last share is unknown), so the figure is a lower
// bound when processes exit.
func cpuPercent(before, after cpuSample) (float64, bool) {
	if len(after.cpus) == 0 {
		return 0, false
	}
	wall := after.at.Sub(before.at)
	if wall <= 0 {
		return 0, false
	}
	var used time.Duration
	for pid, c := range after.cpus {
		used += c - before.cpus[pid]
	}
	return 100 * used.Seconds() / wall.Seconds(), true
}
