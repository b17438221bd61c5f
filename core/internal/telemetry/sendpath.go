package telemetry

import "github.com/prometheus/client_golang/prometheus"

// SendPathSample is what the media engine's XDP send path (media.send_path
// = "xdp") reports at a scrape; all zero under "socket".
type SendPathSample struct {
	Sent  uint64 // datagrams sent through an AF_XDP socket
	NoHop uint64 // latched legs' datagrams the sockets took: IPv6, no usable next hop, too large, no XSK
	Full  uint64 // and those that found no free frame or a full ring
	Lost  uint64 // datagrams an XSK held when the kernel refused its kick
}

// WatchSendPath exports umedge_media_xdp_sent_total,
// umedge_media_xdp_fallbacks_total{reason} and umedge_media_xdp_lost_total,
// read from fn at every scrape.
func (m *Metrics) WatchSendPath(fn func() SendPathSample) {
	m.Registry.MustRegister(&sendPathCollector{fn: fn})
}

var (
	spSentDesc = prometheus.NewDesc("umedge_media_xdp_sent_total",
		"Datagrams the media engine sent through an AF_XDP socket (media.send_path = xdp).", nil, nil)
	spFallbackDesc = prometheus.NewDesc("umedge_media_xdp_fallbacks_total",
		"Datagrams of latched legs that went through the leg's UDP socket instead, by reason: no_hop (IPv6, no route over Ethernet, no confirmed neighbour, too large, no XSK) or full (no free UMEM frame, TX ring full).", []string{"reason"}, nil)
	spLostDesc = prometheus.NewDesc("umedge_media_xdp_lost_total",
		"Datagrams lost on an AF_XDP socket whose kick the kernel refused (its interface went away); the log says when.", nil, nil)
)

type sendPathCollector struct{ fn func() SendPathSample }

func (c *sendPathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{spSentDesc, spFallbackDesc, spLostDesc} {
		ch <- d
	}
}

func (c *sendPathCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.fn()
	ch <- prometheus.MustNewConstMetric(spSentDesc, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(spFallbackDesc, prometheus.CounterValue, float64(s.NoHop), "no_hop")
	ch <- prometheus.MustNewConstMetric(spFallbackDesc, prometheus.CounterValue, float64(s.Full), "full")
	ch <- prometheus.MustNewConstMetric(spLostDesc, prometheus.CounterValue, float64(s.Lost))
}
