package routing

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/health"
	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// fakeRouter serves a table and answers Route with route (or a fixed
// decision); calls counts Route calls.
type fakeRouter struct {
	mu    sync.Mutex
	table router.Table
	route func(ctx context.Context, c *router.Call) (*router.Decision, error)
	calls atomic.Int64
}

func (f *fakeRouter) Info(context.Context) (*base.Info, error) { return &base.Info{}, nil }
func (f *fakeRouter) Configure(context.Context, []byte) error  { return nil }

func (f *fakeRouter) Table(context.Context) (*router.Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.table
	return &t, nil
}

func (f *fakeRouter) setTable(t router.Table) {
	f.mu.Lock()
	f.table = t
	f.mu.Unlock()
}

func (f *fakeRouter) Route(ctx context.Context, c *router.Call) (*router.Decision, error) {
	f.calls.Add(1)
	if f.route != nil {
		return f.route(ctx, c)
	}
	return &router.Decision{Service: router.DirectVoicemail, Called: c.RequestURIUser, Pool: "p"}, nil
}

type fakeHealth map[string]bool

func (h fakeHealth) Set([]health.Target) {}
func (h fakeHealth) Up(name string) bool { return h[name] }

var gwAddr = netip.MustParseAddr("192.0.2.10")

// testTable: gateway gw (192.0.2.10) → TelExtn/4 dial plan lab with
// mailboxes 1001 (pool p) and 1002 (pool q), pilot 5000; dial plan dir
// (pilot 6000 on gw) leaves unlisted numbers to the plugin.
func testTable(gen uint64) router.Table {
	return router.Table{
		Generation: gen,
		Gateways: []router.Gateway{{
			Name: "gw", Addresses: []netip.Addr{gwAddr}, Status: router.GatewayEnabled,
			HuntGroups: []router.HuntGroup{{DialPlan: "lab"}, {Pilot: "6000", DialPlan: "dir"}},
		}},
		DialPlans: []router.DialPlan{
			{Name: "lab", URIType: router.TelExtn, ExtensionDigits: 4, Security: router.Unsecured, Pool: "p",
				AccessNumbers: []string{"5000"},
				Mailboxes:     []router.Mailbox{{Number: "1001", Name: "alice"}, {Number: "1002", Name: "bob", Pool: "q"}}},
			{Name: "dir", URIType: router.TelExtn, ExtensionDigits: 4, Security: router.Unsecured, Pool: "p",
				Unlisted: router.AskPlugin},
		},
		Pools: []router.Pool{
			{Name: "p", Backends: []router.Backend{
				{Name: "a", Host: "10.0.0.1", TCPPort: 5062, TLSPort: 5063, Ping: time.Second},
				{Name: "b", Host: "10.0.0.2", TCPPort: 5062, TLSPort: 5063, Ping: time.Second},
			}},
			{Name: "q", Backends: []router.Backend{{Name: "c", Host: "10.0.0.3", TCPPort: 5062, TLSPort: 5063}}},
		},
	}
}

var allUp = fakeHealth{"backend/p/a": true, "backend/p/b": true}

func newTestEngine(t *testing.T, r *fakeRouter, cfg Config, opts ...Option) *Engine {
	t.Helper()
	e := New(cfg, r, allUp, opts...)
	t.Cleanup(e.Close)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

func diverted(from, to string) *router.Call {
	return &router.Call{
		CallID: "c-" + from, Transport: router.UDP, Source: gwAddr,
		RequestURIUser: "5000", ToUser: "5000", FromUser: from,
		Diversion: []router.Diversion{{User: to, Reason: "no-answer"}},
	}
}

func direct(number string) *router.Call {
	return &router.Call{CallID: "d-" + number, Transport: router.UDP, Source: gwAddr, RequestURIUser: number, FromUser: "4711"}
}

// errDeferred stands for "handed to Ask": the answer comes through done.
var errDeferred = errors.New("deferred to the plugin")

// routeOrAsk does what the SIP front does: Route, and Ask for what the
// table leaves to the plugin.
func routeOrAsk(e *Engine, c *router.Call, done Done) (Target, error) {
	tg, err := e.Route(c)
	if !errors.Is(err, router.ErrAskPlugin) || done == nil {
		return tg, err
	}
	if err := e.Ask(c, tg, done); err != nil {
		return tg, err
	}
	return tg, errDeferred
}

// askCall is a call for pilot 6000 (dial plan dir, which leaves unlisted
// numbers to the plugin) diverted from number.
func askCall(number string) *router.Call {
	c := direct(number)
	c.RequestURIUser = "6000"
	c.Diversion = []router.Diversion{{User: number}}
	return c
}

// noDone fails the test if a call that should be answered at once is deferred.
func noDone(t *testing.T) Done {
	t.Helper()
	return func(Target, error) { t.Error("done called for a call decided from the table") }
}

func TestRouteFromTableWithoutPluginCalls(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	e := newTestEngine(t, r, Config{})
	for i := range 1000 { // every call from another caller, as on a real site
		from := fmt.Sprintf("+4930%06d", i)
		tg, err := routeOrAsk(e, diverted(from, "1002"), noDone(t))
		if err != nil {
			t.Fatalf("call from %s: %v", from, err)
		}
		if tg.Decision.Mailbox != "bob" || tg.Backend.Name != "c" || tg.Decision.Service != router.CallAnswering {
			t.Fatalf("call from %s: %+v %+v, want bob on c", from, tg.Decision, tg.Backend)
		}
	}
	if n := r.calls.Load(); n != 0 {
		t.Errorf("plugin Route calls = %d, want 0: the table answers these", n)
	}
	if s := e.Stats(); s.Decided != 1000 || s.Asked != 0 {
		t.Errorf("Stats() = %+v, want 1000 decided, 0 asked", s)
	}
}

// Finding 1 of issue 5: with the old cache, a From user that %-decodes to
// the cache key's separators made a plain diverted call share the key of a
// crafted one. A table evaluated per call has no key to collide with.
func TestCraftedCallerDoesNotPoisonOtherCalls(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	e := newTestEngine(t, r, Config{})
	crafted := diverted("2001|d:1001;no-answer", "9999") // the decoded form of 2001%7Cd%3A1001%3Bno-answer
	if _, err := routeOrAsk(e, crafted, noDone(t)); !errors.Is(err, router.ErrBadNumber) {
		t.Fatalf("crafted call: err = %v, want bad-number (not numeric in a TelExtn plan)", err)
	}
	legit := diverted("2001", "1001")
	legit.Diversion = append(legit.Diversion, router.Diversion{User: "9999", Reason: "no-answer"})
	tg, err := routeOrAsk(e, legit, noDone(t))
	if err != nil || tg.Decision.Mailbox != "alice" {
		t.Fatalf("legit call after the crafted one: %+v, %v; want alice", tg.Decision, err)
	}
}

func TestUnknownSourceRefusedInTheCore(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	e := newTestEngine(t, r, Config{})
	for i := range 256 {
		c := direct("1001")
		c.Source = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if _, err := routeOrAsk(e, c, noDone(t)); !errors.Is(err, router.ErrUnknownPeer) {
			t.Fatalf("call from %s: err = %v, want unknown-peer", c.Source, err)
		}
	}
	if n := r.calls.Load(); n != 0 {
		t.Errorf("plugin Route calls = %d, want 0", n)
	}
}

func TestKnownSource(t *testing.T) {
	e := New(Config{}, &fakeRouter{table: testTable(1)}, allUp)
	t.Cleanup(e.Close)
	if e.KnownSource(gwAddr) {
		t.Error("KnownSource before any table = true")
	}
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		addr netip.Addr
		want bool
	}{
		{gwAddr, true},
		{netip.AddrFrom16(gwAddr.As16()), true}, // v4-mapped
		{netip.MustParseAddr("192.0.2.11"), false},
	} {
		if got := e.KnownSource(tt.addr); got != tt.want {
			t.Errorf("KnownSource(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestRefreshAppliesAtOnce(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	e := newTestEngine(t, r, Config{})
	if _, err := routeOrAsk(e, direct("1001"), noDone(t)); err != nil {
		t.Fatal(err)
	}
	tb := testTable(2)
	tb.Gateways[0].Status = router.GatewayDisabled
	r.setTable(tb)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := routeOrAsk(e, direct("1001"), noDone(t)); !errors.Is(err, router.ErrGatewayDisabled) {
		t.Errorf("after the gateway was disabled: err = %v, want gateway-disabled", err)
	}
}

// Finding 2 of issue 5: an answer computed under the old configuration
// must not be given after a reload.
func TestAskInFlightDuringRefreshIsDecidedAgain(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	r := &fakeRouter{table: testTable(1)}
	r.route = func(ctx context.Context, c *router.Call) (*router.Decision, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &router.Decision{Service: router.DirectVoicemail, Called: c.RequestURIUser, Pool: "p"}, nil
	}
	e := newTestEngine(t, r, Config{AskTimeout: 5 * time.Second})
	got := make(chan error, 1)
	c := askCall("7777")
	if _, err := routeOrAsk(e, c, func(_ Target, err error) { got <- err }); !errors.Is(err, errDeferred) {
		t.Fatalf("Route() err = %v, want errDeferred", err)
	}
	<-entered
	tb := testTable(2)
	tb.Gateways[0].Status = router.GatewayDisabled
	r.setTable(tb)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case err := <-got:
		if !errors.Is(err, router.ErrGatewayDisabled) {
			t.Errorf("answer = %v, want gateway-disabled under the new table", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
}

// An answer for a call that was still queued when the table changed must
// not be given either: the call is decided again on the table in force.
func TestQueuedAskAfterRefreshIsDecidedAgain(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	r := &fakeRouter{table: testTable(1)}
	r.route = func(ctx context.Context, c *router.Call) (*router.Decision, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &router.Decision{Service: router.DirectVoicemail, Called: c.RequestURIUser, Pool: "p"}, nil
	}
	e := newTestEngine(t, r, Config{AskWorkers: 1, AskTimeout: 5 * time.Second})
	ask := func(number string) chan error {
		got := make(chan error, 1)
		c := askCall(number)
		if _, err := routeOrAsk(e, c, func(_ Target, err error) { got <- err }); !errors.Is(err, errDeferred) {
			t.Fatalf("Route() err = %v, want it deferred", err)
		}
		return got
	}
	first := ask("7777")
	<-entered // the only worker is busy
	queued := ask("7778")
	tb := testTable(2)
	tb.Gateways[0].Status = router.GatewayDisabled
	r.setTable(tb)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	for name, ch := range map[string]chan error{"in the plugin": first, "queued": queued} {
		select {
		case err := <-ch:
			if !errors.Is(err, router.ErrGatewayDisabled) {
				t.Errorf("call %s during the refresh: %v, want gateway-disabled under the new table", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("call %s: no answer", name)
		}
	}
}

func TestAskContractBreachIsBadDecision(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	r.route = func(context.Context, *router.Call) (*router.Decision, error) {
		return nil, fmt.Errorf("%w: decision with service SERVICE_UNSPECIFIED", router.ErrContract)
	}
	e := newTestEngine(t, r, Config{})
	c := askCall("7777")
	got := make(chan error, 1)
	if _, err := routeOrAsk(e, c, func(_ Target, err error) { got <- err }); !errors.Is(err, errDeferred) {
		t.Fatalf("err = %v", err)
	}
	if err := <-got; !errors.Is(err, ErrBadDecision) {
		t.Errorf("answer = %v, want bad-decision (500), not plugin-unavailable", err)
	}
}

// Finding 3 of issue 5: rate buckets survive a refresh unless the rate changed.
func TestRateBucketsSurviveRefresh(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := testTable(1)
	tb.Gateways[0].CallsPerSecond = 2
	r := &fakeRouter{table: tb}
	e := newTestEngine(t, r, Config{}, WithClock(func() time.Time { return now }))
	for i := range 2 {
		if _, err := routeOrAsk(e, direct("1001"), noDone(t)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	for gen := uint64(2); gen < 5; gen++ { // reloads with the same rate
		tb.Generation = gen
		r.setTable(tb)
		if err := e.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := routeOrAsk(e, direct("1001"), noDone(t)); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("after refresh %d: err = %v, want rate-limited (bucket kept)", gen, err)
		}
	}
	tb.Generation = 9
	tb.Gateways[0].CallsPerSecond = 5
	r.setTable(tb)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := routeOrAsk(e, direct("1001"), noDone(t)); err != nil {
		t.Errorf("after the rate changed: err = %v, want a fresh bucket", err)
	}
}

func TestAskFullQueueAnswersAtOnce(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	r := &fakeRouter{table: testTable(1)}
	r.route = func(ctx context.Context, _ *router.Call) (*router.Decision, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, errors.New("hung")
	}
	e := newTestEngine(t, r, Config{AskWorkers: 1, AskQueue: 2, AskTimeout: 10 * time.Second})
	c := askCall("7777")
	var deferred, full int
	start := time.Now()
	for range 10 {
		_, err := routeOrAsk(e, c, func(Target, error) {})
		switch {
		case errors.Is(err, errDeferred):
			deferred++
		case errors.Is(err, ErrOverloaded):
			full++
		default:
			t.Fatalf("err = %v", err)
		}
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Route() took %s with a hung plugin; it must never wait for it", elapsed)
	}
	// one in the worker, two queued (the worker may not have taken the first yet)
	if deferred < 2 || deferred > 3 || full != 10-deferred {
		t.Errorf("deferred %d, overloaded %d; want 2 or 3 deferred and the rest overloaded", deferred, full)
	}
}

func TestAskHungPluginAnswersByTheDeadline(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	r.route = func(ctx context.Context, _ *router.Call) (*router.Decision, error) {
		<-ctx.Done() // hung: only the deadline ends it
		return nil, ctx.Err()
	}
	e := newTestEngine(t, r, Config{AskTimeout: 200 * time.Millisecond})
	c := askCall("7777")
	got := make(chan error, 1)
	start := time.Now()
	if _, err := routeOrAsk(e, c, func(_ Target, err error) { got <- err }); !errors.Is(err, errDeferred) {
		t.Fatalf("err = %v", err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrPluginUnavailable) {
			t.Errorf("answer = %v, want plugin-unavailable", err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
			t.Errorf("answered after %s, want about the 200ms deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer from a hung plugin within 5s")
	}
	if s := e.Stats(); s.AskFailed != 1 {
		t.Errorf("AskFailed = %d, want 1", s.AskFailed)
	}
}

func TestAskNotLivePluginAnswersAtOnce(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	var live atomic.Bool
	e := newTestEngine(t, r, Config{AskTimeout: 5 * time.Second}, WithLiveness(live.Load))
	c := askCall("7777")
	if _, err := routeOrAsk(e, c, func(Target, error) { t.Error("a call for a plugin that is not live was queued") }); !errors.Is(err, ErrPluginUnavailable) {
		t.Fatalf("err = %v, want plugin-unavailable at once", err)
	}
	if n := r.calls.Load(); n != 0 {
		t.Errorf("plugin Route calls = %d, want 0", n)
	}
	if _, err := routeOrAsk(e, direct("1001"), noDone(t)); err != nil {
		t.Errorf("a call the table answers: %v, want its answer whatever the plugin's state", err)
	}
	live.Store(true)
	got := make(chan error, 1)
	if _, err := routeOrAsk(e, c, func(_ Target, err error) { got <- err }); !errors.Is(err, errDeferred) {
		t.Fatalf("live again: err = %v, want errDeferred", err)
	}
	if err := <-got; err != nil {
		t.Errorf("answer = %v", err)
	}
}

func TestAskAnswerTakesGatewayAndPlanFromTheTable(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	r.route = func(_ context.Context, c *router.Call) (*router.Decision, error) {
		if c.Diversion[0].User == "7000" {
			return nil, &router.Rejection{Reason: router.ErrUnknownNumber, Gateway: "liar", Detail: "not in the directory"}
		}
		return &router.Decision{Gateway: "liar", DialPlan: "nope", Service: router.CallAnswering, Called: "7777", Mailbox: "carol", Pool: "q"}, nil
	}
	e := newTestEngine(t, r, Config{})
	for _, tt := range []struct {
		number  string
		wantErr error
	}{{"7777", nil}, {"7000", router.ErrUnknownNumber}} {
		c := askCall(tt.number)
		type answer struct {
			tg  Target
			err error
		}
		got := make(chan answer, 1)
		if _, err := routeOrAsk(e, c, func(tg Target, err error) { got <- answer{tg, err} }); !errors.Is(err, errDeferred) {
			t.Fatalf("err = %v", err)
		}
		a := <-got
		if !errors.Is(a.err, tt.wantErr) && (tt.wantErr != nil || a.err != nil) {
			t.Fatalf("%s: err = %v, want %v", tt.number, a.err, tt.wantErr)
		}
		if a.tg.Decision == nil || a.tg.Decision.Gateway != "gw" || a.tg.Decision.DialPlan != "dir" {
			t.Errorf("%s: decision %+v, want gateway gw and dial plan dir from the table", tt.number, a.tg.Decision)
		}
		var rej *router.Rejection
		if errors.As(a.err, &rej) && (rej.Gateway != "gw" || rej.DialPlan != "dir") {
			t.Errorf("%s: rejection %+v, want gateway gw and dial plan dir", tt.number, rej)
		}
		if tt.wantErr == nil && a.tg.Backend.Name != "c" {
			t.Errorf("%s: back end %+v, want c of pool q", tt.number, a.tg.Backend)
		}
	}
}

func TestBadTableKeepsTheLastGoodOne(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	e := newTestEngine(t, r, Config{})
	bad := testTable(2)
	bad.DialPlans[0].Pool = "nowhere"
	r.setTable(bad)
	err := e.Refresh(t.Context())
	if !errors.Is(err, router.ErrBadTable) {
		t.Fatalf("Refresh() = %v, want ErrBadTable", err)
	}
	if why := e.RefreshError(); !strings.Contains(why, "nowhere") {
		t.Errorf("RefreshError() = %q, want the refusal naming the pool", why)
	}
	if e.Stats().Generation != 1 || e.Stats().BadTables != 1 {
		t.Errorf("Stats() = %+v, want generation 1 in force and 1 bad table", e.Stats())
	}
	if _, err := routeOrAsk(e, direct("1001"), noDone(t)); err != nil {
		t.Errorf("call under the last good table: %v", err)
	}
	r.setTable(testTable(3))
	if err := e.Refresh(t.Context()); err != nil || e.RefreshError() != "" {
		t.Errorf("a good table after a bad one: %v, RefreshError %q", err, e.RefreshError())
	}
}

func TestBackendPick(t *testing.T) {
	r := &fakeRouter{table: testTable(1)}
	e := New(Config{}, r, fakeHealth{"backend/p/b": true}, WithClock(time.Now))
	t.Cleanup(e.Close)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		c := direct("1001")
		c.CallID = fmt.Sprintf("call-%d", i)
		tg, err := routeOrAsk(e, c, noDone(t))
		if err != nil || tg.Backend.Name != "b" {
			t.Fatalf("call %d: %+v, %v; want the only healthy back end b", i, tg.Backend, err)
		}
		again, _ := routeOrAsk(e, c, noDone(t))
		if again.Backend != tg.Backend {
			t.Fatalf("call %d: a retransmission got another back end", i)
		}
	}
	down := New(Config{}, r, fakeHealth{}, WithClock(time.Now))
	t.Cleanup(down.Close)
	if err := down.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := routeOrAsk(down, direct("1001"), noDone(t)); !errors.Is(err, ErrNoBackend) {
		t.Errorf("every back end down: err = %v, want no-healthy-backend", err)
	}
	// A TLS-only back end takes no TCP calls.
	tb := testTable(3)
	tb.Pools[1].Backends[0].TCPPort = 0
	r.setTable(tb)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := routeOrAsk(e, direct("1002"), noDone(t)); !errors.Is(err, ErrNoBackend) {
		t.Errorf("TLS-only back end for a UDP call: err = %v, want no-healthy-backend", err)
	}
}

func BenchmarkRouteDiverted(b *testing.B) {
	tb := testTable(1)
	for i := range 10000 {
		tb.DialPlans[0].Mailboxes = append(tb.DialPlans[0].Mailboxes, router.Mailbox{Number: fmt.Sprintf("%04d", i), Name: fmt.Sprint("m", i)})
	}
	tb.DialPlans[0].Mailboxes = tb.DialPlans[0].Mailboxes[2:] // 1001, 1002 are in the range again
	tb.DialPlans[0].Mailboxes[1001-2].Pool = ""
	r := &fakeRouter{table: tb}
	e := New(Config{}, r, allUp)
	defer e.Close()
	if err := e.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	calls := make([]*router.Call, 4096)
	for i := range calls {
		calls[i] = diverted(fmt.Sprintf("+4930%06d", i*7919%1000000), fmt.Sprintf("%04d", i*31%10000))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.Route(calls[i%len(calls)]); err != nil {
			b.Fatal(err)
		}
	}
}

// A proxy pool's Target carries the other healthy back ends, in the order
// the rendezvous hash would pick them, for the B2BUA to fail over to; a
// redirect gets none (its caller retries elsewhere itself).
func TestProxyTargetsCarryAlternates(t *testing.T) {
	tb := testTable(1)
	tb.Pools[0].Action = router.Proxy
	tb.Pools[0].Backends = append(tb.Pools[0].Backends,
		router.Backend{Name: "down", Host: "10.0.0.9", TCPPort: 5062, Ping: time.Second},
		router.Backend{Name: "udp-only", Host: "10.0.0.8", UDPPort: 5060})
	e := New(Config{}, &fakeRouter{table: tb}, allUp)
	t.Cleanup(e.Close)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i := range 200 {
		tg, err := e.Route(diverted(fmt.Sprintf("+4930%06d", i), "1001"))
		if err != nil {
			t.Fatal(err)
		}
		if tg.Action != router.Proxy || tg.Security != router.Unsecured {
			t.Fatalf("target %+v", tg)
		}
		names := []string{tg.Backend.Name}
		for _, b := range tg.Alternates {
			names = append(names, b.Name)
		}
		if len(names) != 3 || slices.Contains(names, "down") || !slices.Contains(names, "udp-only") {
			t.Fatalf("back end and alternates %v: want a, b and udp-only (down is down), each once", names)
		}
		seen[names[0]]++
	}
	if len(seen) != 3 {
		t.Errorf("first choices %v: calls do not spread over the pool", seen)
	}
	if tg, _ := e.Route(diverted("+1", "1002")); len(tg.Alternates) != 0 {
		t.Errorf("a redirect pool's target has alternates %v", tg.Alternates)
	}
}

// recordingHealth keeps the targets the engine hands it.
type recordingHealth struct {
	fakeHealth
	mu      sync.Mutex
	targets []health.Target
}

func (h *recordingHealth) Set(ts []health.Target) {
	h.mu.Lock()
	h.targets = ts
	h.mu.Unlock()
}

// Every back end with a Ping gets a probe over a transport it speaks: a
// proxy pool's UDP-only trunk over UDP, a TLS-only back end over TLS
// (before, only TCP ports were probed, and a probed back end without one
// was never up); per-peer tuning comes from Config.Probes by pool or
// gateway name (R-SBC-6).
func TestProbeTargets(t *testing.T) {
	tbl := testTable(1)
	tbl.Gateways[0].Ping, tbl.Gateways[0].PingTarget, tbl.Gateways[0].PingTransport = time.Second, "192.0.2.10:5060", router.UDP
	tbl.Pools = append(tbl.Pools,
		router.Pool{Name: "trunk", Action: router.Proxy, Backends: []router.Backend{
			{Name: "udp", Host: "10.0.1.1", UDPPort: 5070, Ping: time.Second},
			{Name: "tls", Host: "10.0.1.2", TLSPort: 5071, Ping: time.Second},
			{Name: "both", Host: "10.0.1.3", UDPPort: 5060, TCPPort: 5060, Ping: time.Second},
			{Name: "quiet", Host: "10.0.1.4", UDPPort: 5060},
		}})
	trunk := health.Tuning{IntervalDown: 5 * time.Second, UpAfter: 3, DownAfter: 2}
	gw := health.Tuning{UpAfter: 4}
	h := &recordingHealth{fakeHealth: allUp}
	e := New(Config{Probes: map[string]health.Tuning{"trunk": trunk, "gw": gw}}, &fakeRouter{table: tbl}, h)
	t.Cleanup(e.Close)
	if err := e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[string]health.Target{
		"gateway/gw":         {Addr: "192.0.2.10:5060", Transport: "udp", Tuning: gw},
		"backend/p/a":        {Addr: "10.0.0.1:5062", Transport: "tcp"},
		"backend/p/b":        {Addr: "10.0.0.2:5062", Transport: "tcp"},
		"backend/trunk/udp":  {Addr: "10.0.1.1:5070", Transport: "udp", Tuning: trunk},
		"backend/trunk/tls":  {Addr: "10.0.1.2:5071", Transport: "tls", Tuning: trunk},
		"backend/trunk/both": {Addr: "10.0.1.3:5060", Transport: "tcp", Tuning: trunk},
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.targets) != len(want) {
		t.Errorf("%d targets, want %d: %+v", len(h.targets), len(want), h.targets)
	}
	for _, got := range h.targets {
		w, ok := want[got.Name]
		w.Name, w.Interval = got.Name, time.Second
		if !ok || got != w {
			t.Errorf("target %+v, want %+v", got, w)
		}
	}
}
