// Package telemetry holds edged's build version, its logger setup and its
// Prometheus metrics.
package telemetry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// ErrLogFormat means the log format is neither text nor json.
var ErrLogFormat = errors.New("unknown log format")

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
		return nil, nil, fmt.Errorf("%w %q", ErrLogFormat, format)
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

	SIPRequests     *prometheus.CounterVec   // method, transport
	SIPBadRequests  *prometheus.CounterVec   // transport
	Calls           *prometheus.CounterVec   // transport
	Redirects       *prometheus.CounterVec   // pool, backend
	Proxied         *prometheus.CounterVec   // pool, backend: calls handed to the B2BUA
	Rejections      *prometheus.CounterVec   // reason
	RouteLatency    *prometheus.HistogramVec // transport; INVITE received → final response written
	Retransmissions prometheus.Counter       // UDP INVITE retransmissions answered from memory

	SIPConnsOpen    prometheus.Gauge       // open TCP/TLS connections, all listeners
	SIPConnsRefused *prometheus.CounterVec // reason: per-source|global
	SIPConnsDropped *prometheus.CounterVec // reason: send-queue-full|write-timeout|tcp-timeout
	SIPBans         prometheus.Counter     // sources banned for too many refused requests
	SIPBannedDrops  prometheus.Counter     // datagrams and connections of banned sources dropped unread

	HEPSent    prometheus.Counter     // SIP messages sent to the HEP collector
	HEPDropped *prometheus.CounterVec // reason: queue-full|collector-down|send-error|too-large|shutdown
}

// goRuntimeMetrics are the runtime/metrics the Go collector exports beside
// its default set: the live heap as of the last GC's mark
// (go_gc_heap_live_bytes), the one honest figure of what a garbage-collected
// process keeps (its RSS and the memstats heap hold garbage not yet
// collected, a share that moves with the time since the last GC), and the
// GC cycles completed (go_gc_cycles_total_gc_cycles_total), read in the same
// runtime/metrics sample, so that a reader can tell two live-heap readings
// of one mark from two of different marks (sipbench's memory per active
// call).
var goRuntimeMetrics = collectors.GoRuntimeMetricsRule{
	Matcher: regexp.MustCompile(`^/gc/(heap/live:bytes|cycles/total:gc-cycles)$`),
}

// NewMetrics registers every metric, plus the Go and process collectors,
// in a fresh registry.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(goRuntimeMetrics)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	m.Proxied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_router_proxied_total", Help: "Calls of proxy pools handed to the B2BUA, by pool and back end.",
	}, []string{"pool", "backend"})
	m.Rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_router_rejections_total", Help: "Calls rejected, by stable reason code.",
	}, []string{"reason"})
	m.RouteLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "umedge_router_response_seconds",
		Help:    "Time from an INVITE's arrival to its final response being written.",
		Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1},
	}, []string{"transport"})
	m.Retransmissions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "umedge_router_retransmissions_total",
		Help: "Retransmitted UDP INVITEs answered with the answer their first copy got.",
	})
	m.SIPConnsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "umedge_sip_connections_open", Help: "Open SIP TCP and TLS connections, all listeners.",
	})
	m.SIPConnsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_sip_connections_refused_total",
		Help: "SIP TCP and TLS connections closed at accept, by the limit they hit (per-source or global).",
	}, []string{"reason"})
	m.SIPConnsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_sip_connections_dropped_total",
		Help: "SIP TCP and TLS connections closed because the peer did not read its answers, by how it showed.",
	}, []string{"reason"})
	m.SIPBans = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "umedge_sip_bans_total", Help: "Sources banned for too many refused requests.",
	})
	m.SIPBannedDrops = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "umedge_sip_banned_drops_total", Help: "Datagrams and connections of banned sources dropped unread.",
	})
	m.HEPSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "umedge_capture_hep_sent_total", Help: "SIP messages sent to the HEP capture collector.",
	})
	m.HEPDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umedge_capture_hep_dropped_total",
		Help: "SIP messages not sent to the HEP capture collector, by why: queue-full, collector-down, send-error, too-large, shutdown.",
	}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.HEPSent, m.HEPDropped, m.SIPBans, m.SIPBannedDrops, m.SIPRequests, m.SIPBadRequests, m.Calls, m.Redirects, m.Proxied, m.Rejections,
		m.RouteLatency, m.Retransmissions, m.SIPConnsOpen, m.SIPConnsRefused, m.SIPConnsDropped} {
		f(c)
	}
	return m
}

// PluginSample is what the plugin host reports of one plugin at a scrape.
type PluginSample struct {
	Name      string
	Restarts  int
	HungKills int // killed for failing their health probes
	Up        bool
}

// WatchPlugins exports umedge_plugin_restarts_total,
// umedge_plugin_hung_kills_total and umedge_plugin_up, read from fn at
// every scrape.
func (m *Metrics) WatchPlugins(fn func() []PluginSample) {
	m.Registry.MustRegister(&pluginCollector{fn: fn})
}

var (
	restartsDesc = prometheus.NewDesc("umedge_plugin_restarts_total",
		"Plugin processes restarted after they exited.", []string{"plugin"}, nil)
	upDesc = prometheus.NewDesc("umedge_plugin_up",
		"1 when the plugin process runs and answered its last health probe.", []string{"plugin"}, nil)
	hungKillsDesc = prometheus.NewDesc("umedge_plugin_hung_kills_total",
		"Plugin processes killed for failing their health probes in a row.", []string{"plugin"}, nil)
)

type pluginCollector struct{ fn func() []PluginSample }

func (c *pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- restartsDesc
	ch <- upDesc
	ch <- hungKillsDesc
}

func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.fn() {
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(s.Restarts), s.Name)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, s.Name)
		ch <- prometheus.MustNewConstMetric(hungKillsDesc, prometheus.CounterValue, float64(s.HungKills), s.Name)
	}
}

// RoutingSample is what the routing engine reports at a scrape.
type RoutingSample struct {
	Generation   uint64 // of the routing table in force
	Decided      uint64 // calls answered from the table
	Asked        uint64 // calls handed to the router plugin
	AskFailed    uint64 // of those, not answered in time or at all
	AskQueueFull uint64 // refused because the ask queue was full
	AskQueued    int    // waiting for a worker now
	BadTables    uint64 // tables refused by the core
}

// WatchRouting exports umedge_router_decisions_total{by},
// umedge_router_ask_failures_total{reason}, umedge_router_ask_queued,
// umedge_router_table_generation and umedge_router_bad_tables_total, read
// from fn at every scrape.
func (m *Metrics) WatchRouting(fn func() RoutingSample) {
	m.Registry.MustRegister(&routingCollector{fn: fn})
}

var (
	decisionsDesc = prometheus.NewDesc("umedge_router_decisions_total",
		"Calls decided by the routing table in the core (table) or handed to the router plugin (plugin).", []string{"by"}, nil)
	askFailuresDesc = prometheus.NewDesc("umedge_router_ask_failures_total",
		"Calls handed to the router plugin that got 503: queue full, or no answer in time.", []string{"reason"}, nil)
	askQueuedDesc = prometheus.NewDesc("umedge_router_ask_queued",
		"Calls waiting for the router plugin now.", nil, nil)
	generationDesc = prometheus.NewDesc("umedge_router_table_generation",
		"Generation of the routing table in force.", nil, nil)
	badTablesDesc = prometheus.NewDesc("umedge_router_bad_tables_total",
		"Routing tables the router plugin published that the core refused.", nil, nil)
)

type routingCollector struct{ fn func() RoutingSample }

func (c *routingCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{decisionsDesc, askFailuresDesc, askQueuedDesc, generationDesc, badTablesDesc} {
		ch <- d
	}
}

func (c *routingCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.fn()
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Decided), "table")
	ch <- prometheus.MustNewConstMetric(decisionsDesc, prometheus.CounterValue, float64(s.Asked), "plugin")
	ch <- prometheus.MustNewConstMetric(askFailuresDesc, prometheus.CounterValue, float64(s.AskQueueFull), "queue-full")
	ch <- prometheus.MustNewConstMetric(askFailuresDesc, prometheus.CounterValue, float64(s.AskFailed), "no-answer")
	ch <- prometheus.MustNewConstMetric(askQueuedDesc, prometheus.GaugeValue, float64(s.AskQueued))
	ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(s.Generation))
	ch <- prometheus.MustNewConstMetric(badTablesDesc, prometheus.CounterValue, float64(s.BadTables))
}

// SBCSample is what the SBC (B2BUA) reports at a scrape.
type SBCSample struct {
	Active                                    int    // calls holding an admission slot now
	Calls, Answered, Failed, Refused, Limited uint64 // totals; Limited: of Refused, over a calls-per-second limit
	Ended                                     int    // ended calls kept to answer retransmissions
	EndedEvicted                              uint64 // of those, forgotten early at sbc.max_ended_calls
}

// WatchSBC exports umedge_sbc_calls_total{outcome} (admitted, answered,
// failed, refused, rate-limited), umedge_sbc_active_calls,
// umedge_sbc_ended_calls and umedge_sbc_ended_evicted_total, read from fn
// at every scrape.
func (m *Metrics) WatchSBC(fn func() SBCSample) {
	m.Registry.MustRegister(&sbcCollector{fn: fn})
}

var (
	sbcCallsDesc = prometheus.NewDesc("umedge_sbc_calls_total",
		"Calls of proxy pools by outcome: admitted, answered, failed, refused at admission, and of those rate-limited (R-SBC-8).",
		[]string{"outcome"}, nil)
	sbcActiveDesc  = prometheus.NewDesc("umedge_sbc_active_calls", "Calls through the SBC now.", nil, nil)
	sbcEndedDesc   = prometheus.NewDesc("umedge_sbc_ended_calls", "Ended calls kept 64×T1 to answer their retransmissions.", nil, nil)
	sbcEvictedDesc = prometheus.NewDesc("umedge_sbc_ended_evicted_total",
		"Ended calls forgotten before 64×T1 because sbc.max_ended_calls were kept.", nil, nil)
)

type sbcCollector struct{ fn func() SBCSample }

func (c *sbcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sbcCallsDesc
	ch <- sbcActiveDesc
	ch <- sbcEndedDesc
	ch <- sbcEvictedDesc
}

func (c *sbcCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.fn()
	for _, o := range []struct {
		name string
		n    uint64
	}{{"admitted", s.Calls}, {"answered", s.Answered}, {"failed", s.Failed}, {"refused", s.Refused}, {"rate-limited", s.Limited}} {
		ch <- prometheus.MustNewConstMetric(sbcCallsDesc, prometheus.CounterValue, float64(o.n), o.name)
	}
	ch <- prometheus.MustNewConstMetric(sbcActiveDesc, prometheus.GaugeValue, float64(s.Active))
	ch <- prometheus.MustNewConstMetric(sbcEndedDesc, prometheus.GaugeValue, float64(s.Ended))
	ch <- prometheus.MustNewConstMetric(sbcEvictedDesc, prometheus.CounterValue, float64(s.EndedEvicted))
}

// HealthSample is one probed target at a scrape.
type HealthSample struct {
	Target string
	Up     bool
}

// WatchHealth exports umedge_health_up{target}, read from fn at every
// scrape, so a target shows from its first probe on, not from its first
// change.
func (m *Metrics) WatchHealth(fn func() []HealthSample) {
	m.Registry.MustRegister(&healthCollector{fn: fn})
}

var healthDesc = prometheus.NewDesc("umedge_health_up",
	"1 when an OPTIONS-probed peer or back end is reachable.", []string{"target"}, nil)

type healthCollector struct{ fn func() []HealthSample }

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- healthDesc }

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.fn() {
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(healthDesc, prometheus.GaugeValue, up, s.Target)
	}
}
