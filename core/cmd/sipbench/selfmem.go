package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// What a server says of its own memory, beside the PSS the OS sees.
//
// PSS is what a box must have, but for edged, a garbage-collected
// process, its growth over ~1,800 calls moved tenfold between passes of
// one run (17.8 vs 1.8 KiB per call): it holds whatever garbage the last
// GC left and the heap the runtime has not returned yet. What the calls
// keep is the live heap as of a GC's mark (go_gc_heap_live_bytes on
// edged's /metrics). sipbench cannot force a GC in edged, so it reads the
// metric until it has seen several marks (go_gc_cycles_total_gc_cycles_total
// moved) and takes their median; at idle nothing allocates and no GC
// comes, so it sends OPTIONS meanwhile (answered statelessly: garbage
// only, nothing kept) until marks come. Kamailio keeps its transactions
// (and dialogs) in shared memory, whose allocator counts exactly what is
// in use (core.shmmem's real_used, through the ctl module's socket and
// kamcmd); each read is exact, so a few are enough. Its pkg memory (each
// process's own heap, pkg.stats) is read beside it.

// memSample is one reading of a server's own memory accounting.
type memSample struct {
	Bytes int64 // edged: the live heap; Kamailio: shared memory in use (real_used)
	// Mark is the GC cycles completed when Bytes was marked (edged);
	// -1 means every read is exact (Kamailio).
	Mark int64
	Pkg  int64 // Kamailio: pkg memory in use, summed over its processes; -1 unknown
}

// memProbe reads a running server's own memory.
type memProbe struct {
	kind  string // what Bytes is, for the report: "Go live heap" or "shm"
	read  func() (memSample, error)
	exact bool // every read is exact (Mark -1): spread them over the window
	// nudge, when set, makes the server allocate without calls for as long
	// as ctx lasts (so that its GC marks again); nil when reads are exact.
	nudge func(ctx context.Context)
}

// selfMemory is a server that can say how much memory it uses.
type selfMemory interface {
	// memProbe returns the probe of the server started in dir with SIP
	// on 127.0.0.1:port.
	memProbe(dir string, port int) (*memProbe, error)
}

// The metrics edged exports for this (core/internal/telemetry).
const (
	metricHeapLive = "go_gc_heap_live_bytes"
	metricGCCycles = "go_gc_cycles_total_gc_cycles_total"
)

// parseGoHeap returns the live heap and the GC cycles from a Prometheus
// text exposition.
func parseGoHeap(exposition []byte) (memSample, error) {
	vals := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != metricHeapLive && f[0] != metricGCCycles) {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil || v < 0 || math.IsInf(v, 0) {
			return memSample{}, fmt.Errorf("metric %s: bad value %q", f[0], f[1])
		}
		vals[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return memSample{}, fmt.Errorf("read metrics: %w", err)
	}
	for _, name := range []string{metricHeapLive, metricGCCycles} {
		if _, ok := vals[name]; !ok {
			return memSample{}, fmt.Errorf("%w: /metrics has no %s (an edged built before it exported the live heap?)", errNoMemMetric, name)
		}
	}
	return memSample{Bytes: int64(vals[metricHeapLive]), Mark: int64(vals[metricGCCycles]), Pkg: -1}, nil
}

// errNoMemMetric means a server does not report the memory figure sipbench reads.
var errNoMemMetric = errors.New("sipbench: memory figure missing")

// memProbe reads edged's /metrics at the admin address of the config it
// was started with.
func (e edgedServer) memProbe(dir string, port int) (*memProbe, error) {
	var cfg struct {
		Admin struct{ Listen string } `toml:"admin"`
	}
	file := filepath.Join(dir, "edged.toml")
	if _, err := toml.DecodeFile(file, &cfg); err != nil {
		return nil, fmt.Errorf("edged's admin address from %s: %w", file, err)
	}
	if cfg.Admin.Listen == "" {
		return nil, fmt.Errorf("edged's admin address from %s: no admin.listen, so no /metrics to read", file)
	}
	url := "http://" + cfg.Admin.Listen + "/metrics"
	client := &http.Client{Timeout: 2 * time.Second}
	read := func() (memSample, error) {
		resp, err := client.Get(url)
		if err != nil {
			return memSample{}, fmt.Errorf("edged metrics: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			return memSample{}, fmt.Errorf("edged metrics: %s: %v", resp.Status, err)
		}
		return parseGoHeap(b)
	}
	return &memProbe{kind: "Go live heap", read: read, nudge: func(ctx context.Context) { sendOptions(ctx, port) }}, nil
}

// sendOptions sends OPTIONS over UDP to 127.0.0.1:port, 2,000 a second,
// until ctx ends, and drops the answers unread. Each carries an 8 KiB
// body, so that the server's parsing makes garbage fast enough for a GC
// every second or two (at idle nothing else allocates; on the plateau the
// calls alone made one every ~5 s).
func sendOptions(ctx context.Context, port int) {
	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return
	}
	defer u.Close()
	local, target := u.LocalAddr().String(), u.RemoteAddr().String()
	body := strings.Repeat("x", 8<<10)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range 20 {
			n++
			_, _ = u.Write(optionsRequest(local, target, fmt.Sprintf("z9hG4bK-sipbench-nudge-%d", n), body))
		}
	}
}

// kamailioCtl is the ctl module's socket in the run's directory.
const kamailioCtl = "kamailio.ctl"

// memProbe reads Kamailio's shared and pkg memory through kamcmd and the
// ctl socket in dir.
func (k kamailioServer) memProbe(dir string, _ int) (*memProbe, error) {
	bin := k.kamcmd
	if bin == "" {
		bin = "kamcmd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: kamcmd (Debian's kamailio package) reads Kamailio's memory: %w", errNoMemMetric, err)
	}
	sock := "unix:" + filepath.Join(dir, kamailioCtl)
	call := func(cmd string) ([]map[string]string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, "-s", sock, cmd).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("kamcmd %s: %w: %s", cmd, err, strings.TrimSpace(string(out)))
		}
		return parseKamcmd(out)
	}
	read := func() (memSample, error) {
		shm, err := call("core.shmmem")
		if err != nil {
			return memSample{}, err
		}
		s := memSample{Mark: -1, Pkg: -1}
		if s.Bytes, err = kamcmdField(shm, "core.shmmem", "real_used"); err != nil {
			return memSample{}, err
		}
		if pkg, err := call("pkg.stats"); err == nil {
			if sum, err := kamcmdSum(pkg, "pkg.stats", "real_used"); err == nil {
				s.Pkg = sum
			}
		}
		return s, nil
	}
	kind := "shm"
	if k.rtpengine != "" {
		kind = "shm (Kamailio's; rtpengine's not counted)"
	}
	return &memProbe{kind: kind, read: read, exact: true}, nil
}

// parseKamcmd parses kamcmd's printing of RPC structs: one "{ … }" block
// per struct, a "name: value" line per member.
func parseKamcmd(out []byte) ([]map[string]string, error) {
	var all []map[string]string
	var cur map[string]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case line == "{":
			if cur != nil {
				return nil, fmt.Errorf("kamcmd output: nested struct")
			}
			cur = map[string]string{}
		case line == "}":
			if cur == nil {
				return nil, fmt.Errorf("kamcmd output: } without {")
			}
			all = append(all, cur)
			cur = nil
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok || cur == nil {
				return nil, fmt.Errorf("kamcmd output: unexpected line %q", line)
			}
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("kamcmd output: unterminated struct")
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("kamcmd output: no struct in %q", bytes.TrimSpace(out))
	}
	return all, nil
}

// kamcmdField returns the integer member name of the first struct.
func kamcmdField(structs []map[string]string, cmd, name string) (int64, error) {
	v, ok := structs[0][name]
	if !ok {
		return 0, fmt.Errorf("kamcmd %s: no %s", cmd, name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("kamcmd %s: %s %q is not a size", cmd, name, v)
	}
	return n, nil
}

// kamcmdSum adds the integer member name of every struct.
func kamcmdSum(structs []map[string]string, cmd, name string) (int64, error) {
	var sum int64
	for i := range structs {
		n, err := kamcmdField(structs[i:], cmd, name)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// memWindow is how a probe is sampled: want fresh readings, one read
// every poll (every exactPoll, when set, for a probe whose reads are
// exact), for at most window.
type memWindow struct {
	want      int
	poll      time.Duration
	exactPoll time.Duration
	window    time.Duration
}

// freshFilter keeps the readings of a probe that are of a mark made since
// it started: the first of each GC cycle after the cycle of the first
// reading it saw (that one's mark may predate the window); every reading
// of an exact probe.
type freshFilter struct {
	started bool
	last    int64
}

func (f *freshFilter) keep(s memSample) bool {
	if s.Mark < 0 {
		return true
	}
	if !f.started {
		f.started, f.last = true, s.Mark
		return false
	}
	if s.Mark <= f.last {
		return false
	}
	f.last = s.Mark
	return true
}

// sampleMemory reads p every w.poll until it has w.want fresh readings
// (see freshFilter) or w.window is over, nudging the server meanwhile when
// p can. Fewer than w.want is no error; none is.
func sampleMemory(ctx context.Context, p *memProbe, w memWindow) ([]memSample, error) {
	ctx, cancel := context.WithTimeout(ctx, w.window)
	defer cancel()
	if p.nudge != nil {
		go p.nudge(ctx)
	}
	var f freshFilter
	var kept []memSample
	poll := w.poll
	if p.exact && w.exactPoll > 0 {
		poll = w.exactPoll
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		s, err := p.read()
		if err != nil {
			return kept, err
		}
		if f.keep(s) {
			kept = append(kept, s)
		}
		if len(kept) >= w.want {
			return kept, nil
		}
		select {
		case <-ctx.Done():
			if len(kept) == 0 {
				return nil, fmt.Errorf("%w: no %s reading of a fresh GC mark in %v", errNoMemMetric, p.kind, w.window)
			}
			return kept, nil
		case <-tick.C:
		}
	}
}

// selfFigure is what a server's own accounting says of the memory of
// the active calls: the medians of its readings at idle and on the
// plateau.
type selfFigure struct {
	Kind                 string
	Idle, Active         int64 // bytes, medians
	IdleN, ActiveN       int   // readings the medians are of
	PkgIdle, PkgActive   int64 // Kamailio's pkg memory, medians; -1 unknown
	IdleSpan, ActiveSpan int64 // largest minus smallest reading
}

// newSelfFigure takes the medians of idle and active.
func newSelfFigure(kind string, idle, active []memSample) selfFigure {
	f := selfFigure{Kind: kind, IdleN: len(idle), ActiveN: len(active)}
	f.Idle, f.IdleSpan = medianOf(idle, func(s memSample) int64 { return s.Bytes })
	f.Active, f.ActiveSpan = medianOf(active, func(s memSample) int64 { return s.Bytes })
	f.PkgIdle, _ = medianOf(idle, func(s memSample) int64 { return s.Pkg })
	f.PkgActive, _ = medianOf(active, func(s memSample) int64 { return s.Pkg })
	return f
}

// medianOf returns the median of the values of v over samples (the mean
// of the middle two of an even count) and their span; -1 when a value is
// unknown (-1) or there is none.
func medianOf(samples []memSample, v func(memSample) int64) (median, span int64) {
	xs := make([]int64, 0, len(samples))
	for _, s := range samples {
		if v(s) < 0 {
			return -1, -1
		}
		xs = append(xs, v(s))
	}
	if len(xs) == 0 {
		return -1, -1
	}
	slices.Sort(xs)
	n := len(xs)
	median = xs[n/2]
	if n%2 == 0 {
		median = (xs[n/2-1] + xs[n/2]) / 2
	}
	return median, xs[n-1] - xs[0]
}

// perCallKiB is the growth from idle to active per call up, in KiB.
func perCallKiB(idle, active int64, up int) float64 {
	if up <= 0 || idle < 0 || active < 0 {
		return math.NaN()
	}
	return float64(active-idle) / 1024 / float64(up)
}
