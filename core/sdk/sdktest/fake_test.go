package sdktest_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"

	"github.com/umedge/umedge/core/sdk/base"
	"github.com/umedge/umedge/core/sdk/router"
)

// fakeRouter is a small but honest router: one dial plan for every gateway
// whose table holds the pilot number and leaves the extensions to Route
// (Unlisted = AskPlugin), which looks them up in its own map.
type fakeRouter struct {
	mu   sync.RWMutex
	cfg  *fakeConfig
	topo *router.Table
}

var _ router.Router = (*fakeRouter)(nil)

type fakeConfig struct {
	Pilot    string            `toml:"pilot"`
	Digits   int               `toml:"digits"`
	Gateways []fakeGateway     `toml:"gateway"`
	Pools    []fakePool        `toml:"pool"`
	Numbers  map[string]string `toml:"numbers"` // extension → pool
}

type fakeGateway struct {
	Name      string   `toml:"name"`
	Addresses []string `toml:"addresses"`
	Status    string   `toml:"status"`
}

type fakePool struct {
	Name     string        `toml:"name"`
	Backends []fakeBackend `toml:"backend"`
}

type fakeBackend struct {
	Name    string `toml:"name"`
	Host    string `toml:"host"`
	TCPPort int    `toml:"tcp_port"`
	TLSPort int    `toml:"tls_port"`
}

func (f *fakeRouter) Info(context.Context) (*base.Info, error) {
	return &base.Info{Kind: base.KindRouter, Name: "test.fake", Version: "0.0.1", APIVersion: base.APIVersion}, nil
}

func (f *fakeRouter) Configure(_ context.Context, settings []byte) error {
	var cfg fakeConfig
	md, err := toml.Decode(string(settings), &cfg)
	if err != nil {
		return &base.ConfigError{Problems: []base.Problem{{Message: "parse settings: " + err.Error()}}}
	}
	var problems []base.Problem
	for _, k := range md.Undecoded() {
		problems = append(problems, base.Problem{Path: k.String(), Message: "unknown key"})
	}
	topo := &router.Table{}
	pools := make(map[string]bool)
	for i, p := range cfg.Pools {
		pools[p.Name] = true
		tp := router.Pool{Name: p.Name}
		for _, b := range p.Backends {
			tp.Backends = append(tp.Backends, router.Backend{Name: b.Name, Host: b.Host, TCPPort: b.TCPPort, TLSPort: b.TLSPort})
		}
		if len(tp.Backends) == 0 {
			problems = append(problems, base.Problem{Path: fmt.Sprintf("pool.%d.backend", i), Message: "required"})
		}
		topo.Pools = append(topo.Pools, tp)
	}
	for i, g := range cfg.Gateways {
		tg := router.Gateway{Name: g.Name, Status: router.GatewayStatus(g.Status), HuntGroups: []router.HuntGroup{{DialPlan: "lab"}}}
		for j, s := range g.Addresses {
			a, err := netip.ParseAddr(s)
			if err != nil {
				problems = append(problems, base.Problem{Path: fmt.Sprintf("gateway.%d.addresses.%d", i, j), Message: "not an ip address"})
			}
			tg.Addresses = append(tg.Addresses, a)
		}
		topo.Gateways = append(topo.Gateways, tg)
	}
	for n, p := range cfg.Numbers {
		if !pools[p] {
			problems = append(problems, base.Problem{Path: "numbers." + n, Message: "unknown pool " + p})
		}
	}
	if len(problems) > 0 {
		return &base.ConfigError{Problems: problems}
	}
	if len(topo.Pools) > 0 {
		topo.DialPlans = []router.DialPlan{{
			Name: "lab", URIType: router.TelExtn, ExtensionDigits: cfg.Digits, Security: router.Unsecured,
			Pool: topo.Pools[0].Name, AccessNumbers: []string{cfg.Pilot}, Unlisted: router.AskPlugin,
		}}
	}
	h := fnv.New64a()
	h.Write(settings)
	topo.Generation = h.Sum64()

	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg, f.topo = &cfg, topo
	return nil
}

func (f *fakeRouter) Table(ctx context.Context) (*router.Table, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.topo == nil {
		return nil, errors.New("fake: not configured")
	}
	return f.topo, nil
}

func (f *fakeRouter) Route(ctx context.Context, call *router.Call) (*router.Decision, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.RLock()
	cfg := f.cfg
	f.mu.RUnlock()
	if cfg == nil {
		return nil, errors.New("fake: not configured")
	}
	var gw *fakeGateway
	for i, g := range cfg.Gateways {
		for _, a := range g.Addresses {
			if a == call.Source.String() {
				gw = &cfg.Gateways[i]
			}
		}
	}
	if gw == nil {
		return nil, &router.Rejection{Reason: router.ErrUnknownPeer, Detail: "no gateway has address " + call.Source.String()}
	}
	switch router.GatewayStatus(gw.Status) {
	case router.GatewayDisabled:
		return nil, &router.Rejection{Reason: router.ErrGatewayDisabled, Gateway: gw.Name}
	case router.GatewayNoNewCalls:
		return nil, &router.Rejection{Reason: router.ErrGatewayDraining, Gateway: gw.Name}
	}
	if call.RequestURIUser == cfg.Pilot {
		return &router.Decision{Gateway: gw.Name, DialPlan: "lab", Service: router.SubscriberAccess, Called: cfg.Pilot, Pool: cfg.Pools[0].Name}, nil
	}
	n := call.RequestURIUser
	if len(n) != cfg.Digits || strings.Trim(n, "0123456789") != "" {
		return nil, &router.Rejection{Reason: router.ErrBadNumber, Gateway: gw.Name, DialPlan: "lab",
			Detail: fmt.Sprintf("%q is not a %d-digit extension", n, cfg.Digits)}
	}
	pool, ok := cfg.Numbers[n]
	if !ok {
		return nil, &router.Rejection{Reason: router.ErrUnknownNumber, Gateway: gw.Name, DialPlan: "lab", Detail: "no mailbox " + n}
	}
	return &router.Decision{Gateway: gw.Name, DialPlan: "lab", Service: router.DirectVoicemail, Called: n, Mailbox: "mbx" + n, Pool: pool}, nil
}

const fakeSettings = `
pilot = "5000"
digits = 4

[[gateway]]
name = "lab"
addresses = ["192.0.2.10", "2001:db8::10"]
status = "Enabled"

[[gateway]]
name = "old"
addresses = ["192.0.2.20"]
status = "Disabled"

[[gateway]]
name = "drain"
addresses = ["192.0.2.30"]
status = "NoNewCalls"

[[pool]]
name = "um-a"
[[pool.backend]]
name = "um1"
host = "um1.example.net"
tcp_port = 5062
tls_port = 5063

[[pool]]
name = "um-b"
[[pool.backend]]
name = "um2"
host = "192.0.2.100"
tls_port = 5063

[numbers]
1234 = "um-a"
4321 = "um-b"
`

func fakeCall(src, user string) router.Call {
	return router.Call{
		CallID: "c1@test", Transport: router.UDP, Source: netip.MustParseAddr(src),
		RequestURIUser: user, ToUser: user, FromUser: "+15551234",
	}
}

func fakeFixture() sdkFixture {
	return sdkFixture{
		Settings: []byte(fakeSettings),
		Calls: []sdkCase{
			{Name: "extension to pool a", Call: fakeCall("192.0.2.10", "1234"), WantPool: "um-a"},
			{Name: "extension to pool b over ipv6", Call: fakeCall("2001:db8::10", "4321"), WantPool: "um-b"},
			{Name: "pilot", Call: fakeCall("192.0.2.10", "5000"), WantPool: "um-a"},
			{Name: "unknown peer", Call: fakeCall("198.51.100.1", "1234"), WantReason: router.ErrUnknownPeer},
			{Name: "disabled gateway", Call: fakeCall("192.0.2.20", "1234"), WantReason: router.ErrGatewayDisabled},
			{Name: "draining gateway", Call: fakeCall("192.0.2.30", "1234"), WantReason: router.ErrGatewayDraining},
			{Name: "unknown number", Call: fakeCall("192.0.2.10", "9999"), WantReason: router.ErrUnknownNumber},
			{Name: "too long", Call: fakeCall("192.0.2.10", "12345"), WantReason: router.ErrBadNumber},
		},
	}
}
