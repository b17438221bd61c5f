package sipfront

import (
	"bytes"
	"log/slog"
	"net/netip"
	"testing"

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
