package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/umedge/umedge/core/sdk/router"
	"github.com/umedge/umedge/core/sdk/sdktest"
)

// TestConformance runs the SDK's Router conformance suite, directly and
// through the gRPC adapters, with the Route tests' settings.
func TestConformance(t *testing.T) {
	settings, err := os.ReadFile(filepath.Join("testdata", "route.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tls := func(user string, names ...string) router.Call {
		return router.Call{CallID: "t", Transport: router.TLS, Source: netip.MustParseAddr("127.0.0.2"), PeerNames: names, RequestURIUser: user}
	}
	// The same directory with one more mailbox: another table.
	changed := append(append([]byte{}, settings...), []byte("\n[mailboxes.conformance-extra]\nextension = \"1999\"\ndial_plan = \"lab\"\n")...)
	sdktest.RunRouterSuite(t, New(), sdktest.RouterFixture{
		Settings: settings,
		Changed:  changed,
		Calls: []sdktest.RouterCase{
			{Name: "direct voicemail, local pool", Call: labCall("1001"), WantPool: "local"},
			{Name: "direct voicemail, remote pool", Call: labCall("1002"), WantPool: "remote"},
			{Name: "ipv6 peer over tcp", Call: with(labCall("1002"), func(c *router.Call) {
				c.Transport, c.Source = router.TCP, netip.MustParseAddr("::1")
			}), WantPool: "remote"},
			{Name: "access number", Call: labCall("5000"), WantPool: "local"},
			{Name: "diversion", Call: with(labCall("5000"), func(c *router.Call) {
				c.Diversion = []router.Diversion{{User: "1002", Reason: "no-answer"}}
			}), WantPool: "remote"},
			{Name: "history-info", Call: with(labCall("5000"), func(c *router.Call) {
				c.HistoryInfo = []router.HistoryInfo{{Index: "1", User: "1002"}, {Index: "1.1", User: "5000", Cause: "486"}}
			}), WantPool: "remote"},
			{Name: "tls peer", Call: tls("+15550201", "gw.example.test"), WantPool: "remote"},
			{Name: "tls peer wrong name", Call: tls("+15550201", "evil.example.test"), WantReason: router.ErrUnknownPeer},
			{Name: "unknown source", Call: with(labCall("1001"), func(c *router.Call) { c.Source = unknownIP }), WantReason: router.ErrUnknownPeer},
			{Name: "disabled", Call: with(labCall("1001"), func(c *router.Call) { c.Source = offIP }), WantReason: router.ErrGatewayDisabled},
			{Name: "draining", Call: with(labCall("1001"), func(c *router.Call) { c.Source = drainIP }), WantReason: router.ErrGatewayDraining},
			{Name: "no dial plan", Call: with(labCall("7000"), func(c *router.Call) { c.Source = pbxIP }), WantReason: router.ErrNoDialPlan},
			{Name: "unknown number", Call: labCall("1009"), WantReason: router.ErrUnknownNumber},
			{Name: "bad number", Call: labCall("12345"), WantReason: router.ErrBadNumber},
			{Name: "non-numeric caller", Call: with(labCall("1001"), func(c *router.Call) { c.FromUser = "alice" }), WantReason: router.ErrBadNumber},
			{Name: "security mismatch", Call: router.Call{Transport: router.TCP, Source: secureIP, RequestURIUser: "+15550201"},
				WantReason: router.ErrSecurityMismatch},
		},
	})
}
