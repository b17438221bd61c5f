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

// The kernel's source address towards a peer is asked once and then
// remembered for sourceTTL: listenerFor runs for every UDP message the
// B2BUA sends when several listeners share a family, and each question
// costs a socket, a connect and a close (~20 µs on a loaded 2-vCPU box:
// some 100 µs of a call's CPU).
func TestListenerForAsksTheKernelOncePerPeer(t *testing.T) {
	defer func(f func(netip.Addr) (netip.Addr, error)) { kernelSource = f }(kernelSource)
	asked := 0
	kernelSource = func(dst netip.Addr) (netip.Addr, error) {
		asked++
		return netip.MustParseAddr("127.0.0.1"), nil
	}
	s := New(&fakeRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	s.listeners = map[listenerKey]*listener{}
	for _, a := range []string{"127.0.0.1", "127.0.0.2"} {
		k := listenerKey{router.UDP, netip.AddrPortFrom(netip.MustParseAddr(a), 5060)}
		s.listeners[k] = &listener{key: k}
	}
	dst := netip.MustParseAddr("127.0.0.9")
	for range 100 {
		if l := s.listenerFor(router.UDP, dst); l == nil || l.key.addr.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("listenerFor = %v, want the one on the kernel's source 127.0.0.1", l)
		}
	}
	if asked != 1 {
		t.Errorf("the kernel was asked %d times for 100 messages to one peer, want 1", asked)
	}
	// Past sourceTTL a route change shows.
	s.sources.now = func() time.Time { return time.Now().Add(2 * sourceTTL) }
	s.listenerFor(router.UDP, dst)
	if asked != 2 {
		t.Errorf("the kernel was asked %d times after sourceTTL, want 2", asked)
	}
}
