package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestParseVmHWM(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    int64
		wantErr bool
	}{
		{name: "status file", give: "Name:\tkamailio\nVmPeak:\t  90000 kB\nVmHWM:\t    7480 kB\nVmRSS:\t    7000 kB\n", want: 7480},
		{name: "missing", give: "Name:\tkthreadd\n", wantErr: true},
		{name: "odd unit", give: "VmHWM:\t 7 MB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVmHWM([]byte(tt.give))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseVmHWM() = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParsePPID(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    int
		wantErr bool
	}{
		{name: "plain", give: "5644 (kamailio) S 5641 5641 1 0", want: 5641},
		{name: "name with spaces and parens", give: "77 (my (odd) name) R 12 77 1 0", want: 12},
		{name: "truncated", give: "77 (x) R", wantErr: true},
		{name: "garbage", give: "nothing here", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePPID([]byte(tt.give))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parsePPID() = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestTreeMemory builds a fake procfs: 10 -> 11 -> 13, 10 -> 12, and an
// unrelated 20.
func TestTreeMemory(t *testing.T) {
	procfs := t.TempDir()
	write := func(pid, ppid int, hwm int64) {
		dir := filepath.Join(procfs, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (p) S " + strconv.Itoa(ppid) + " 1 1 0"
		status := "Name:\tp\nVmHWM:\t" + strconv.FormatInt(hwm, 10) + " kB\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
		// smaps_rollup: shared pages split, so PSS is below the RSS.
		rollup := "00400000-7ffd0000 ---p 00000000 00:00 0 [rollup]\nRss:\t" + strconv.FormatInt(hwm, 10) +
			" kB\nPss:\t" + strconv.FormatInt(hwm/2, 10) + " kB\nPss_Anon:\t1 kB\n"
		if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(10, 1, 1000)
	write(11, 10, 3000)
	write(12, 10, 500)
	write(13, 11, 200)
	write(20, 1, 99999)
	if err := os.MkdirAll(filepath.Join(procfs, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	m, err := treeMemory(procfs, 10)
	if err != nil {
		t.Fatalf("treeMemory() = %v", err)
	}
	if want := (memory{Procs: 4, MaxKiB: 3000, SumKiB: 4700, MainKiB: 1000}); m != want {
		t.Errorf("treeMemory() = %+v, want %+v", m, want)
	}
	if _, err := treeMemory(procfs, 99); err == nil {
		t.Errorf("treeMemory() of a missing pid = nil error")
	}
	pss, err := treePss(procfs, 10)
	if err != nil || pss != 2350 {
		t.Errorf("treePss() = %d, %v; want 2350", pss, err)
	}
	if _, err := treePss(procfs, 99); err == nil {
		t.Errorf("treePss() of a missing pid = nil error")
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    time.Duration
		wantErr bool
	}{
		{
			name: "utime stime cutime cstime",
			give: "5644 (kamailio) S 5641 5641 1 0 -1 4194560 500 0 0 0 150 50 3 7 20 0 1 0 100 84324 1277",
			want: 2100 * time.Millisecond,
		},
		{name: "truncated", give: "5644 (kamailio) S 5641 5641 1 0", wantErr: true},
		{name: "not a number", give: "1 (x) S 0 0 0 0 0 0 0 0 0 0 a 0 0 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPU([]byte(tt.give))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseCPU() = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
