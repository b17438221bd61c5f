package router_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// stubRouter returns what it is told to and records the call it got.
type stubRouter struct {
	mu           sync.Mutex
	gotCall      *router.Call
	decision     *router.Decision
	routeErr     error
	table        *router.Table
	tableErr     error
	configureErr error
}

func (s *stubRouter) Info(context.Context) (*base.Info, error) {
	return &base.Info{Kind: base.KindRouter, Name: "test.stub", Version: "1", APIVersion: base.APIVersion}, nil
}

func (s *stubRouter) Configure(context.Context, []byte) error { return s.configureErr }

func (s *stubRouter) Table(context.Context) (*router.Table, error) {
	return s.table, s.tableErr
}

func (s *stubRouter) Route(ctx context.Context, call *router.Call) (*router.Decision, error) {
	s.mu.Lock()
	s.gotCall = call
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.decision, s.routeErr
}

// newPair serves impl with the plugin set of router.Serve and dispenses
// it the way the host does: base first, then router.
func newPair(t *testing.T, impl router.Router) (router.Router, *plugin.GRPCServer) {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		base.PluginName:   &base.GRPCPlugin{Impl: impl},
		router.PluginName: &router.GRPCPlugin{Impl: impl},
	})
	t.Cleanup(func() {
		server.Stop() // before Close, which would race to stop it too
		_ = client.Close()
	})
	rawBase, err := client.Dispense(base.PluginName)
	if err != nil {
		t.Fatalf("Dispense(base) error = %v", err)
	}
	info, err := rawBase.(base.Plugin).Info(t.Context())
	if err != nil || info.Kind != base.KindRouter {
		t.Fatalf("base Info() = %+v, %v", info, err)
	}
	raw, err := client.Dispense(router.PluginName)
	if err != nil {
		t.Fatalf("Dispense(router) error = %v", err)
	}
	r, ok := raw.(router.Router)
	if !ok {
		t.Fatalf("Dispense(router) = %T, want a router.Router", raw)
	}
	return r, server
}

func TestCallRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		give router.Call
	}{
		{name: "every field", give: router.Call{
			CallID:         "a84b4c76e66710@pc33.example.com",
			Transport:      router.TLS,
			Source:         netip.MustParseAddr("fe80::1%eth0"),
			PeerNames:      []string{"gw1.example.com", "gw.example.com"},
			RequestURIUser: "+4930123",
			ToUser:         "1234",
			FromUser:       "+15551234",
			Diversion: []router.Diversion{
				{User: "1234", Reason: "no-answer"},
				{User: "5678", Reason: "unconditional"},
			},
			HistoryInfo: []router.HistoryInfo{
				{Index: "1", User: "5678"},
				{Index: "1.1", User: "1234", Cause: "486"},
			},
		}},
		{name: "ipv4 source", give: router.Call{CallID: "x", Transport: router.UDP, Source: netip.MustParseAddr("192.0.2.1")}},
		{name: "zero call", give: router.Call{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := &stubRouter{decision: &router.Decision{Pool: "p", Service: router.DirectVoicemail}}
			r, _ := newPair(t, stub)
			call := tt.give
			if _, err := r.Route(t.Context(), &call); err != nil {
				t.Fatalf("Route() error = %v", err)
			}
			if !reflect.DeepEqual(*stub.gotCall, tt.give) {
				t.Errorf("plugin got call\n%#v\nwant\n%#v", *stub.gotCall, tt.give)
			}
		})
	}
}

func TestDecisionRoundTrip(t *testing.T) {
	// Gateway and dial plan are the core's: they do not cross the wire.
	give := &router.Decision{
		Gateway: "lab", DialPlan: "lab-dp", Service: router.CallAnswering,
		Called: "12\xe934", Mailbox: "alice", Pool: "um-a",
	}
	want := &router.Decision{Service: router.CallAnswering, Called: "12\xe934", Mailbox: "alice", Pool: "um-a"}
	r, _ := newPair(t, &stubRouter{decision: give})
	got, err := r.Route(t.Context(), &router.Call{})
	if err != nil {
		t.Fatalf("Route() error = %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Route() = %+v, want %+v", got, want)
	}
}

func TestTableRoundTrip(t *testing.T) {
	want := &router.Table{
		Generation: 1<<63 + 7,
		Gateways: []router.Gateway{
			{
				Name:               "lab",
				Addresses:          []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
				FQDN:               "gw.lab.example.com",
				Status:             router.GatewayNoNewCalls,
				CallsPerSecond:     12.5,
				MaxConcurrentCalls: 240,
				Ping:               30 * time.Second,
				PingTarget:         "gw.lab.example.com:5061",
				PingTransport:      router.TLS,
				HuntGroups:         []router.HuntGroup{{Pilot: "5000", DialPlan: "lab-dp"}, {DialPlan: "sip"}},
			},
			{Name: "bare", Status: router.GatewayEnabled},
		},
		DialPlans: []router.DialPlan{
			{Name: "lab-dp", URIType: router.TelExtn, ExtensionDigits: 4, Security: router.SIPSecured, Pool: "um-a",
				AccessNumbers: []string{"5000", "+4930123"}, Unlisted: router.RejectUnlisted,
				Mailboxes: []router.Mailbox{{Number: "1001", Name: "alice"}, {Number: "1002", Name: "bob", Pool: "empty"}}},
			{Name: "sip", URIType: router.SIPName, Security: router.Unsecured, Pool: "um-a", Unlisted: router.AskPlugin,
				Mailboxes: []router.Mailbox{}},
		},
		Pools: []router.Pool{
			{Name: "um-a", Action: router.Redirect, Backends: []router.Backend{
				{Name: "um1", Host: "um1.example.com", TCPPort: 5062, TLSPort: 5063, MaxCallsAllowed: 100, Ping: 1500 * time.Millisecond},
				{Name: "um2", Host: "192.0.2.100", TLSPort: 5063, UDPPort: 5070},
			}},
			{Name: "empty", Action: router.Proxy},
		},
	}
	r, _ := newPair(t, &stubRouter{table: want})
	got, err := r.Table(t.Context())
	if err != nil {
		t.Fatalf("Table() error = %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Table() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestRejectionRoundTrip(t *testing.T) {
	for _, reason := range router.Reasons {
		for _, wrapped := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/wrapped=%v", reason, wrapped), func(t *testing.T) {
				sent := &router.Rejection{Reason: reason, Gateway: "lab", DialPlan: "lab-dp", Detail: "extension 12345 has 5 digits"}
				want := &router.Rejection{Reason: reason, Detail: sent.Detail} // gateway and dial plan are the core's
				var give error = sent
				if wrapped {
					give = fmt.Errorf("match dial plan: %w", sent)
				}
				r, _ := newPair(t, &stubRouter{routeErr: give})
				d, err := r.Route(t.Context(), &router.Call{})
				if d != nil {
					t.Errorf("Route() decision = %+v, want nil", d)
				}
				for _, other := range router.Reasons {
					if is := errors.Is(err, other); is != (other == reason) {
						t.Errorf("errors.Is(%v, %v) = %v, want %v", err, other, is, !is)
					}
				}
				var got *router.Rejection
				if !errors.As(err, &got) {
					t.Fatalf("Route() error = %v (%T), want a *router.Rejection", err, err)
				}
				if got.Reason != reason { //nolint:errorlint // the very sentinel must come back
					t.Errorf("Reason = %v, want the sentinel %v", got.Reason, reason)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Rejection = %+v, want %+v", got, want)
				}
			})
		}
	}
}

func TestRouteErrors(t *testing.T) {
	tests := []struct {
		name    string
		give    *stubRouter
		cancel  bool
		wantIs  error
		wantMsg string
	}{
		{name: "plain error is no rejection", give: &stubRouter{routeErr: errors.New("store offline")},
			wantMsg: "store offline"},
		{name: "unknown reason", give: &stubRouter{routeErr: &router.Rejection{Reason: errors.New("on-holiday")}},
			wantMsg: "none of router.Reasons"},
		{name: "nil reason", give: &stubRouter{routeErr: &router.Rejection{}},
			wantMsg: "none of router.Reasons"},
		{name: "no decision and no error", give: &stubRouter{}, wantMsg: "no decision"},
		{name: "deadline in the plugin", give: &stubRouter{routeErr: fmt.Errorf("query: %w", context.DeadlineExceeded)},
			wantIs: context.DeadlineExceeded},
		{name: "unavailable dependency", give: &stubRouter{routeErr: base.ErrUnavailable}, wantIs: base.ErrUnavailable},
		{name: "cancelled by the caller", give: &stubRouter{decision: &router.Decision{}}, cancel: true,
			wantIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newPair(t, tt.give)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			_, err := r.Route(ctx, &router.Call{})
			if err == nil {
				t.Fatal("Route() error = nil")
			}
			var rej *router.Rejection
			if errors.As(err, &rej) {
				t.Errorf("Route() error = %v, want no *router.Rejection", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Route() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Route() error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestTableErrors(t *testing.T) {
	r, _ := newPair(t, &stubRouter{tableErr: context.DeadlineExceeded})
	if _, err := r.Table(t.Context()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Table() error = %v, want errors.Is context.DeadlineExceeded", err)
	}
	r, _ = newPair(t, &stubRouter{})
	if _, err := r.Table(t.Context()); err == nil || !strings.Contains(err.Error(), "no table") {
		t.Errorf("Table() error = %v, want a no-table error", err)
	}
}

func TestConfigErrorThroughRouter(t *testing.T) {
	want := []base.Problem{
		{Path: "gateway.lab.status", Message: "unknown status \"on\""},
		{Path: "dial_plan.lab.digits", Message: "must be 1..20"},
	}
	r, _ := newPair(t, &stubRouter{configureErr: &base.ConfigError{Problems: want}})
	err := r.Configure(t.Context(), []byte("x = 1"))
	var ce *base.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Configure() error = %v (%T), want a *base.ConfigError", err, err)
	}
	if !reflect.DeepEqual(ce.Problems, want) {
		t.Errorf("problems = %+v, want %+v", ce.Problems, want)
	}
	info, err := r.Info(t.Context())
	if err != nil || info.Name != "test.stub" || info.Kind != base.KindRouter {
		t.Errorf("Info() = %+v, %v", info, err)
	}
}

func TestUnavailableAfterPluginStops(t *testing.T) {
	stub := &stubRouter{decision: &router.Decision{Pool: "p", Service: router.DirectVoicemail}, table: &router.Table{}}
	r, server := newPair(t, stub)
	if _, err := r.Route(t.Context(), &router.Call{}); err != nil {
		t.Fatalf("Route() error = %v", err)
	}
	server.Stop()
	if _, err := r.Route(t.Context(), &router.Call{}); !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Route() after the plugin stopped: error = %v, want errors.Is base.ErrUnavailable", err)
	}
	if _, err := r.Table(t.Context()); !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Table() after the plugin stopped: error = %v, want errors.Is base.ErrUnavailable", err)
	}
	if err := r.Configure(t.Context(), nil); !errors.Is(err, base.ErrUnavailable) {
		t.Errorf("Configure() after the plugin stopped: error = %v, want errors.Is base.ErrUnavailable", err)
	}
}

// A router plugin served alone, without the "base" entry, is still whole:
// its GRPCServer registers the Base service too.
func TestRouterPluginAlone(t *testing.T) {
	client, server := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		router.PluginName: &router.GRPCPlugin{Impl: &stubRouter{}},
	})
	t.Cleanup(func() {
		server.Stop()
		_ = client.Close()
	})
	raw, err := client.Dispense(router.PluginName)
	if err != nil {
		t.Fatalf("Dispense() error = %v", err)
	}
	info, err := raw.(router.Router).Info(t.Context())
	if err != nil || info.Kind != base.KindRouter {
		t.Errorf("Info() = %+v, %v", info, err)
	}
}
