package telemetry

import "github.com/prometheus/client_golang/prometheus"

// FastPathSample is what the media engine's kernel fast path reports at a
// scrape.
type FastPathSample struct {
	Active      bool   // the program is loaded and attached
	Unavailable uint64 // times the fast path was wanted (auto) and could not start
	Sessions    int    // calls on the kernel path now
	Offloads    uint64 // calls put on the kernel path
	Removals    uint64 // and taken off it (an offer, a re-latch, hold, the end of the call)
	Refused     uint64 // calls that qualified but stayed in userspace (no route, attach failed)
	Policed     uint64 // calls taken off the kernel path for good: a peer sent over its media policing cap
	// Packets are the program's verdicts by reason: "forwarded", and the
	// reasons a packet went to userspace ("miss", "wrong_source", ...).
	Packets map[string]uint64
}

// WatchFastPath exports umedge_media_fastpath_active,
// umedge_media_fastpath_unavailable_total, umedge_media_fastpath_sessions,
// umedge_media_fastpath_offloads_total, umedge_media_fastpath_removals_total,
// umedge_media_fastpath_refused_total, umedge_media_fastpath_policed_total and
// umedge_media_fastpath_packets_total{verdict}, read from fn at every
// scrape.
func (m *Metrics) WatchFastPath(fn func() FastPathSample) {
	m.Registry.MustRegister(&fastPathCollector{fn: fn})
}

var (
	fpActiveDesc = prometheus.NewDesc("umedge_media_fastpath_active",
		"1 when the kernel fast path (eBPF at TC ingress) is loaded and attached.", nil, nil)
	fpUnavailDesc = prometheus.NewDesc("umedge_media_fastpath_unavailable_total",
		"Times media.fast_path = auto could not start the kernel fast path (the log says why); calls relay in userspace.", nil, nil)
	fpSessionsDesc = prometheus.NewDesc("umedge_media_fastpath_sessions",
		"Calls whose media the kernel forwards now.", nil, nil)
	fpOffloadsDesc = prometheus.NewDesc("umedge_media_fastpath_offloads_total",
		"Calls put on the kernel path (again after each re-latch or re-INVITE).", nil, nil)
	fpRemovalsDesc = prometheus.NewDesc("umedge_media_fastpath_removals_total",
		"Calls taken off the kernel path: at an offer (re-INVITE), a re-latch, hold, a terminator attached, the end of the call.", nil, nil)
	fpRefusedDesc = prometheus.NewDesc("umedge_media_fastpath_refused_total",
		"Calls that qualified for the kernel path but stayed in userspace: no route, attach failed, map full.", nil, nil)
	fpPolicedDesc = prometheus.NewDesc("umedge_media_fastpath_policed_total",
		"Calls taken off the kernel path for the rest of the call because a peer sent over its media.police_* cap; userspace polices them.", nil, nil)
	fpPacketsDesc = prometheus.NewDesc("umedge_media_fastpath_packets_total",
		"Packets the kernel program saw, by verdict: forwarded, or the reason it went to userspace.", []string{"verdict"}, nil)
)

type fastPathCollector struct{ fn func() FastPathSample }

func (c *fastPathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fpActiveDesc, fpUnavailDesc, fpSessionsDesc, fpOffloadsDesc, fpRemovalsDesc, fpRefusedDesc, fpPolicedDesc, fpPacketsDesc} {
		ch <- d
	}
}

func (c *fastPathCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.fn()
	active := 0.0
	if s.Active {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(fpActiveDesc, prometheus.GaugeValue, active)
	ch <- prometheus.MustNewConstMetric(fpUnavailDesc, prometheus.CounterValue, float64(s.Unavailable))
	ch <- prometheus.MustNewConstMetric(fpSessionsDesc, prometheus.GaugeValue, float64(s.Sessions))
	ch <- prometheus.MustNewConstMetric(fpOffloadsDesc, prometheus.CounterValue, float64(s.Offloads))
	ch <- prometheus.MustNewConstMetric(fpRemovalsDesc, prometheus.CounterValue, float64(s.Removals))
	ch <- prometheus.MustNewConstMetric(fpRefusedDesc, prometheus.CounterValue, float64(s.Refused))
	ch <- prometheus.MustNewConstMetric(fpPolicedDesc, prometheus.CounterValue, float64(s.Policed))
	for v, n := range s.Packets {
		ch <- prometheus.MustNewConstMetric(fpPacketsDesc, prometheus.CounterValue, float64(n), v)
	}
}
