package main

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/umedge/umedge/core/sdk/router"
)

// configured returns a Router configured with testdata/name.
func configured(t *testing.T, name string) *Router {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Configure(t.Context(), data); err != nil {
		t.Fatalf("Configure(%s) error = %v", name, err)
	}
	return r
}

var (
	labIP     = netip.MustParseAddr("127.0.0.1")
	secureIP  = netip.MustParseAddr("127.0.0.2")
	offIP     = netip.MustParseAddr("127.0.0.3")
	drainIP   = netip.MustParseAddr("127.0.0.4")
	pbxIP     = netip.MustParseAddr("127.0.0.5")
	unknownIP = netip.MustParseAddr("127.0.0.9")
)

// labCall is a plain UDP call from gateway lab to the given R-URI user.
func labCall(ruri string) router.Call {
	return router.Call{CallID: "c1", Transport: router.UDP, Source: labIP, RequestURIUser: ruri, FromUser: "4711"}
}

func TestRoute(t *testing.T) {
	r := configured(t, "route.toml")

	hist := func(entries ...router.HistoryInfo) func(*router.Call) {
		return func(c *router.Call) { c.HistoryInfo = entries }
	}

	tests := []struct {
		name       string
		give       router.Call
		want       *router.Decision
		wantReason error
		wantGW     string // Rejection.Gateway
		wantDP     string // Rejection.DialPlan
	}{
		// R-ID-1: the peer.
		{
			name:       "unknown source address",
			give:       with(labCall("1001"), func(c *router.Call) { c.Source = unknownIP }),
			wantReason: router.ErrUnknownPeer,
		},
		{
			name: "ipv4-mapped ipv6 source matches the ipv4 address",
			give: with(labCall("1001"), func(c *router.Call) { c.Source = netip.MustParseAddr("::ffff:127.0.0.1") }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1001", Mailbox: "alice", Pool: "local"},
		},
		{
			name: "ipv6 source over tcp",
			give: with(labCall("1001"), func(c *router.Call) { c.Transport = router.TCP; c.Source = netip.MustParseAddr("::1") }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1001", Mailbox: "alice", Pool: "local"},
		},
		{
			name: "tls peer by certificate name, any case, trailing dot",
			give: router.Call{Transport: router.TLS, Source: unknownIP, PeerNames: []string{"other.example.test", "GW.Example.Test."},
				RequestURIUser: "+15550201"},
			want: &router.Decision{Gateway: "secure", DialPlan: "secure", Service: router.DirectVoicemail, Called: "+15550201", Mailbox: "dave", Pool: "remote"},
		},
		{
			name: "tls peer with a wrong certificate name",
			give: router.Call{Transport: router.TLS, Source: secureIP, PeerNames: []string{"evil.example.test"},
				RequestURIUser: "+15550201"},
			wantReason: router.ErrUnknownPeer,
		},
		{
			name: "tls peer with a wildcard certificate name",
			give: router.Call{Transport: router.TLS, Source: secureIP, PeerNames: []string{"*.example.test"},
				RequestURIUser: "+15550201"},
			wantReason: router.ErrUnknownPeer,
		},
		{
			name:       "tls from a known address without certificate names",
			give:       with(labCall("1001"), func(c *router.Call) { c.Transport = router.TLS }),
			wantReason: router.ErrUnknownPeer,
		},
		{
			name:       "unknown transport",
			give:       with(labCall("1001"), func(c *router.Call) { c.Transport = "sctp" }),
			wantReason: router.ErrUnknownPeer,
		},
		// R-ID-2: gateway status.
		{
			name:       "gateway disabled",
			give:       with(labCall("1001"), func(c *router.Call) { c.Source = offIP }),
			wantReason: router.ErrGatewayDisabled, wantGW: "off",
		},
		{
			name:       "gateway draining",
			give:       with(labCall("1001"), func(c *router.Call) { c.Source = drainIP }),
			wantReason: router.ErrGatewayDraining, wantGW: "drain",
		},
		// R-ID-3: dial plan by pilot.
		{
			name: "pilot selects the sip dial plan, access number",
			give: with(labCall("6000"), func(c *router.Call) { c.Source = pbxIP }),
			want: &router.Decision{Gateway: "pbx", DialPlan: "lync", Service: router.SubscriberAccess, Called: "6000", Pool: "local"},
		},
		{
			name: "pilot selects the sip dial plan, diverted sip user in any case",
			give: with(labCall("6000"), func(c *router.Call) {
				c.Source = pbxIP
				c.FromUser = "alice" // SipName plans take non-numeric callers
				c.Diversion = []router.Diversion{{User: "Erin", Reason: "no-answer"}}
			}),
			want: &router.Decision{Gateway: "pbx", DialPlan: "lync", Service: router.CallAnswering, Called: "Erin", Mailbox: "erin", Pool: "remote"},
		},
		{
			name: "pilot selects the telextn dial plan",
			give: with(labCall("5000"), func(c *router.Call) { c.Source = pbxIP }),
			want: &router.Decision{Gateway: "pbx", DialPlan: "lab", Service: router.SubscriberAccess, Called: "5000", Pool: "local"},
		},
		{
			name:       "no hunt group for the called number",
			give:       with(labCall("7000"), func(c *router.Call) { c.Source = pbxIP }),
			wantReason: router.ErrNoDialPlan, wantGW: "pbx",
		},
		// R-SEC-1, R-ERR-6: security.
		{
			name:       "secured dial plan over tcp",
			give:       router.Call{Transport: router.TCP, Source: secureIP, RequestURIUser: "+15550201"},
			wantReason: router.ErrSecurityMismatch, wantGW: "secure", wantDP: "secure",
		},
		{
			name:       "secured dial plan over udp",
			give:       router.Call{Transport: router.UDP, Source: secureIP, RequestURIUser: "+15550201"},
			wantReason: router.ErrSecurityMismatch, wantGW: "secure", wantDP: "secure",
		},
		// R-ID-5: calling party.
		{
			name:       "non-numeric caller in a telextn plan",
			give:       with(labCall("1001"), func(c *router.Call) { c.FromUser = "alice" }),
			wantReason: router.ErrBadNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name:       "lone plus caller in a telextn plan",
			give:       with(labCall("1001"), func(c *router.Call) { c.FromUser = "+" }),
			wantReason: router.ErrBadNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name: "anonymous caller in any case",
			give: with(labCall("1001"), func(c *router.Call) { c.FromUser = "Anonymous" }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1001", Mailbox: "alice", Pool: "local"},
		},
		{
			name: "empty caller",
			give: with(labCall("1001"), func(c *router.Call) { c.FromUser = "" }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1001", Mailbox: "alice", Pool: "local"},
		},
		{
			name: "e164 caller in a telextn plan",
			give: with(labCall("1001"), func(c *router.Call) { c.FromUser = "+4930123456" }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1001", Mailbox: "alice", Pool: "local"},
		},
		// R-ID-4: called party without diversion.
		{
			name: "plain R-URI to a mailbox in the other pool",
			give: labCall("1002"),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1002", Mailbox: "bob", Pool: "remote"},
		},
		{
			name: "plain To when the R-URI user is empty",
			give: with(labCall(""), func(c *router.Call) { c.ToUser = "1003" }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1003", Mailbox: "carol", Pool: "local"},
		},
		{
			name: "R-URI wins over To",
			give: with(labCall("1002"), func(c *router.Call) { c.ToUser = "1003" }),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1002", Mailbox: "bob", Pool: "remote"},
		},
		{
			name: "access number",
			give: labCall("5000"),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.SubscriberAccess, Called: "5000", Pool: "local"},
		},
		{
			name: "access number that is a full phone number",
			give: labCall("+15550100"),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.SubscriberAccess, Called: "+15550100", Pool: "local"},
		},
		{
			name: "e164 access number over tls",
			give: router.Call{Transport: router.TLS, PeerNames: []string{"gw.example.test"}, ToUser: "+15550200"},
			want: &router.Decision{Gateway: "secure", DialPlan: "secure", Service: router.SubscriberAccess, Called: "+15550200", Pool: "remote"},
		},
		{
			name:       "unknown extension",
			give:       labCall("1009"),
			wantReason: router.ErrUnknownNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name:       "extension too long",
			give:       labCall("12345"),
			wantReason: router.ErrBadNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name:       "no called number at all",
			give:       labCall(""),
			wantReason: router.ErrBadNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name:       "called number not e164 in an e164 plan",
			give:       router.Call{Transport: router.TLS, PeerNames: []string{"gw.example.test"}, RequestURIUser: "15550201"},
			wantReason: router.ErrBadNumber, wantGW: "secure", wantDP: "secure",
		},
		{
			name:       "unknown e164 number",
			give:       router.Call{Transport: router.TLS, PeerNames: []string{"gw.example.test"}, RequestURIUser: "+15550299"},
			wantReason: router.ErrUnknownNumber, wantGW: "secure", wantDP: "secure",
		},
		// R-ID-4: diverted calls.
		{
			name: "diversion picks the diverting mailbox, not the called one",
			give: with(labCall("1001"), func(c *router.Call) {
				c.Diversion = []router.Diversion{{User: "1002", Reason: "no-answer"}, {User: "1003", Reason: "unconditional"}}
			}),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.CallAnswering, Called: "1002", Mailbox: "bob", Pool: "remote"},
		},
		{
			name: "diversion wins over history-info",
			give: with(labCall("5000"), func(c *router.Call) {
				c.Diversion = []router.Diversion{{User: "1003", Reason: "user-busy"}}
				c.HistoryInfo = []router.HistoryInfo{{Index: "1", User: "1002"}, {Index: "1.1", User: "5000", Cause: "486"}}
			}),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.CallAnswering, Called: "1003", Mailbox: "carol", Pool: "local"},
		},
		{
			name: "history-info: entry before the last one with a cause",
			give: with(labCall("5000"), hist(
				router.HistoryInfo{Index: "1", User: "1001"},
				router.HistoryInfo{Index: "1.1", User: "1003", Cause: "302"},
				router.HistoryInfo{Index: "1.1.1", User: "1002"},
				router.HistoryInfo{Index: "1.1.1.1", User: "5000", Cause: "408"},
				router.HistoryInfo{Index: "1.1.1.1.1", User: "1001"},
			)),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.CallAnswering, Called: "1002", Mailbox: "bob", Pool: "remote"},
		},
		{
			name: "history-info without causes: second-to-last entry",
			give: with(labCall("5000"), hist(
				router.HistoryInfo{Index: "1", User: "1002"},
				router.HistoryInfo{Index: "1.1", User: "1003"},
				router.HistoryInfo{Index: "1.1.1", User: "5000"},
			)),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.CallAnswering, Called: "1003", Mailbox: "carol", Pool: "local"},
		},
		{
			name: "history-info with a single entry routes on the called number",
			give: with(labCall("1002"), hist(router.HistoryInfo{Index: "1", User: "1003"})),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1002", Mailbox: "bob", Pool: "remote"},
		},
		{
			name: "history-info with a cause on the first entry only routes on the called number",
			give: with(labCall("1001"), hist(
				router.HistoryInfo{Index: "1", User: "1003", Cause: "302"},
				router.HistoryInfo{Index: "2", User: "1002"},
			)),
			want: &router.Decision{Gateway: "lab", DialPlan: "lab", Service: router.DirectVoicemail, Called: "1001", Mailbox: "alice", Pool: "local"},
		},
		{
			name: "diverted e164 number over tls",
			give: router.Call{Transport: router.TLS, PeerNames: []string{"gw.example.test"}, RequestURIUser: "+15550200",
				Diversion: []router.Diversion{{User: "+15550201"}}},
			want: &router.Decision{Gateway: "secure", DialPlan: "secure", Service: router.CallAnswering, Called: "+15550201", Mailbox: "dave", Pool: "remote"},
		},
		{
			name: "diverted number of the wrong length",
			give: with(labCall("5000"), func(c *router.Call) {
				c.Diversion = []router.Diversion{{User: "10021"}}
			}),
			wantReason: router.ErrBadNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name: "diverted number that is not numeric",
			give: with(labCall("5000"), hist(
				router.HistoryInfo{Index: "1", User: "bob"},
				router.HistoryInfo{Index: "1.1", User: "5000", Cause: "480"},
			)),
			wantReason: router.ErrBadNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name: "diverted number that is no mailbox",
			give: with(labCall("5000"), func(c *router.Call) {
				c.Diversion = []router.Diversion{{User: "1009"}}
			}),
			wantReason: router.ErrUnknownNumber, wantGW: "lab", wantDP: "lab",
		},
		{
			name: "diverted access number is no mailbox",
			give: with(labCall("1001"), func(c *router.Call) {
				c.Diversion = []router.Diversion{{User: "5000"}}
			}),
			wantReason: router.ErrUnknownNumber, wantGW: "lab", wantDP: "lab",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := tt.give
			got, err := r.Route(t.Context(), &call)

			if tt.wantReason == nil {
				if err != nil {
					t.Fatalf("Route() error = %v, want %+v", err, tt.want)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Route() =\n %+v, want\n %+v", got, tt.want)
				}
				return
			}
			var rej *router.Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("Route() = %+v, %v; want a *router.Rejection", got, err)
			}
			if got != nil {
				t.Errorf("Route() decision = %+v, want nil with a rejection", got)
			}
			if !errors.Is(err, tt.wantReason) {
				t.Errorf("Route() reason = %v, want %v", rej.Reason, tt.wantReason)
			}
			if rej.Gateway != tt.wantGW || rej.DialPlan != tt.wantDP {
				t.Errorf("Rejection gateway, dial plan = %q, %q; want %q, %q", rej.Gateway, rej.DialPlan, tt.wantGW, tt.wantDP)
			}
			if rej.Detail == "" {
				t.Error("Rejection.Detail is empty")
			}
		})
	}
}

func TestRouteDetail(t *testing.T) {
	r := configured(t, "route.toml")
	tests := []struct {
		name string
		give router.Call
		want string
	}{
		{
			name: "unknown source names the source and transport",
			give: router.Call{Transport: router.UDP, Source: unknownIP, RequestURIUser: "1001"},
			want: "source 127.0.0.9 over udp is no address of any gateway",
		},
		{
			name: "wrong length names both lengths",
			give: labCall("12345"),
			want: `called number "12345" does not fit dial plan lab: wrong number of digits: 12345 has 5 digits, want 4`,
		},
		{
			name: "security mismatch names the plan's security",
			give: router.Call{Transport: router.TCP, Source: secureIP, RequestURIUser: "+15550201"},
			want: "dial plan secure is SIPSecured and needs SIP over TLS, the call came over tcp",
		},
		{
			name: "unknown diverted number names the header",
			give: with(labCall("5000"), func(c *router.Call) { c.Diversion = []router.Diversion{{User: "1009"}} }),
			want: "diverted number 1009 (Diversion) is no mailbox of dial plan lab",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := tt.give
			_, err := r.Route(t.Context(), &call)
			var rej *router.Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("Route() error = %v, want a *router.Rejection", err)
			}
			if rej.Detail != tt.want {
				t.Errorf("Detail = %q, want %q", rej.Detail, tt.want)
			}
		})
	}
}

// with returns c changed by f.
func with(c router.Call, f func(*router.Call)) router.Call { f(&c); return c }

func TestRouteNotConfigured(t *testing.T) {
	r := New()
	call := labCall("1001")
	_, err := r.Route(t.Context(), &call)
	if !errors.Is(err, errNotConfigured) {
		t.Errorf("Route() before Configure error = %v, want %v", err, errNotConfigured)
	}
	var rej *router.Rejection
	if errors.As(err, &rej) {
		t.Error("Route() before Configure returned a Rejection, which the core would take for a decision")
	}
	if _, err := r.Table(t.Context()); !errors.Is(err, errNotConfigured) {
		t.Errorf("Table() before Configure error = %v, want %v", err, errNotConfigured)
	}
}

func TestRouteContext(t *testing.T) {
	r := configured(t, "route.toml")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	call := labCall("1001")
	if _, err := r.Route(ctx, &call); !errors.Is(err, context.Canceled) {
		t.Errorf("Route(cancelled) error = %v, want context.Canceled", err)
	}
	if _, err := r.Table(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Table(cancelled) error = %v, want context.Canceled", err)
	}
	if _, err := r.Info(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Info(cancelled) error = %v, want context.Canceled", err)
	}
	if err := r.Configure(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Configure(cancelled) error = %v, want context.Canceled", err)
	}
	if _, err := r.Route(t.Context(), nil); !errors.Is(err, errNilCall) {
		t.Errorf("Route(nil) error = %v, want %v", err, errNilCall)
	}
}

// TestRouteTwoSitesExample checks what README.md says about its second
// example.
func TestRouteTwoSitesExample(t *testing.T) {
	settings, ok := pluginSettings(t, filepath.Join("testdata", "example-two-sites.toml"), "umrouter")
	if !ok {
		t.Fatal("no settings")
	}
	r := New()
	if err := r.Configure(t.Context(), settings); err != nil {
		t.Fatal(err)
	}
	pbx1 := netip.MustParseAddr("192.0.2.21")
	tests := []struct {
		name       string
		give       router.Call
		want       *router.Decision
		wantReason error
	}{
		{
			name:       "pilot over tcp",
			give:       router.Call{Transport: router.TCP, Source: pbx1, RequestURIUser: "+4930555000"},
			wantReason: router.ErrSecurityMismatch,
		},
		{
			name: "diverted over tls",
			give: router.Call{Transport: router.TLS, Source: pbx1, PeerNames: []string{"pbx1.example.net"},
				RequestURIUser: "+4930555000", Diversion: []router.Diversion{{User: "+4930555123", Reason: "no-answer"}}},
			want: &router.Decision{Gateway: "pbx1", DialPlan: "berlin", Service: router.CallAnswering, Called: "+4930555123", Mailbox: "anna", Pool: "berlin"},
		},
		{
			name:       "draining sbc",
			give:       router.Call{Transport: router.UDP, Source: netip.MustParseAddr("2001:db8::22"), RequestURIUser: "10042"},
			wantReason: router.ErrGatewayDraining,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			call := tt.give
			got, err := r.Route(t.Context(), &call)
			if tt.wantReason != nil {
				if !errors.Is(err, tt.wantReason) {
					t.Fatalf("Route() = %+v, %v; want %v", got, err, tt.wantReason)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Route() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
