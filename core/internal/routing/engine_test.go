package routing

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/health"
	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

type fakeRouter struct {
	topo   router.Topology
	calls  atomic.Int64
	err    atomic.Pointer[error] // returned by Route when set
	reject bool
}

func (f *fakeRouter) Info(context.Context) (*base.Info, error) { return &base.Info{}, nil }
func (f *fakeRouter) Configure(context.Context, []byte) error  { return nil }
func (f *fakeRouter) Topology(context.Context) (*router.Topology, error) {
	t := f.topo
	return &t, nil
}

func (f *fakeRouter) Route(_ context.Context, c *router.Call) (*router.Decision, error) {
	f.calls.Add(1)
	if e := f.err.Load(); e != nil {
		return nil, *e
	}
	if f.reject {
		return nil, &router.Rejection{Reason: router.ErrUnknownNumber, Gateway: "gw"}
	}
	return &router.Decision{Gateway: "gw", Pool: "p", Called: c.RequestURIUser}, nil
}

type fakeHealth map[string]bool

func (h fakeHealth) Set([]health.Target) {}
func (h fakeHealth) Up(name string) bool { return h[name] }

func newTestEngine(t *testing.T, r *fakeRouter, h Health, now *time.Time) *Engine {
	t.Helper()
	e := New(Config{CacheTTL: time.Minute, CacheSize: 100}, r, h, WithClock(func() time.Time { return *now }))
	if err := e.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func testTopology() router.Topology {
	return router.Topology{
		Generation: 1,
		Gateways:   []router.Gateway{{Name: "gw", Status: router.GatewayEnabled}},
		Pools: []router.Pool{{Name: "p", Backends: []router.Backend{
			{Name: "a", Host: "10.0.0.1", TCPPort: 5062, TLSPort: 5063, Ping: time.Second},
			{Name: "b", Host: "10.0.0.2", TCPPort: 5062, TLSPort: 5063, Ping: time.Second},
		}}},
	}
}

func call(id string) *router.Call {
	return &router.Call{CallID: id, Transport: router.UDP, Source: netip.MustParseAddr("127.0.0.1"), RequestURIUser: "1001"}
}

func TestEngineCachesDecisions(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &fakeRouter{topo: testTopology()}
	e := newTestEngine(t, r, fakeHealth{"backend/p/a": true, "backend/p/b": true}, &now)
	for i := range 100 {
		if _, err := e.Route(context.Background(), call(string(rune('a'+i%26)))); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.calls.Load(); got != 1 {
		t.Errorf("plugin calls = %d, want 1 (decisions cached)", got)
	}
	now = now.Add(2 * time.Minute) // past the TTL: asks again
	if _, err := e.Route(context.Background(), call("x")); err != nil {
		t.Fatal(err)
	}
	if got := r.calls.Load(); got != 2 {
		t.Errorf("plugin calls after TTL = %d, want 2", got)
	}
}

func TestEngineServesStaleWhenPluginDown(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &fakeRouter{topo: testTopology()}
	e := newTestEngine(t, r, fakeHealth{"backend/p/a": true}, &now)
	if _, err := e.Route(context.Background(), call("1")); err != nil {
		t.Fatal(err)
	}
	down := error(base.ErrUnavailable)
	r.err.Store(&down)
	now = now.Add(time.Hour)
	tg, err := e.Route(context.Background(), call("2"))
	if err != nil || tg.Backend == nil {
		t.Fatalf("Route() with plugin down and a stale entry = %v, %v; want the stale decision", tg, err)
	}
	c := call("3")
	c.RequestURIUser = "1002" // never seen: nothing to fall back on
	if _, err := e.Route(context.Background(), c); !errors.Is(err, ErrPluginUnavailable) || !errors.Is(err, base.ErrUnavailable) {
		t.Fatalf("Route() unseen call with plugin down = %v, want ErrPluginUnavailable wrapping base.ErrUnavailable", err)
	}
}

func TestEngineCachesRejections(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &fakeRouter{topo: testTopology(), reject: true}
	e := newTestEngine(t, r, fakeHealth{}, &now)
	for range 3 {
		tg, err := e.Route(context.Background(), call("1"))
		if !errors.Is(err, router.ErrUnknownNumber) {
			t.Fatalf("Route() = %v, want ErrUnknownNumber", err)
		}
		if tg.Decision != nil {
			t.Errorf("rejection came with a decision %+v", tg.Decision)
		}
	}
	if got := r.calls.Load(); got != 1 {
		t.Errorf("plugin calls = %d, want 1", got)
	}
}

func TestEnginePicksHealthyBackendDeterministically(t *testing.T) {
	now := time.Unix(1000, 0)
	h := fakeHealth{"backend/p/a": true, "backend/p/b": true}
	e := newTestEngine(t, &fakeRouter{topo: testTopology()}, h, &now)
	seen := map[string]int{}
	for i := range 200 {
		id := string(rune(0x4e00 + i))
		t1, err1 := e.Route(context.Background(), call(id))
		t2, err2 := e.Route(context.Background(), call(id))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if t1.Backend != t2.Backend {
			t.Fatalf("retransmission of %q went to %s then %s", id, t1.Backend.Name, t2.Backend.Name)
		}
		seen[t1.Backend.Name]++
	}
	if seen["a"] < 60 || seen["b"] < 60 {
		t.Errorf("back ends chosen %v, want a rough balance", seen)
	}
	h["backend/p/a"] = false
	for i := range 50 {
		tg, err := e.Route(context.Background(), call(string(rune(0x4e00+i))))
		if err != nil || tg.Backend.Name != "b" {
			t.Fatalf("with a down: Route() = %v, %v; want b", tg.Backend, err)
		}
	}
	h["backend/p/b"] = false
	if _, err := e.Route(context.Background(), call("z")); !errors.Is(err, ErrNoBackend) {
		t.Fatalf("all down: Route() = %v, want ErrNoBackend", err)
	}
}

func TestEngineRateLimitsGateway(t *testing.T) {
	now := time.Unix(1000, 0)
	topo := testTopology()
	topo.Gateways[0].CallsPerSecond = 5
	e := newTestEngine(t, &fakeRouter{topo: topo}, fakeHealth{"backend/p/a": true}, &now)
	ok, limited := 0, 0
	for range 20 {
		_, err := e.Route(context.Background(), call("c"))
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrRateLimited):
			limited++
		default:
			t.Fatal(err)
		}
	}
	if ok != 5 || limited != 15 {
		t.Errorf("in one instant: %d accepted, %d limited; want 5 and 15", ok, limited)
	}
	now = now.Add(time.Second)
	if _, err := e.Route(context.Background(), call("c")); err != nil {
		t.Errorf("after a second: %v, want accepted", err)
	}
}

func TestEngineRefreshDropsCacheOnNewGeneration(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &fakeRouter{topo: testTopology()}
	e := newTestEngine(t, r, fakeHealth{"backend/p/a": true}, &now)
	if _, err := e.Route(context.Background(), call("1")); err != nil {
		t.Fatal(err)
	}
	if err := e.Refresh(context.Background()); err != nil { // same generation: cache kept
		t.Fatal(err)
	}
	if _, err := e.Route(context.Background(), call("1")); err != nil {
		t.Fatal(err)
	}
	r.topo.Generation = 2
	if err := e.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Route(context.Background(), call("1")); err != nil {
		t.Fatal(err)
	}
	if got := r.calls.Load(); got != 2 {
		t.Errorf("plugin calls = %d, want 2 (one per generation)", got)
	}
}

func TestEngineWithoutTopology(t *testing.T) {
	e := New(Config{CacheTTL: time.Minute, CacheSize: 10}, &fakeRouter{}, fakeHealth{})
	if _, err := e.Route(context.Background(), call("1")); !errors.Is(err, ErrPluginUnavailable) {
		t.Fatalf("Route() before Refresh = %v, want ErrPluginUnavailable", err)
	}
}
