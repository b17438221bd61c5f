// Package telemetry holds edged's build version, its logger setup and its
// Prometheus metrics.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Version is set at link time (-X .../telemetry.Version=...).
var Version = "dev"

// NewLogger returns a slog logger writing to w in format "text" or "json"
// at level "debug", "info", "warn" or "error", and the level variable so a
// reload can change it.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	default:
		return nil, nil, fmt.Errorf("unknown log format %q", format)
	}
}

// SetLevel parses level into lv.
func SetLevel(lv *slog.LevelVar, level string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	lv.Set(l)
	return nil
}

// Metrics are edged's Prometheus metrics (umedge_<subsystem>_<name>_<unit>).
type Metrics struct {
	Registry *prometheus.Registry

	SIPRequests    *prometheus.CounterVec   // method, transport
	SIPBadRequests *prometheus.CounterVec   // transport
	Calls          *prometheus.CounterVec   // transport
	Redirects      *prometheus.CounterVec   // pool, backend
	Rejections     *prometheus.CounterVec   // reason
	DecisionCache  *prometheus.CounterVec   // result = hit|miss
	RouteLatency   *prometheus.HistogramVec // transport; INVITE received → final response written
	PluginRestarts *prometheus.CounterVec   // plugin
	HealthUp       *prometheus.GaugeVec     // target
}

// NewMetrics registers every metric, plus the Go and process collectors,
// in a fresh registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}
	m.SIPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_sip_requests_total", Help: "SIP requests received, by method and transport.",
	}, []string{"method", "transport"})
	m.SIPBadRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_sip_bad_messages_total", Help: "SIP messages that could not be parsed or were invalid.",
	}, []string{"transport"})
	m.Calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_router_calls_total", Help: "New INVITEs that reached the Call Router.",
	}, []string{"transport"})
	m.Redirects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_router_redirects_total", Help: "Calls redirected with 302, by pool and back end.",
	}, []string{"pool", "backend"})
	m.Rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_router_rejections_total", Help: "Calls rejected, by stable reason code.",
	}, []string{"reason"})
	m.DecisionCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_router_decision_cache_total", Help: "Router decisions served from the cache (hit) or asked of the plugin (miss).",
	}, []string{"result"})
	m.RouteLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "umedge_router_response_seconds",
		Help:    "Time from an INVITE's arrival to its final response being written.",
		Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1},
	}, []string{"transport"})
	m.PluginRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_plugin_restarts_total", Help: "Plugin processes restarted after they exited.",
	}, []string{"plugin"})
	m.HealthUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "umedge_health_up", Help: "1 when an OPTIONS-probed peer or back end is reachable.",
	}, []string{"target"})
	for _, c := range []prometheus.Collector{m.SIPRequests, m.SIPBadRequests, m.Calls, m.Redirects, m.Rejections,
		m.DecisionCache, m.RouteLatency, m.PluginRestarts, m.HealthUp} {
		f(c)
	}
	return m
}
