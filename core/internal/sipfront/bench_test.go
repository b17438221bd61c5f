package sipfront

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/umedge/umedge/core/internal/hep"
	"github.com/umedge/umedge/core/sdk/router"
)

// BenchmarkHandleDatagram measures one INVITE from parse to the 302 bytes,
// without sockets: the per-call CPU cost of the front end.
func BenchmarkHandleDatagram(b *testing.B) {
	s := New(staticRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	s.state.Store(&state{fqdn: "edge.test", retryAfter: "Retry-After: 30"})
	data := []byte(invite(""))
	p := &peer{transport: router.UDP, src: netip.MustParseAddrPort("127.0.0.1:5999")}
	var out bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		s.handleDatagram(data, p, &out)
		if out.Len() == 0 {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkHandleDatagramCapture is BenchmarkHandleDatagram with SIP
// capture on: the INVITE captured as received and the 302 as sent (what
// udpSocket.send adds), to a collector on loopback that reads everything.
// The difference to BenchmarkHandleDatagram is the capture's cost on the
// reader; encoding and sending run on the sender's goroutine.
func BenchmarkHandleDatagramCapture(b *testing.B) {
	s := New(staticRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	s.state.Store(&state{fqdn: "edge.test", retryAfter: "Retry-After: 30"})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 70000)
		for {
			if _, err := pc.Read(buf); err != nil {
				return
			}
		}
	}()
	h, err := hep.New(hep.Config{Collector: pc.LocalAddr().(*net.UDPAddr).AddrPort(), Network: "udp"},
		hep.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	s.SetCapture(h)
	data := []byte(invite(""))
	p := &peer{transport: router.UDP, src: netip.MustParseAddrPort("127.0.0.1:5999"), local: netip.MustParseAddrPort("127.0.0.1:5060")}
	var out bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		dst := s.handleDatagram(data, p, &out)
		if out.Len() == 0 {
			b.Fatal("no answer")
		}
		s.capture.capture(router.UDP, p.local, dst, out.Bytes())
	}
}
