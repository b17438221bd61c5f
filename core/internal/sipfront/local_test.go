package sipfront

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/router"
)

// With listeners on several addresses, the B2BUA's leg towards a peer
// gets the one on the address the kernel sends to that peer from, every
// time (an arbitrary one, as before, put the outside address into Via,
// Contact and SDP towards an inside back end on a two-interface box).
func TestLocalPicksTheListenerTowardsThePeer(t *testing.T) {
	s := New(&fakeRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	var port int
	for range 20 {
		port = freePort(t)
		err := s.Apply(Config{
			Listen: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3")},
			UDP:    true, TCP: true, TCPPort: port, TLSPort: port + 1, IdleTimeout: time.Minute, RetryAfter: 30 * time.Second, FQDN: "edge.test",
		})
		if err == nil {
			break
		}
		_ = s.Close()
		s = New(&fakeRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	}
	t.Cleanup(func() { _ = s.Close() })
	src, err := sourceFor(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	for range 50 { // map order changes from call to call
		for _, tp := range []router.Transport{router.UDP, router.TCP} {
			got, err := s.Local(tp, netip.MustParseAddr("127.0.0.1"))
			if err != nil {
				t.Fatal(err)
			}
			if got != netip.AddrPortFrom(src, uint16(port)) {
				t.Fatalf("Local(%s, 127.0.0.1) = %s, want the listener on %s, the kernel's source towards it", tp, got, src)
			}
		}
	}
}
