package sdktest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// RouterClient serves impl through go-plugin's in-process gRPC connection,
// with the same plugin set as router.Serve, and returns the host-side
// client. Client and server are closed at t.Cleanup.
func RouterClient(t *testing.T, impl router.Router) router.Router {
	t.Helper()
	ps := map[string]plugin.Plugin{
		base.PluginName:   &base.GRPCPlugin{Impl: impl},
		router.PluginName: &router.GRPCPlugin{Impl: impl},
	}
	client, server := plugin.TestPluginGRPCConn(t, false, ps)
	t.Cleanup(func() {
		// Stop the server first: Close would otherwise ask it to stop
		// itself over the Controller service, which races with Stop.
		server.Stop()
		_ = client.Close()
	})
	// Dispense in the host's order: base first, then the kind.
	if _, err := client.Dispense(base.PluginName); err != nil {
		t.Fatalf("dispense %q: %v", base.PluginName, err)
	}
	raw, err := client.Dispense(router.PluginName)
	if err != nil {
		t.Fatalf("dispense %q: %v", router.PluginName, err)
	}
	r, ok := raw.(router.Router)
	if !ok {
		t.Fatalf("dispense %q: got %T, want a router.Router", router.PluginName, raw)
	}
	return r
}

// RouterFixture is what a router plugin hands the conformance suite: a
// valid configuration and the calls to decide under it.
type RouterFixture struct {
	Settings []byte // a valid settings table, as the host would pass it
	// Changed is another valid settings table whose routing table differs
	// from Settings' (optional): the suite then checks that its Table
	// has another Generation. The core skips a table whose generation it
	// has already compiled, so a generation that does not change with
	// the content would leave an old table in force.
	Changed []byte
	Calls   []RouterCase
}

// RouterCase is one call and its wanted outcome. Exactly one of WantPool
// and WantReason is set.
type RouterCase struct {
	Name       string
	Call       router.Call
	WantPool   string // the call is routed to this pool
	WantReason error  // the call is rejected with this reason (one of router.Reasons)
}

// garbageSettings is no TOML at all; every plugin must refuse it with a
// *base.ConfigError.
var garbageSettings = []byte("[[[ this = = is not toml\n\"unterminated\n")

// RunRouterSuite checks impl against the Router contract, first directly
// and then through the gRPC adapters (RouterClient):
//
//   - Info reports kind router, base.APIVersion, a name and a version.
//   - Configure refuses garbage with a *base.ConfigError listing at least
//     one problem, and keeps its previous configuration when it does.
//   - Configure accepts fx.Settings.
//   - Table has gateways and pools with unique names; every pool has
//     back ends, each with a host and a port; router.Compile accepts it.
//   - Route agrees with the table: for every case the compiled table
//     decides (not router.ErrAskPlugin), Route gives the same pool or
//     rejection reason, and the fixture's wanted outcome holds for
//     whichever of the two the core would use.
//   - Every case of fx is decided as wanted, decided the same way again
//     (Route is a pure function), and decided the same way from 8
//     goroutines at once (run the suite with -race).
//   - Route with a cancelled ctx does not panic, and through gRPC fails
//     with an error that errors.Is context.Canceled.
//
// impl is configured with fx.Settings when the suite returns.
func RunRouterSuite(t *testing.T, impl router.Router, fx RouterFixture) {
	t.Helper()
	checkFixture(t, fx)
	t.Run("direct", func(t *testing.T) {
		runRouterSuite(t, impl, fx, false)
	})
	t.Run("grpc", func(t *testing.T) {
		runRouterSuite(t, RouterClient(t, impl), fx, true)
	})
}

func checkFixture(t *testing.T, fx RouterFixture) {
	t.Helper()
	if len(fx.Calls) == 0 {
		t.Fatal("fixture: no calls")
	}
	seen := make(map[string]bool)
	for i, c := range fx.Calls {
		if c.Name == "" {
			t.Fatalf("fixture: call %d has no name", i)
		}
		if seen[c.Name] {
			t.Fatalf("fixture: call name %q used twice", c.Name)
		}
		seen[c.Name] = true
		if (c.WantPool == "") == (c.WantReason == nil) {
			t.Fatalf("fixture: call %q must set exactly one of WantPool and WantReason", c.Name)
		}
		if c.WantReason != nil && !slices.Contains(router.Reasons, c.WantReason) {
			t.Fatalf("fixture: call %q: WantReason %v is none of router.Reasons", c.Name, c.WantReason)
		}
	}
}

func runRouterSuite(t *testing.T, r router.Router, fx RouterFixture, overGRPC bool) {
	t.Helper()
	ctx := t.Context()

	t.Run("info", func(t *testing.T) {
		info, err := r.Info(ctx)
		if err != nil {
			t.Fatalf("Info() error = %v", err)
		}
		if info.Kind != base.KindRouter {
			t.Errorf("Info().Kind = %q, want %q", info.Kind, base.KindRouter)
		}
		if info.APIVersion != base.APIVersion {
			t.Errorf("Info().APIVersion = %d, want %d", info.APIVersion, base.APIVersion)
		}
		if info.Name == "" {
			t.Error("Info().Name is empty")
		}
		if info.Version == "" {
			t.Error("Info().Version is empty")
		}
	})

	if !t.Run("configure", func(t *testing.T) {
		checkRefused(t, r.Configure(ctx, garbageSettings))
		if err := r.Configure(ctx, fx.Settings); err != nil {
			t.Fatalf("Configure(fixture settings) error = %v", err)
		}
		before := snapshot(t, r, fx, "after Configure(fixture settings)")
		checkRefused(t, r.Configure(ctx, garbageSettings))
		after := snapshot(t, r, fx, "after a refused Configure")
		if !reflect.DeepEqual(before.table, after.table) {
			t.Errorf("table changed after a refused Configure:\nbefore %+v\nafter  %+v", before.table, after.table)
		}
		for i, c := range fx.Calls {
			if before.routes[i] != after.routes[i] {
				t.Errorf("call %q after a refused Configure: %s, before: %s", c.Name, after.routes[i], before.routes[i])
			}
		}
		if err := r.Configure(ctx, fx.Settings); err != nil {
			t.Fatalf("Configure(fixture settings) again: error = %v", err)
		}
		again := snapshot(t, r, fx, "after Configure(fixture settings) again")
		if again.table.Generation != before.table.Generation {
			t.Errorf("the same settings gave generation %d, then %d: a no-op reload must keep it", before.table.Generation, again.table.Generation)
		}
		if fx.Changed != nil {
			if err := r.Configure(ctx, fx.Changed); err != nil {
				t.Fatalf("Configure(fixture Changed) error = %v", err)
			}
			changed := snapshot(t, r, fx, "after Configure(fixture Changed)")
			if reflect.DeepEqual(changed.table.Gateways, before.table.Gateways) && reflect.DeepEqual(changed.table.DialPlans, before.table.DialPlans) &&
				reflect.DeepEqual(changed.table.Pools, before.table.Pools) {
				t.Fatal("fixture: Changed gives the same table as Settings")
			}
			if changed.table.Generation == before.table.Generation {
				t.Errorf("a changed table kept generation %d: the core would not put it in force", before.table.Generation)
			}
			if err := r.Configure(ctx, fx.Settings); err != nil {
				t.Fatalf("Configure(fixture settings) after Changed: error = %v", err)
			}
		}
	}) {
		return
	}

	var topo *router.Table
	var compiled *router.Compiled
	if !t.Run("table", func(t *testing.T) {
		var err error
		topo, err = r.Table(ctx)
		if err != nil {
			t.Fatalf("Table() error = %v", err)
		}
		checkTable(t, topo)
		if compiled, err = router.Compile(topo); err != nil {
			t.Fatalf("Compile(Table()) error = %v", err)
		}
	}) {
		return
	}

	want := make([]string, len(fx.Calls))
	t.Run("route", func(t *testing.T) {
		for i, c := range fx.Calls {
			t.Run(c.Name, func(t *testing.T) {
				call := c.Call
				d, err := r.Route(ctx, &call)
				want[i] = outcome(d, err)
				if td, terr := compiled.Decide(&c.Call); !errors.Is(terr, router.ErrAskPlugin) {
					// The core answers this call from the table: it must
					// agree with the plugin, and be what the fixture wants.
					checkOutcome(t, topo, c, td, terr)
					if got, tw := short(d, err), short(td, terr); got != tw {
						t.Errorf("Route() = %s, but the compiled table decides %s", got, tw)
					}
				}
				checkOutcome(t, topo, c, d, err)

				call2 := c.Call
				if again := outcome(r.Route(ctx, &call2)); again != want[i] {
					t.Errorf("Route() is not deterministic: first %s, then %s", want[i], again)
				}
			})
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		call := fx.Calls[0].Call
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("Route() with a cancelled ctx panicked: %v", p)
				}
			}()
			_, err = r.Route(cctx, &call)
		}()
		if overGRPC && !errors.Is(err, context.Canceled) {
			t.Errorf("Route() with a cancelled ctx error = %v, want errors.Is context.Canceled", err)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		const goroutines, rounds = 8, 3
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Go(func() {
				for range rounds {
					for i, c := range fx.Calls {
						call := c.Call
						if got := outcome(r.Route(ctx, &call)); got != want[i] {
							t.Errorf("goroutine %d, call %q: %s, want %s", g, c.Name, got, want[i])
						}
					}
				}
			})
		}
		wg.Wait()
	})
}

// checkRefused wants a *base.ConfigError with at least one problem, each
// with a message.
func checkRefused(t *testing.T, err error) {
	t.Helper()
	var ce *base.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Configure(garbage) error = %v (%T), want a *base.ConfigError", err, err)
	}
	if len(ce.Problems) == 0 {
		t.Fatal("Configure(garbage) returned a *base.ConfigError without problems")
	}
	for i, p := range ce.Problems {
		if p.Message == "" {
			t.Errorf("Configure(garbage) problem %d (path %q) has no message", i, p.Path)
		}
	}
}

type routerSnapshot struct {
	table  *router.Table
	routes []string
}

func snapshot(t *testing.T, r router.Router, fx RouterFixture, when string) routerSnapshot {
	t.Helper()
	table, err := r.Table(t.Context())
	if err != nil {
		t.Fatalf("%s: Table() error = %v", when, err)
	}
	s := routerSnapshot{table: table}
	for _, c := range fx.Calls {
		call := c.Call
		s.routes = append(s.routes, outcome(r.Route(t.Context(), &call)))
	}
	return s
}

var (
	gatewayStatuses = []router.GatewayStatus{router.GatewayEnabled, router.GatewayDisabled, router.GatewayNoNewCalls}
	services        = []router.Service{router.CallAnswering, router.SubscriberAccess, router.DirectVoicemail}
)

func checkTable(t *testing.T, topo *router.Table) {
	t.Helper()
	if topo == nil {
		t.Fatal("Table() = nil, nil")
	}
	if len(topo.Gateways) == 0 {
		t.Error("table has no gateways")
	}
	if len(topo.Pools) == 0 {
		t.Error("table has no pools")
	}
	gateways := make(map[string]bool)
	for i, g := range topo.Gateways {
		switch {
		case g.Name == "":
			t.Errorf("gateway %d has no name", i)
		case gateways[g.Name]:
			t.Errorf("gateway name %q used twice", g.Name)
		}
		gateways[g.Name] = true
		if !slices.Contains(gatewayStatuses, g.Status) {
			t.Errorf("gateway %q: status %q is none of %v", g.Name, g.Status, gatewayStatuses)
		}
		for _, a := range g.Addresses {
			if !a.IsValid() {
				t.Errorf("gateway %q has an invalid address", g.Name)
			}
		}
	}
	pools := make(map[string]bool)
	for i, p := range topo.Pools {
		switch {
		case p.Name == "":
			t.Errorf("pool %d has no name", i)
		case pools[p.Name]:
			t.Errorf("pool name %q used twice", p.Name)
		}
		pools[p.Name] = true
		if len(p.Backends) == 0 {
			t.Errorf("pool %q has no back ends", p.Name)
		}
		for j, b := range p.Backends {
			if b.Host == "" {
				t.Errorf("pool %q, back end %d (%q): no host", p.Name, j, b.Name)
			}
			if b.TCPPort == 0 && b.TLSPort == 0 {
				t.Errorf("pool %q, back end %d (%q): no port", p.Name, j, b.Name)
			}
			for _, port := range []int{b.TCPPort, b.TLSPort} {
				if port < 0 || port > 65535 {
					t.Errorf("pool %q, back end %d (%q): port %d out of range", p.Name, j, b.Name, port)
				}
			}
		}
	}
}

func checkOutcome(t *testing.T, topo *router.Table, c RouterCase, d *router.Decision, err error) {
	t.Helper()
	if c.WantPool != "" {
		if err != nil {
			t.Fatalf("Route() error = %v, want pool %q", err, c.WantPool)
		}
		if d == nil {
			t.Fatal("Route() = nil, nil")
		}
		if d.Pool != c.WantPool {
			t.Errorf("Route().Pool = %q, want %q", d.Pool, c.WantPool)
		}
		if !slices.ContainsFunc(topo.Pools, func(p router.Pool) bool { return p.Name == d.Pool }) {
			t.Errorf("Route().Pool = %q is no pool of the table", d.Pool)
		}
		// Gateway and dial plan do not cross the wire: the core sets them.
		if d.Gateway != "" && !slices.ContainsFunc(topo.Gateways, func(g router.Gateway) bool { return g.Name == d.Gateway }) {
			t.Errorf("Route().Gateway = %q is no gateway of the table", d.Gateway)
		}
		if !slices.Contains(services, d.Service) {
			t.Errorf("Route().Service = %q is none of %v", d.Service, services)
		}
		return
	}
	var rej *router.Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("Route() = %+v, %v; want a *router.Rejection for %v", d, err, c.WantReason)
	}
	if !errors.Is(err, c.WantReason) {
		t.Errorf("Route() rejection reason = %v, want %v", rej.Reason, c.WantReason)
	}
	if !slices.Contains(router.Reasons, rej.Reason) {
		t.Errorf("Route() rejection reason %v is none of router.Reasons", rej.Reason)
	}
	if rej.Gateway != "" && !slices.ContainsFunc(topo.Gateways, func(g router.Gateway) bool { return g.Name == rej.Gateway }) {
		t.Errorf("Route() rejection gateway %q is no gateway of the table", rej.Gateway)
	}
}

// short is the part of an outcome the core acts on: the pool, or the
// rejection reason.
func short(d *router.Decision, err error) string {
	var rej *router.Rejection
	switch {
	case errors.As(err, &rej):
		return fmt.Sprintf("rejected %v", rej.Reason)
	case err != nil:
		return "error " + err.Error()
	case d == nil:
		return "no decision and no error"
	default:
		return fmt.Sprintf("pool %s (%s)", d.Pool, d.Service)
	}
}

// outcome describes a Route result in one comparable line.
func outcome(d *router.Decision, err error) string {
	var rej *router.Rejection
	switch {
	case errors.As(err, &rej):
		return fmt.Sprintf("rejected %v (gateway %q, dial plan %q, detail %q)", rej.Reason, rej.Gateway, rej.DialPlan, rej.Detail)
	case err != nil:
		return "error " + err.Error()
	case d == nil:
		return "no decision and no error"
	default:
		return fmt.Sprintf("decision %+v", *d)
	}
}
