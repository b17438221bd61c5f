package main

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/umedge/umedge/core/sdk/router"
)

// config is one validated configuration: the routing table it publishes
// and that table compiled, so that Route decides exactly as the core does.
// It is never changed once built, so Route reads it without locks.
type config struct {
	table    router.Table
	compiled *router.Compiled
}

// Limits of the settings.
const maxPort = 65535

// newConfig validates decoded settings and builds the configuration. It
// records every problem in p and returns nil when there is any.
func newConfig(s *settings, data []byte, p *problems) *config {
	b := builder{s: s, p: p}
	pools := b.pools()
	plans := b.dialPlans()
	gateways := b.gateways()
	b.huntGroups(gateways, plans)
	b.mailboxes(plans)
	if len(p.list) > 0 {
		return nil
	}

	h := fnv.New64a()
	_, _ = h.Write(data) // a hash never fails to write
	c := &config{table: router.Table{Generation: h.Sum64(), Pools: pools}}
	for _, name := range sortedKeys(plans) {
		c.table.DialPlans = append(c.table.DialPlans, *plans[name])
	}
	for _, name := range sortedKeys(gateways) {
		c.table.Gateways = append(c.table.Gateways, *gateways[name])
	}
	compiled, err := router.Compile(&c.table)
	if err != nil { // the checks above should have caught it: say so rather than publish it
		p.add("", "the settings give a routing table the core would refuse: %v", err)
		return nil
	}
	c.compiled = compiled
	return c
}

// builder validates one settings table and builds its parts.
type builder struct {
	s *settings
	p *problems
}

func (b *builder) pools() []router.Pool {
	if len(b.s.Pools) == 0 {
		b.p.add("pools", "at least one pool is required")
	}
	var out []router.Pool
	for _, name := range sortedKeys(b.s.Pools) {
		ps := b.s.Pools[name]
		path := joinPath("pools", name)
		if ps.OptionsInterval < 0 {
			b.p.add(path+".options_interval", "must not be negative")
		}
		if len(ps.Backends) == 0 {
			b.p.add(path+".backends", "at least one backend is required")
		}
		pool := router.Pool{Name: name, Action: router.Redirect}
		switch a := router.Action(ps.Action); a {
		case "", router.Redirect:
		case router.Proxy:
			pool.Action = a
		default:
			b.p.add(path+".action", "must be %q or %q, not %q", router.Redirect, router.Proxy, ps.Action)
		}
		seen := make(map[string]int)
		for i, bs := range ps.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", path, i)
			switch first, dup := seen[bs.Name]; {
			case bs.Name == "":
				b.p.add(bp+".name", "is required")
			case dup:
				b.p.add(bp+".name", "%q is already the name of backends[%d]", bs.Name, first)
			default:
				seen[bs.Name] = i
			}
			switch {
			case bs.Host == "":
				b.p.add(bp+".host", "is required")
			case !router.ValidHost(bs.Host):
				b.p.add(bp+".host", "must be an IP address or a DNS name, not %q", bs.Host)
			}
			if pool.Action == router.Proxy {
				// An SBC target may speak any subset: 0 = none.
				b.portOrNone(bp+".tcp_port", bs.TCPPort)
				b.portOrNone(bp+".tls_port", bs.TLSPort)
				b.portOrNone(bp+".udp_port", bs.UDPPort)
				if bs.TCPPort+bs.TLSPort+bs.UDPPort == 0 {
					b.p.add(bp, "needs at least one of udp_port, tcp_port, tls_port")
				}
			} else {
				b.port(bp+".tcp_port", bs.TCPPort)
				b.port(bp+".tls_port", bs.TLSPort)
				if bs.UDPPort != 0 {
					b.p.add(bp+".udp_port", "only a pool with action = %q uses UDP (a 302 never sends a gateway to UDP)", router.Proxy)
				}
			}
			if bs.MaxCallsAllowed < 0 {
				b.p.add(bp+".max_calls_allowed", "must not be negative")
			}
			pool.Backends = append(pool.Backends, router.Backend{
				Name:            bs.Name,
				Host:            bs.Host,
				TCPPort:         bs.TCPPort,
				TLSPort:         bs.TLSPort,
				UDPPort:         bs.UDPPort,
				MaxCallsAllowed: bs.MaxCallsAllowed,
				Ping:            ps.OptionsInterval,
			})
		}
		slices.SortStableFunc(pool.Backends, func(x, y router.Backend) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, pool)
	}
	return out
}

func (b *builder) port(path string, port int) {
	if port < 1 || port > maxPort {
		b.p.add(path, "must be 1..%d, not %d", maxPort, port)
	}
}

func (b *builder) portOrNone(path string, port int) {
	if port != 0 {
		b.port(path, port)
	}
}

func (b *builder) dialPlans() map[string]*router.DialPlan {
	if len(b.s.DialPlans) == 0 {
		b.p.add("dial_plans", "at least one dial plan is required")
	}
	plans := make(map[string]*router.DialPlan)
	for _, name := range sortedKeys(b.s.DialPlans) {
		ds := b.s.DialPlans[name]
		path := joinPath("dial_plans", name)
		dp := &router.DialPlan{
			Name:            name,
			URIType:         router.URIType(ds.URIType),
			ExtensionDigits: ds.ExtensionDigits,
			Security:        router.Security(ds.VoIPSecurity),
			Pool:            ds.Pool,
			Unlisted:        router.RejectUnlisted,
		}
		plans[name] = dp
		typeOK := true
		switch dp.URIType {
		case router.TelExtn, router.E164, router.SIPName:
		default:
			typeOK = false
			b.p.add(path+".uri_type", "must be TelExtn, E164 or SipName, not %q", ds.URIType)
		}
		if ds.ExtensionDigits < router.MinExtensionDigits || ds.ExtensionDigits > router.MaxExtensionDigits {
			b.p.add(path+".extension_digits", "must be %d..%d, not %d", router.MinExtensionDigits, router.MaxExtensionDigits, ds.ExtensionDigits)
		}
		switch dp.Security {
		case router.Unsecured, router.SIPSecured, router.Secured:
		default:
			b.p.add(path+".voip_security", "must be Unsecured, SIPSecured or Secured, not %q", ds.VoIPSecurity)
		}
		b.poolRef(path+".pool", ds.Pool, true)
		seen := make(map[string]bool)
		for i, n := range ds.AccessNumbers {
			ap := fmt.Sprintf("%s.access_numbers[%d]", path, i)
			if typeOK && !router.ValidAccessNumber(n, dp.URIType) {
				b.p.add(ap, "%q is not a valid %s number", n, ds.URIType)
				continue
			}
			k := router.AccessKey(n, dp.URIType)
			if seen[k] {
				b.p.add(ap, "%q is listed twice", n)
				continue
			}
			seen[k] = true
			dp.AccessNumbers = append(dp.AccessNumbers, n)
		}
	}
	return plans
}

// secured reports whether the plan needs SIP over mutual TLS (R-SEC-1).
func secured(dp *router.DialPlan) bool {
	return dp.Security == router.SIPSecured || dp.Security == router.Secured
}

func (b *builder) poolRef(path, name string, required bool) {
	switch _, ok := b.s.Pools[name]; {
	case name == "" && required:
		b.p.add(path, "is required")
	case name != "" && !ok:
		b.p.add(path, "pool %q is not defined", name)
	}
}

func (b *builder) gateways() map[string]*router.Gateway {
	if len(b.s.Gateways) == 0 {
		b.p.add("gateways", "at least one gateway is required")
	}
	gateways := make(map[string]*router.Gateway)
	addrOwner := make(map[netip.Addr]string)
	fqdnOwner := make(map[string]string)
	for _, name := range sortedKeys(b.s.Gateways) {
		gs := b.s.Gateways[name]
		path := joinPath("gateways", name)
		gw := &router.Gateway{
			Name:               name,
			FQDN:               gs.FQDN,
			Status:             router.GatewayStatus(gs.Status),
			CallsPerSecond:     gs.CallsPerSecond,
			MaxConcurrentCalls: gs.MaxConcurrentCalls,
			Ping:               gs.OptionsInterval,
			PingTarget:         gs.OptionsTarget,
			PingTransport:      router.Transport(gs.OptionsTransport),
		}
		gateways[name] = gw

		if len(gs.Addresses) == 0 && gs.FQDN == "" {
			b.p.add(path+".addresses", "is required when fqdn is empty: the peer could never be identified")
		}
		for i, a := range gs.Addresses {
			ap := fmt.Sprintf("%s.addresses[%d]", path, i)
			addr, err := netip.ParseAddr(a)
			switch {
			case err != nil:
				b.p.add(ap, "%q is not an IP address", a)
				continue
			case addr.Zone() != "":
				b.p.add(ap, "%q must not have a zone", a)
				continue
			}
			addr = addr.Unmap()
			switch owner, taken := addrOwner[addr]; {
			case taken && owner == name:
				b.p.add(ap, "%s is listed twice", addr)
			case taken:
				b.p.add(ap, "%s is already an address of gateway %s", addr, owner)
			default:
				addrOwner[addr] = name
				gw.Addresses = append(gw.Addresses, addr)
			}
		}
		if gs.FQDN != "" {
			if !router.ValidDNSName(gs.FQDN) {
				b.p.add(path+".fqdn", "must be a DNS name without wildcards, not %q", gs.FQDN)
			} else if owner, taken := fqdnOwner[router.NormalName(gs.FQDN)]; taken {
				b.p.add(path+".fqdn", "%s is already the fqdn of gateway %s", gs.FQDN, owner)
			} else {
				fqdnOwner[router.NormalName(gs.FQDN)] = name
			}
		}
		switch router.GatewayStatus(gs.Status) {
		case router.GatewayEnabled, router.GatewayDisabled, router.GatewayNoNewCalls:
		default:
			b.p.add(path+".status", "must be Enabled, Disabled or NoNewCalls, not %q", gs.Status)
		}
		if gs.CallsPerSecond < 0 {
			b.p.add(path+".calls_per_second", "must not be negative")
		}
		if gs.MaxConcurrentCalls < 0 {
			b.p.add(path+".max_concurrent_calls", "must not be negative")
		}
		if gs.OptionsInterval < 0 {
			b.p.add(path+".options_interval", "must not be negative")
		}
		switch {
		case gs.OptionsTarget == "" && gs.OptionsInterval > 0:
			b.p.add(path+".options_target", "is required when options_interval is set")
		case gs.OptionsTarget != "" && !validHostPort(gs.OptionsTarget):
			b.p.add(path+".options_target", "must be host:port, not %q", gs.OptionsTarget)
		}
		switch router.Transport(gs.OptionsTransport) {
		case router.UDP, router.TCP, router.TLS:
		default:
			b.p.add(path+".options_transport", "must be udp, tcp or tls, not %q", gs.OptionsTransport)
		}
	}
	return gateways
}

func (b *builder) huntGroups(gateways map[string]*router.Gateway, plans map[string]*router.DialPlan) {
	owner := make(map[*router.Gateway]map[string]string) // gateway → lower-case pilot → hunt group
	needFQDN := make(map[string]string)                  // gateway → problem message
	for _, name := range sortedKeys(b.s.HuntGroups) {
		hs := b.s.HuntGroups[name]
		path := joinPath("hunt_groups", name)
		gw, dp := gateways[hs.Gateway], plans[hs.DialPlan]
		switch {
		case hs.Gateway == "":
			b.p.add(path+".gateway", "is required")
		case gw == nil:
			b.p.add(path+".gateway", "gateway %q is not defined", hs.Gateway)
		}
		switch {
		case hs.DialPlan == "":
			b.p.add(path+".dial_plan", "is required")
		case dp == nil:
			b.p.add(path+".dial_plan", "dial plan %q is not defined", hs.DialPlan)
		}
		if hs.Pilot != "" && !router.ValidSIPUser(hs.Pilot) {
			b.p.add(path+".pilot", "must not hold spaces or control characters, got %q", hs.Pilot)
			continue
		}
		if gw == nil || dp == nil {
			continue
		}
		if owner[gw] == nil {
			owner[gw] = make(map[string]string)
		}
		key := strings.ToLower(hs.Pilot)
		if other, taken := owner[gw][key]; taken {
			if hs.Pilot == "" {
				b.p.add(path+".pilot", "gateway %s already has the catch-all hunt group %s", gw.Name, other)
			} else {
				b.p.add(path+".pilot", "pilot %q of gateway %s is already used by hunt group %s", hs.Pilot, gw.Name, other)
			}
			continue
		}
		owner[gw][key] = name
		gw.HuntGroups = append(gw.HuntGroups, router.HuntGroup{Pilot: hs.Pilot, DialPlan: dp.Name})
		// A secured plan served through the SBC (its pool proxies) takes
		// calls that do not come over TLS: no certificate name needed.
		proxied := b.s.Pools[dp.Pool] != nil && router.Action(b.s.Pools[dp.Pool].Action) == router.Proxy
		if _, noted := needFQDN[gw.Name]; !noted && secured(dp) && !proxied && gw.FQDN == "" {
			needFQDN[gw.Name] = fmt.Sprintf("is required: hunt group %s leads to %s dial plan %s, whose peers are identified by TLS certificate",
				name, dp.Security, dp.Name)
		}
	}
	for _, gw := range sortedKeys(needFQDN) {
		b.p.add(joinPath("gateways", gw)+".fqdn", "%s", needFQDN[gw])
	}
}

func (b *builder) mailboxes(plans map[string]*router.DialPlan) {
	// owners of each identifier, per dial plan and key kind
	type idKey struct {
		plan *router.DialPlan
		kind string
		key  string
	}
	owner := make(map[idKey]string)
	for _, name := range sortedKeys(b.s.Mailboxes) {
		ms := b.s.Mailboxes[name]
		path := joinPath("mailboxes", name)
		dp := plans[ms.DialPlan]
		switch {
		case ms.DialPlan == "":
			b.p.add(path+".dial_plan", "is required")
		case dp == nil:
			b.p.add(path+".dial_plan", "dial plan %q is not defined", ms.DialPlan)
		}
		b.poolRef(path+".pool", ms.Pool, false)
		if dp == nil {
			continue
		}
		// claim checks one identifier of the mailbox and returns its
		// lookup key, or "" when it is absent or wrong.
		claim := func(kind, value string, required bool, f router.NumberFormat) string {
			kp := path + "." + kind
			if value == "" {
				if required {
					b.p.add(kp, "is required in %s dial plan %s", dp.URIType, dp.Name)
				}
				return ""
			}
			if f.URIType == router.TelExtn && (f.Digits < router.MinExtensionDigits || f.Digits > router.MaxExtensionDigits) {
				return "" // the dial plan's extension_digits is reported already
			}
			key, err := f.Key(value)
			if err != nil {
				b.p.add(kp, "does not fit dial plan %s: %v", dp.Name, err)
				return ""
			}
			ik := idKey{dp, kind, key}
			if other, taken := owner[ik]; taken {
				b.p.add(kp, "%s is already used by mailbox %s in dial plan %s", value, other, dp.Name)
				return ""
			}
			owner[ik] = name
			if (kind == "extension" || f.URIType == dp.URIType) && isAccessNumber(dp, value) {
				b.p.add(kp, "%s is an access number of dial plan %s", value, dp.Name)
				return ""
			}
			return value
		}
		ext := claim("extension", ms.Extension, true, router.NumberFormat{URIType: router.TelExtn, Digits: dp.ExtensionDigits})
		e164 := claim("e164", ms.E164, dp.URIType == router.E164, router.NumberFormat{URIType: router.E164})
		sip := claim("sip_user", ms.SIPUser, dp.URIType == router.SIPName, router.NumberFormat{URIType: router.SIPName})

		number := map[router.URIType]string{router.TelExtn: ext, router.E164: e164, router.SIPName: sip}[dp.URIType]
		if number != "" {
			dp.Mailboxes = append(dp.Mailboxes, router.Mailbox{Number: number, Name: name, Pool: ms.Pool})
		}
	}
}

// isAccessNumber reports whether n is an access number of dp.
func isAccessNumber(dp *router.DialPlan, n string) bool {
	k := router.AccessKey(n, dp.URIType)
	return slices.ContainsFunc(dp.AccessNumbers, func(a string) bool { return router.AccessKey(a, dp.URIType) == k })
}

// validHostPort reports whether s is host:port with a valid host and a port
// in 1..65535.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= maxPort && router.ValidHost(host)
}
