package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memory is the peak resident memory of a server's process tree.
type memory struct {
	Procs   int   // processes in the tree
	MaxKiB  int64 // largest single VmHWM (peak RSS)
	SumKiB  int64 // sum of VmHWM; counts shared memory once per process
	MainKiB int64 // VmHWM of the started process itself
}

func (m memory) String() string {
	return fmt.Sprintf("peak RSS main %.1f MiB, largest %.1f MiB, sum %.1f MiB over %d processes",
		mib(m.MainKiB), mib(m.MaxKiB), mib(m.SumKiB), m.Procs)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// treeMemory reads VmHWM of root and all its descendants from procfs.
func treeMemory(procfs string, root int) (memory, error) {
	pids, err := descendants(procfs, root)
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, pid := range append([]int{root}, pids...) {
		b, err := os.ReadFile(filepath.Join(procfs, strconv.Itoa(pid), "status"))
		if err != nil {
			continue // exited meanwhile
		}
		kib, err := parseVmHWM(b)
		if err != nil {
			return memory{}, fmt.Errorf("pid %d: %w", pid, err)
		}
		m.Procs++
		m.SumKiB += kib
		m.MaxKiB = max(m.MaxKiB, kib)
		if pid == root {
			m.MainKiB = kib
		}
	}
	if m.Procs == 0 {
		return m, fmt.Errorf("%w: pid %d", errExited, root)
	}
	return m, nil
}

// parseVmHWM returns the "VmHWM:" value of a /proc/PID/status file in KiB.
func parseVmHWM(status []byte) (int64, error) { return statusField(status, "VmHWM:") }

// statusField returns the value in KiB of the line "name  N kB" of a
// /proc/PID/status or smaps_rollup file.
func statusField(b []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse %s %q", name, rest)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s line", name)
}

// parsePPID returns the parent pid from the contents of /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so the
// fields are counted after its last ')'.
func parsePPID(stat []byte) (int, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse stat: no ')'")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("parse stat: %d fields after the name", len(f))
	}
	return strconv.Atoi(f[1])
}

// descendants lists all processes below root.
func descendants(procfs string, root int) ([]int, error) {
	entries, err := os.ReadDir(procfs)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procfs, err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procfs, e.Name(), "stat"))
		if err != nil {
			continue
		}
		ppid, err := parsePPID(b)
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// parseCPU returns utime+stime+cutime+cstime from /proc/PID/stat contents.
func parseCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse stat: no ')'")
	}
	// Fields after the name start at field 3 (state); utime is field 14.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 15 {
		return 0, fmt.Errorf("parse stat: %d fields after the name", len(f))
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse stat cpu times: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// treeCPU returns the CPU time used so far by root and its descendants.
func treeCPU(procfs string, root int) (time.Duration, error) {
	pids, err := descendants(procfs, root)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range append([]int{root}, pids...) {
		b, err := os.ReadFile(filepath.Join(procfs, strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		d, err := parseCPU(b)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		total += d
	}
	return total, nil
}

// treePss returns the proportional set size of root and all its
// descendants in KiB: each process's resident pages, shared ones divided
// among the processes that map them, so that the sum counts Kamailio's
// shared memory once.
func treePss(procfs string, root int) (int64, error) {
	pids, err := descendants(procfs, root)
	if err != nil {
		return 0, err
	}
	var sum int64
	n := 0
	for _, pid := range append([]int{root}, pids...) {
		b, err := os.ReadFile(filepath.Join(procfs, strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			continue // exited meanwhile
		}
		kib, err := statusField(b, "Pss:")
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum += kib
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: pid %d", errExited, root)
	}
	return sum, nil
}
