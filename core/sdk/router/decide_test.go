package router

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func validTable() *Table {
	return &Table{
		Generation: 1,
		Gateways: []Gateway{{Name: "gw", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, FQDN: "gw.example.net",
			Status: GatewayEnabled, HuntGroups: []HuntGroup{{DialPlan: "dp"}}}},
		DialPlans: []DialPlan{{Name: "dp", URIType: TelExtn, ExtensionDigits: 4, Security: Unsecured, Pool: "p",
			Mailboxes: []Mailbox{{Number: "1001", Name: "alice"}}}},
		Pools: []Pool{{Name: "p", Backends: []Backend{{Name: "um1", Host: "um1.example.net", TCPPort: 5062, TLSPort: 5063}}}},
	}
}

// What a buggy or hostile plugin may publish must not reach the per-call
// path: Compile refuses it, naming the entry.
func TestCompileRefuses(t *testing.T) {
	if _, err := Compile(validTable()); err != nil {
		t.Fatalf("Compile(valid) = %v", err)
	}
	tests := []struct {
		name string
		give func(*Table)
		want string
	}{
		{"back end host with URI syntax", func(t *Table) { t.Pools[0].Backends[0].Host = "a>;maddr=10.6.6.6,<sip:x" }, "is no IP address or DNS name"},
		{"back end host with a zone", func(t *Table) { t.Pools[0].Backends[0].Host = "fe80::1%eth0" }, "is no IP address or DNS name"},
		{"fqdn with a wildcard", func(t *Table) { t.Gateways[0].FQDN = "*.example.net" }, "is no DNS name"},
		{"address of two gateways", func(t *Table) {
			g := t.Gateways[0]
			g.Name, g.FQDN = "twin", ""
			t.Gateways = append(t.Gateways, g)
		}, "already belongs to gateway gw"},
		{"unknown pool", func(t *Table) { t.DialPlans[0].Pool = "nowhere" }, `pool "nowhere" is not in the table`},
		{"hunt group to nowhere", func(t *Table) { t.Gateways[0].HuntGroups[0].DialPlan = "none" }, "which is not in the table"},
		{"number that does not fit", func(t *Table) { t.DialPlans[0].Mailboxes[0].Number = "10011" }, "wrong number of digits"},
		{"unknown status", func(t *Table) { t.Gateways[0].Status = "" }, "status"},
		{"unknown uri type", func(t *Table) { t.DialPlans[0].URIType = "" }, "unknown uri type"},
		{"unknown action", func(t *Table) { t.Pools[0].Action = "forward" }, `action "forward"`},
		{"redirect pool with only UDP", func(t *Table) {
			b := &t.Pools[0].Backends[0]
			b.TCPPort, b.TLSPort, b.UDPPort = 0, 0, 5060
		}, "needs a host and a port"},
		{"port out of range", func(t *Table) { t.Pools[0].Backends[0].UDPPort = 70000 }, "needs a host and a port"},
	}
	proxy := validTable()
	proxy.Pools[0].Action = Proxy
	proxy.Pools[0].Backends[0] = Backend{Name: "trunk", Host: "192.0.2.50", UDPPort: 5060}
	if _, err := Compile(proxy); err != nil {
		t.Errorf("Compile(UDP-only proxy pool) = %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := validTable()
			tt.give(tb)
			_, err := Compile(tb)
			if !errors.Is(err, ErrBadTable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile() = %v, want ErrBadTable saying %q", err, tt.want)
			}
		})
	}
}

// A secured dial plan takes a call that did not come over TLS only when it
// goes to a proxy pool: the SBC secures the back-end leg itself.
func TestSecuredPlanThroughTheSBC(t *testing.T) {
	tb := validTable()
	tb.DialPlans[0].Security = Secured
	tb.DialPlans[0].Mailboxes = append(tb.DialPlans[0].Mailboxes, Mailbox{Number: "1002", Name: "bob", Pool: "r"})
	tb.Pools[0].Action = Proxy
	tb.Pools = append(tb.Pools, Pool{Name: "r", Backends: []Backend{{Name: "um2", Host: "um2.example.net", TCPPort: 5062, TLSPort: 5063}}})
	c, err := Compile(tb)
	if err != nil {
		t.Fatal(err)
	}
	udp := func(number string) *Call {
		return &Call{CallID: "x", Transport: UDP, Source: netip.MustParseAddr("192.0.2.1"), RequestURIUser: number, FromUser: "4000"}
	}
	if d, err := c.Decide(udp("1001")); err != nil || d.Pool != "p" {
		t.Errorf("UDP call to 1001 (proxy pool p) = %+v, %v; want decided", d, err)
	}
	if _, err := c.Decide(udp("1002")); !errors.Is(err, ErrSecurityMismatch) {
		t.Errorf("UDP call to 1002 (redirect pool r) = %v, want ErrSecurityMismatch", err)
	}
	tls := udp("1002")
	tls.Transport, tls.PeerNames = TLS, []string{"gw.example.net"}
	if _, err := c.Decide(tls); err != nil {
		t.Errorf("TLS call to 1002 = %v", err)
	}
}
