package telemetry

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name          string
		format, level string
		wantIn        string // in the output of an Info record
		wantErr       error
	}{
		{name: "text", format: "text", level: "info", wantIn: "msg=hello"},
		{name: "json", format: "json", level: "INFO", wantIn: `"msg":"hello"`},
		{name: "level filters", format: "text", level: "warn", wantIn: ""},
		{name: "bad format", format: "xml", level: "info", wantErr: ErrLogFormat},
		{name: "bad level", format: "text", level: "loud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, _, err := NewLogger(&buf, tt.format, tt.level)
			if tt.wantErr != nil || tt.level == "loud" {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("NewLogger() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello")
			if got := buf.String(); tt.wantIn == "" && got != "" || !strings.Contains(got, tt.wantIn) {
				t.Errorf("output %q, want it to contain %q", got, tt.wantIn)
			}
		})
	}
}

func TestWatchers(t *testing.T) {
	m := NewMetrics()
	m.WatchPlugins(func() []PluginSample { return []PluginSample{{Name: "umrouter", Restarts: 2, Up: true}} })
	m.WatchHealth(func() []HealthSample { return []HealthSample{{Target: "backend/p/a", Up: false}} })
	m.WatchRouting(func() RoutingSample { return RoutingSample{Decided: 7, Asked: 3, AskQueueFull: 2, AskFailed: 1} })
	want := `
# HELP umedge_plugin_restarts_total Plugin processes restarted after they exited.
# TYPE umedge_plugin_restarts_total counter
umedge_plugin_restarts_total{plugin="umrouter"} 2
# HELP umedge_health_up 1 when an OPTIONS-probed peer or back end is reachable.
# TYPE umedge_health_up gauge
umedge_health_up{target="backend/p/a"} 0
# HELP umedge_router_decisions_total Calls decided by the routing table in the core (table) or handed to the router plugin (plugin).
# TYPE umedge_router_decisions_total counter
umedge_router_decisions_total{by="plugin"} 3
umedge_router_decisions_total{by="table"} 7
# HELP umedge_router_ask_failures_total Calls handed to the router plugin that got 503: queue full, or no answer in time.
# TYPE umedge_router_ask_failures_total counter
umedge_router_ask_failures_total{reason="no-answer"} 1
umedge_router_ask_failures_total{reason="queue-full"} 2
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"umedge_plugin_restarts_total", "umedge_health_up", "umedge_router_decisions_total", "umedge_router_ask_failures_total"); err != nil {
		t.Error(err)
	}
}

func TestWatchFastPath(t *testing.T) {
	m := NewMetrics()
	m.WatchFastPath(func() FastPathSample {
		return FastPathSample{Active: true, Sessions: 1, Offloads: 3, Removals: 2, Refused: 1, Policed: 4,
			Packets: map[string]uint64{"forwarded": 470, "wrong_source": 1}}
	})
	want := `
# HELP umedge_media_fastpath_active 1 when the kernel fast path (eBPF at TC ingress) is loaded and attached.
# TYPE umedge_media_fastpath_active gauge
umedge_media_fastpath_active 1
# HELP umedge_media_fastpath_offloads_total Calls put on the kernel path (again after each re-latch or re-INVITE).
# TYPE umedge_media_fastpath_offloads_total counter
umedge_media_fastpath_offloads_total 3
# HELP umedge_media_fastpath_removals_total Calls taken off the kernel path: at an offer (re-INVITE), a re-latch, hold, a terminator attached, the end of the call.
# TYPE umedge_media_fastpath_removals_total counter
umedge_media_fastpath_removals_total 2
# HELP umedge_media_fastpath_packets_total Packets the kernel program saw, by verdict: forwarded, or the reason it went to userspace.
# TYPE umedge_media_fastpath_packets_total counter
umedge_media_fastpath_packets_total{verdict="forwarded"} 470
umedge_media_fastpath_packets_total{verdict="wrong_source"} 1
# HELP umedge_media_fastpath_policed_total Calls taken off the kernel path for the rest of the call because a peer sent over its media.police_* cap; userspace polices them.
# TYPE umedge_media_fastpath_policed_total counter
umedge_media_fastpath_policed_total 4
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "umedge_media_fastpath_active",
		"umedge_media_fastpath_offloads_total", "umedge_media_fastpath_removals_total", "umedge_media_fastpath_packets_total",
		"umedge_media_fastpath_policed_total"); err != nil {
		t.Error(err)
	}
}

// The live heap and the GC cycles are exported (sipbench's memory per
// active call reads them), and the Go collector's set stays small: none
// of the other runtime/metrics.
func TestGoRuntimeMetrics(t *testing.T) {
	m := NewMetrics()
	runtime.GC()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var goNames []string
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "go_") {
			goNames = append(goNames, f.GetName())
		}
		for _, mt := range f.GetMetric() {
			switch {
			case mt.GetGauge() != nil:
				got[f.GetName()] = mt.GetGauge().GetValue()
			case mt.GetCounter() != nil:
				got[f.GetName()] = mt.GetCounter().GetValue()
			}
		}
	}
	if live := got["go_gc_heap_live_bytes"]; live <= 0 {
		t.Errorf("go_gc_heap_live_bytes = %v, want the live heap (> 0)", live)
	}
	if cycles := got["go_gc_cycles_total_gc_cycles_total"]; cycles < 1 {
		t.Errorf("go_gc_cycles_total_gc_cycles_total = %v after a GC, want ≥ 1", cycles)
	}
	// The default set (memstats, goroutines, threads, gc_duration, info,
	// a few settings) is ~40 families; all of runtime/metrics is ~90 more.
	if len(goNames) > 50 {
		t.Errorf("%d go_ metric families, want the default set plus two: %v", len(goNames), goNames)
	}
}

func TestWatchSendPath(t *testing.T) {
	m := NewMetrics()
	m.WatchSendPath(func() SendPathSample { return SendPathSample{Sent: 900, NoHop: 7, Full: 2, Lost: 1} })
	want := `
# HELP umedge_media_xdp_sent_total Datagrams the media engine sent through an AF_XDP socket (media.send_path = xdp).
# TYPE umedge_media_xdp_sent_total counter
umedge_media_xdp_sent_total 900
# HELP umedge_media_xdp_fallbacks_total Datagrams of latched legs that went through the leg's UDP socket instead, by reason: no_hop (IPv6, no route over Ethernet, no confirmed neighbour, too large, no XSK) or full (no free UMEM frame, TX ring full).
# TYPE umedge_media_xdp_fallbacks_total counter
umedge_media_xdp_fallbacks_total{reason="full"} 2
umedge_media_xdp_fallbacks_total{reason="no_hop"} 7
# HELP umedge_media_xdp_lost_total Datagrams lost on an AF_XDP socket whose kick the kernel refused (its interface went away); the log says when.
# TYPE umedge_media_xdp_lost_total counter
umedge_media_xdp_lost_total 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "umedge_media_xdp_sent_total",
		"umedge_media_xdp_fallbacks_total", "umedge_media_xdp_lost_total"); err != nil {
		t.Error(err)
	}
}
