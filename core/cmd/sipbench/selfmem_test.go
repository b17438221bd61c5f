package main

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseGoHeap(t *testing.T) {
	const exposition = `# HELP go_gc_cycles_total_gc_cycles_total Count of all completed GC cycles.
# TYPE go_gc_cycles_total_gc_cycles_total counter
go_gc_cycles_total_gc_cycles_total 42
# HELP go_gc_heap_live_bytes Heap memory occupied by live objects that were marked by the previous GC.
# TYPE go_gc_heap_live_bytes gauge
go_gc_heap_live_bytes 1.4680064e+07
go_gc_heap_live_bytes_other{x="y"} 1
go_memstats_heap_alloc_bytes 9.9e+07
`
	got, err := parseGoHeap([]byte(exposition))
	if err != nil {
		t.Fatalf("parseGoHeap() = %v", err)
	}
	if got.Bytes != 14680064 || got.Mark != 42 || got.Pkg != -1 {
		t.Errorf("parseGoHeap() = %+v, want 14680064 bytes of mark 42", got)
	}
	for _, tc := range []struct{ name, give, wantErr string }{
		{"no live heap", "go_gc_cycles_total_gc_cycles_total 3\ngo_memstats_heap_alloc_bytes 1\n", metricHeapLive},
		{"no cycles", "go_gc_heap_live_bytes 100\n", metricGCCycles},
		{"empty", "", metricHeapLive},
		{"bad value", "go_gc_heap_live_bytes lots\ngo_gc_cycles_total_gc_cycles_total 3\n", "bad value"},
		{"negative", "go_gc_heap_live_bytes -5\ngo_gc_cycles_total_gc_cycles_total 3\n", "bad value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseGoHeap([]byte(tc.give))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("parseGoHeap() = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
	if _, err := parseGoHeap([]byte("go_gc_cycles_total_gc_cycles_total 3\n")); !errors.Is(err, errNoMemMetric) {
		t.Errorf("parseGoHeap() without the metric = %v, want errNoMemMetric", err)
	}
}

// kamcmd 5.6's printing of core.shmmem and pkg.stats.
const (
	kamcmdShmmem = `{
	total: 67108864
	free: 66487152
	used: 381776
	real_used: 621712
	max_used: 621712
	fragments: 1
}
`
	kamcmdPkgStats = `{
	entry: 0
	pid: 22111
	rank: 0
	used: 408504
	free: 7710632
	real_used: 677976
	total_size: 8388608
	total_frags: 2
	desc: main process - attendant
}
{
	entry: 1
	pid: 22113
	rank: 1
	used: 408688
	free: 7710240
	real_used: 678368
	total_size: 8388608
	total_frags: 3
	desc: udp receiver child=0 sock=127.0.0.1:15099
}
`
)

func TestParseKamcmd(t *testing.T) {
	shm, err := parseKamcmd([]byte(kamcmdShmmem))
	if err != nil {
		t.Fatalf("parseKamcmd(shmmem) = %v", err)
	}
	if n, err := kamcmdField(shm, "core.shmmem", "real_used"); err != nil || n != 621712 {
		t.Errorf("real_used = %d, %v, want 621712", n, err)
	}
	pkg, err := parseKamcmd([]byte(kamcmdPkgStats))
	if err != nil {
		t.Fatalf("parseKamcmd(pkg.stats) = %v", err)
	}
	if len(pkg) != 2 || pkg[1]["desc"] != "udp receiver child=0 sock=127.0.0.1:15099" {
		t.Errorf("pkg.stats = %v, want two processes, the desc with its colons kept", pkg)
	}
	if n, err := kamcmdSum(pkg, "pkg.stats", "real_used"); err != nil || n != 677976+678368 {
		t.Errorf("pkg real_used sum = %d, %v, want %d", n, err, 677976+678368)
	}
	if _, err := kamcmdField(shm, "core.shmmem", "nonesuch"); err == nil || !strings.Contains(err.Error(), "no nonesuch") {
		t.Errorf("kamcmdField(missing) = %v, want an error naming the member", err)
	}
	if _, err := kamcmdField([]map[string]string{{"real_used": "-3"}}, "core.shmmem", "real_used"); err == nil {
		t.Error("kamcmdField(-3) passed, want an error")
	}
	for _, bad := range []string{
		"",
		"error: 500 - command core.shmmem not found\n",
		"{\n\ttotal: 1\n",
		"}\n",
		"{\n{\n",
		"{\n\tnot a member\n}\n",
	} {
		if _, err := parseKamcmd([]byte(bad)); err == nil {
			t.Errorf("parseKamcmd(%q) passed, want an error", bad)
		}
	}
}

func TestFreshFilter(t *testing.T) {
	var f freshFilter
	var kept []int64
	// The first reading's mark may predate the window; then each new
	// mark once, even when one was skipped.
	for _, mark := range []int64{7, 7, 8, 8, 8, 10, 10, 11} {
		if f.keep(memSample{Bytes: mark * 100, Mark: mark}) {
			kept = append(kept, mark)
		}
	}
	if want := []int64{8, 10, 11}; !equalInts(kept, want) {
		t.Errorf("kept marks %v, want %v", kept, want)
	}
	var exact freshFilter
	for range 3 {
		if !exact.keep(memSample{Bytes: 1, Mark: -1}) {
			t.Fatal("an exact reading was dropped")
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMedianOf(t *testing.T) {
	bytes := func(s memSample) int64 { return s.Bytes }
	for _, tc := range []struct {
		give             []int64
		median, wantSpan int64
	}{
		{[]int64{5}, 5, 0},
		{[]int64{9, 1, 5}, 5, 8},
		{[]int64{4, 1, 3, 2}, 2, 3}, // (2+3)/2, rounded down
		{[]int64{10, 30, 20, 1000, 25}, 25, 990},
		{nil, -1, -1},
		{[]int64{3, -1}, -1, -1}, // one unknown: the median is unknown
	} {
		var samples []memSample
		for _, v := range tc.give {
			samples = append(samples, memSample{Bytes: v})
		}
		if m, span := medianOf(samples, bytes); m != tc.median || span != tc.wantSpan {
			t.Errorf("medianOf(%v) = %d, %d, want %d, %d", tc.give, m, span, tc.median, tc.wantSpan)
		}
	}
	f := newSelfFigure("Go live heap", []memSample{{Bytes: 10, Pkg: -1}, {Bytes: 12, Pkg: -1}, {Bytes: 11, Pkg: -1}},
		[]memSample{{Bytes: 40, Pkg: -1}, {Bytes: 1000, Pkg: -1}, {Bytes: 41, Pkg: -1}})
	if f.Idle != 11 || f.Active != 41 || f.IdleN != 3 || f.ActiveN != 3 || f.ActiveSpan != 960 || f.PkgIdle != -1 {
		t.Errorf("newSelfFigure() = %+v, want medians 11 and 41 of 3 each, no pkg", f)
	}
	if got := perCallKiB(10<<20, 28<<20, 1800); got != 10.24 {
		t.Errorf("perCallKiB(18 MiB over 1800) = %v, want 10.24", got)
	}
	if got := perCallKiB(1, 2, 0); !math.IsNaN(got) {
		t.Errorf("perCallKiB without calls = %v, want NaN", got)
	}
	if got := perCallKiB(-1, 2, 10); !math.IsNaN(got) {
		t.Errorf("perCallKiB of an unknown = %v, want NaN", got)
	}
}

// fakeProbe is a server whose GC marks every third read.
type fakeProbe struct {
	reads   int
	nudged  chan struct{}
	noMarks bool
}

func (p *fakeProbe) probe(exact bool) *memProbe {
	mp := &memProbe{kind: "test", exact: exact, read: func() (memSample, error) {
		p.reads++
		if exact {
			return memSample{Bytes: int64(p.reads), Mark: -1, Pkg: -1}, nil
		}
		mark := int64(p.reads / 3)
		if p.noMarks {
			mark = 0
		}
		return memSample{Bytes: 1000 + mark, Mark: mark, Pkg: -1}, nil
	}}
	if !exact {
		mp.nudge = func(ctx context.Context) { close(p.nudged); <-ctx.Done() }
	}
	return mp
}

func TestSampleMemory(t *testing.T) {
	ctx := context.Background()
	w := memWindow{want: 3, poll: time.Millisecond, window: 5 * time.Second}

	gc := &fakeProbe{nudged: make(chan struct{})}
	got, err := sampleMemory(ctx, gc.probe(false), w)
	if err != nil {
		t.Fatalf("sampleMemory() = %v", err)
	}
	// Reads 1, 2 are of mark 0 (the first seen), 3 of mark 1, 6 of 2, 9 of 3.
	if len(got) != 3 || got[0].Mark != 1 || got[1].Mark != 2 || got[2].Mark != 3 || gc.reads != 9 {
		t.Errorf("sampleMemory() = %+v after %d reads, want marks 1, 2, 3 after 9", got, gc.reads)
	}
	select {
	case <-gc.nudged:
	default:
		t.Error("the server was not nudged while sampled")
	}

	// No GC in the window: an error, not the stale mark.
	stale := &fakeProbe{nudged: make(chan struct{}), noMarks: true}
	if _, err := sampleMemory(ctx, stale.probe(false), memWindow{want: 3, poll: time.Millisecond, window: 50 * time.Millisecond}); !errors.Is(err, errNoMemMetric) {
		t.Errorf("sampleMemory() without a fresh mark = %v, want errNoMemMetric", err)
	}

	// Exact reads are all kept, spread over the window by exactPoll.
	exact := &fakeProbe{}
	t0 := time.Now()
	got, err = sampleMemory(ctx, exact.probe(true), memWindow{want: 3, poll: time.Millisecond, exactPoll: 40 * time.Millisecond, window: 5 * time.Second})
	if err != nil || len(got) != 3 || got[2].Bytes != 3 {
		t.Errorf("sampleMemory(exact) = %+v, %v, want the 3 reads", got, err)
	}
	if d := time.Since(t0); d < 80*time.Millisecond {
		t.Errorf("3 exact reads took %v, want them 40ms apart", d)
	}

	// A read that fails fails the sampling.
	bad := &memProbe{kind: "test", read: func() (memSample, error) { return memSample{}, errors.New("kamcmd: connection refused") }}
	if _, err := sampleMemory(ctx, bad, w); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("sampleMemory(failing) = %v, want its error", err)
	}
}

func TestPlanActive(t *testing.T) {
	p := planActive(2000, 20*time.Second)
	// 2,000 calls in 5 s; the plateau from 11 s to 19 s, 1 s before the
	// first BYE at 20 s.
	if p.rate != 400 || p.calls != 2000 || p.settle != 11*time.Second || p.plateau.window != 8*time.Second || p.plateau.want != 5 {
		t.Errorf("planActive(2000, 20s) = %+v", p)
	}
	if p := planActive(2000, minActiveHold); p.plateau.window < 2*time.Second {
		t.Errorf("planActive at the shortest hold leaves %v of plateau, want ≥ 2s", p.plateau.window)
	}
}

// Kamailio's config loads ctl (and kex, for pkg.stats) on a socket in the
// run's directory, where memProbe's kamcmd reads it.
func TestKamailioCtlSocket(t *testing.T) {
	dir := t.TempDir()
	k := kamailioServer{bin: "kamailio", cfg: kamailioConfig{Children: 2, TCPChildren: 2, ModuleDir: "/mods"}}
	if _, _, err := k.command(dir, 5090, workload{}); err != nil {
		t.Fatalf("command() = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "kamailio.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`loadmodule "ctl.so"`, `loadmodule "kex.so"`, `modparam("ctl", "binrpc", "unix:` + filepath.Join(dir, kamailioCtl) + `")`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("kamailio.cfg has no %s:\n%s", want, b)
		}
	}
	k.kamcmd = "/nonexistent/kamcmd"
	if _, err := k.memProbe(dir, 5090); !errors.Is(err, errNoMemMetric) || !strings.Contains(err.Error(), "kamcmd") {
		t.Errorf("memProbe() without kamcmd = %v, want errNoMemMetric naming kamcmd", err)
	}
}

// edged's probe needs the admin address of the config it was started
// with: a config without one is an error that names the key, and one that
// does not parse an error that says why.
func TestEdgedMemProbeConfig(t *testing.T) {
	for _, tc := range []struct {
		name, give, want string
	}{
		{"no admin listen", "[sip]\nudp_port = 5060\n", "admin.listen"},
		{"not TOML", "[admin\n", "edged.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "edged.toml"), []byte(tc.give), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := edgedServer{}.memProbe(dir, 5060)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "<nil>") {
				t.Errorf("memProbe() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "edged.toml"), []byte("[admin]\nlisten = \"127.0.0.1:9\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := (edgedServer{}).memProbe(dir, 5060); err != nil || p.kind != "Go live heap" {
		t.Errorf("memProbe() = %+v, %v", p, err)
	}
}
