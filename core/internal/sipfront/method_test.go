package sipfront

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/umedge/umedge/core/sdk/router"
)

// knownMethods are the methods of RFC 3261, 3262, 3265, 3311, 3428, 3515,
// 3903 and 6086: each keeps its own label, every other method is "other".
var knownMethods = []string{"INVITE", "ACK", "OPTIONS", "BYE", "CANCEL", "REGISTER", "PRACK",
	"SUBSCRIBE", "NOTIFY", "UPDATE", "MESSAGE", "REFER", "PUBLISH", "INFO"}

// TestMethodLabelIsBounded: spoofed datagrams with random methods, which
// once created a series each, all land in one "other" series.
func TestMethodLabelIsBounded(t *testing.T) {
	s := New(staticRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	s.state.Store(&state{fqdn: "edge.test", retryAfter: "Retry-After: 30"})
	p := &peer{transport: router.UDP, src: netip.MustParseAddrPort("127.0.0.1:5999")}
	var out bytes.Buffer
	send := func(method string) {
		msg := strings.NewReplacer("INVITE sip:", method+" sip:", "314159 INVITE", "314159 "+method).Replace(invite(""))
		s.handleDatagram([]byte(msg), p, &out)
	}
	for _, m := range knownMethods {
		send(m)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	const random = 3000
	for range random {
		b := make([]byte, 4+rng.IntN(12))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		send(string(b))
	}

	if n := testutil.CollectAndCount(s.metrics.SIPRequests); n > len(knownMethods)+1 {
		t.Fatalf("%d series after %d random methods, want at most %d", n, random, len(knownMethods)+1)
	}
	for _, m := range knownMethods {
		if got := testutil.ToFloat64(s.metrics.SIPRequests.WithLabelValues(m, "udp")); got < 1 {
			t.Errorf("requests{method=%q} = %v, want its own series", m, got)
		}
	}
	if got := testutil.ToFloat64(s.metrics.SIPRequests.WithLabelValues(methodOther, "udp")); got < random*0.99 {
		t.Errorf(`requests{method="other"} = %v, want about %d`, got, random)
	}
}
