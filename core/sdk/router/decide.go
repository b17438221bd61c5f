package router

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/umedge/umedge/core/sdk/hostname"
)

// Compiled is a Table checked and indexed for the per-call path. It is
// never changed once built, so Decide reads it without locks.
type Compiled struct {
	table  *Table
	byAddr map[netip.Addr]*compiledGateway // UDP/TCP peers, by unmapped source address
	byFQDN map[string]*compiledGateway     // TLS peers, by NormalName of the FQDN
	plans  map[string]*compiledPlan
	pools  map[string]*Pool
}

type compiledGateway struct {
	src      *Gateway
	pilots   map[string]*compiledPlan // by lower-case pilot
	catchAll *compiledPlan
}

type compiledPlan struct {
	src       *DialPlan
	format    NumberFormat
	secured   bool
	ask       bool
	access    map[string]bool        // by AccessKey
	mailboxes map[string]mailboxDest // by NumberFormat.Key
}

type mailboxDest struct{ name, pool string }

// maxTableProblems bounds the problems Compile lists.
const maxTableProblems = 20

// Compile checks t and indexes it. Every reference must resolve (hunt
// groups to dial plans, dial plans and mailboxes to pools), names must be
// unique, every address and FQDN must belong to one gateway, and every
// number must fit its dial plan. The error wraps ErrBadTable and lists the
// problems. Compile keeps t; the caller must not change it afterwards.
func Compile(t *Table) (*Compiled, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: no table", ErrBadTable)
	}
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < maxTableProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	c := &Compiled{
		table:  t,
		byAddr: make(map[netip.Addr]*compiledGateway),
		byFQDN: make(map[string]*compiledGateway),
		plans:  make(map[string]*compiledPlan, len(t.DialPlans)),
		pools:  make(map[string]*Pool, len(t.Pools)),
	}
	for i := range t.Pools {
		p := &t.Pools[i]
		if p.Name == "" || c.pools[p.Name] != nil {
			bad("pool %d: name %q is empty or used twice", i, p.Name)
			continue
		}
		if len(p.Backends) == 0 {
			bad("pool %s has no back ends", p.Name)
		}
		switch p.Action {
		case "":
			p.Action = Redirect
		case Redirect, Proxy:
		default:
			bad("pool %s: action %q is neither %q nor %q", p.Name, p.Action, Redirect, Proxy)
		}
		for j, b := range p.Backends {
			if !ValidHost(b.Host) {
				bad("pool %s, back end %d (%s): host %q is no IP address or DNS name", p.Name, j, b.Name, b.Host)
			}
			ports := b.TCPPort + b.TLSPort
			if p.Action == Proxy {
				ports += b.UDPPort
			}
			if b.Host == "" || !portOrNone(b.TCPPort) || !portOrNone(b.TLSPort) || !portOrNone(b.UDPPort) || ports == 0 {
				bad("pool %s, back end %d (%s): needs a host and a port in 1..65535 (0 = none): TCP or TLS, or for a proxy pool UDP", p.Name, j, b.Name)
			}
		}
		c.pools[p.Name] = p
	}
	for i := range t.DialPlans {
		dp := &t.DialPlans[i]
		if dp.Name == "" || c.plans[dp.Name] != nil {
			bad("dial plan %d: name %q is empty or used twice", i, dp.Name)
			continue
		}
		cp := &compiledPlan{
			src: dp, format: dp.Format(),
			secured: dp.Security == SIPSecured || dp.Security == Secured,
			ask:     dp.Unlisted == AskPlugin,
			access:  make(map[string]bool, len(dp.AccessNumbers)),
		}
		c.plans[dp.Name] = cp
		switch dp.URIType {
		case TelExtn:
			if dp.ExtensionDigits < MinExtensionDigits || dp.ExtensionDigits > MaxExtensionDigits {
				bad("dial plan %s: extension digits %d not in %d..%d", dp.Name, dp.ExtensionDigits, MinExtensionDigits, MaxExtensionDigits)
			}
		case E164, SIPName:
		default:
			bad("dial plan %s: %v", dp.Name, fmt.Errorf("%w: %q", ErrURIType, dp.URIType))
			continue
		}
		switch dp.Security {
		case Unsecured, SIPSecured, Secured:
		default:
			bad("dial plan %s: security %q is none of Unsecured, SIPSecured, Secured", dp.Name, dp.Security)
		}
		switch dp.Unlisted {
		case "", RejectUnlisted, AskPlugin:
		default:
			bad("dial plan %s: unlisted %q is none of reject, ask-plugin", dp.Name, dp.Unlisted)
		}
		if c.pools[dp.Pool] == nil {
			bad("dial plan %s: pool %q is not in the table", dp.Name, dp.Pool)
		}
		for _, n := range dp.AccessNumbers {
			if !ValidAccessNumber(n, dp.URIType) {
				bad("dial plan %s: access number %q is not a valid %s number", dp.Name, n, dp.URIType)
			}
			cp.access[AccessKey(n, dp.URIType)] = true
		}
		cp.mailboxes = make(map[string]mailboxDest, len(dp.Mailboxes))
		for _, m := range dp.Mailboxes {
			key, err := cp.format.Key(m.Number)
			if err != nil {
				bad("dial plan %s, mailbox %s: %v", dp.Name, m.Name, err)
				continue
			}
			if _, dup := cp.mailboxes[key]; dup {
				bad("dial plan %s: number %s is listed twice", dp.Name, m.Number)
				continue
			}
			pool := m.Pool
			if pool == "" {
				pool = dp.Pool
			}
			if c.pools[pool] == nil {
				bad("dial plan %s, mailbox %s: pool %q is not in the table", dp.Name, m.Name, pool)
			}
			cp.mailboxes[key] = mailboxDest{name: m.Name, pool: pool}
		}
	}
	names := make(map[string]bool, len(t.Gateways))
	for i := range t.Gateways {
		g := &t.Gateways[i]
		if g.Name == "" || names[g.Name] {
			bad("gateway %d: name %q is empty or used twice", i, g.Name)
			continue
		}
		names[g.Name] = true
		switch g.Status {
		case GatewayEnabled, GatewayDisabled, GatewayNoNewCalls:
		default:
			bad("gateway %s: status %q is none of Enabled, Disabled, NoNewCalls", g.Name, g.Status)
		}
		if g.CallsPerSecond < 0 || g.MaxConcurrentCalls < 0 {
			bad("gateway %s: negative limit", g.Name)
		}
		cg := &compiledGateway{src: g, pilots: make(map[string]*compiledPlan, len(g.HuntGroups))}
		for _, a := range g.Addresses {
			a = a.Unmap()
			if !a.IsValid() || a.Zone() != "" {
				bad("gateway %s: address %v is not a plain IP address", g.Name, a)
				continue
			}
			if other := c.byAddr[a]; other != nil {
				bad("gateway %s: address %s already belongs to gateway %s", g.Name, a, other.src.Name)
				continue
			}
			c.byAddr[a] = cg
		}
		if g.FQDN != "" && !ValidDNSName(g.FQDN) {
			bad("gateway %s: fqdn %q is no DNS name", g.Name, g.FQDN)
		} else if g.FQDN != "" {
			n := NormalName(g.FQDN)
			if other := c.byFQDN[n]; other != nil {
				bad("gateway %s: fqdn %s already belongs to gateway %s", g.Name, g.FQDN, other.src.Name)
			} else {
				c.byFQDN[n] = cg
			}
		}
		for _, h := range g.HuntGroups {
			cp := c.plans[h.DialPlan]
			if cp == nil {
				bad("gateway %s: hunt group %q leads to dial plan %q, which is not in the table", g.Name, h.Pilot, h.DialPlan)
				continue
			}
			if h.Pilot == "" {
				if cg.catchAll != nil {
					bad("gateway %s has two catch-all hunt groups", g.Name)
				}
				cg.catchAll = cp
				continue
			}
			key := strings.ToLower(h.Pilot)
			if cg.pilots[key] != nil {
				bad("gateway %s: pilot %q is listed twice", g.Name, h.Pilot)
			}
			cg.pilots[key] = cp
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrBadTable, strings.Join(problems, "; "))
	}
	return c, nil
}

// Table returns the table c was compiled from. It must not be changed.
func (c *Compiled) Table() *Table { return c.table }

func portOrNone(p int) bool { return p >= 0 && p <= 65535 }

// DialPlan returns the dial plan called name, or nil.
func (c *Compiled) DialPlan(name string) *DialPlan {
	if p := c.plans[name]; p != nil {
		return p.src
	}
	return nil
}

// Pool returns the pool called name, or nil.
func (c *Compiled) Pool(name string) *Pool { return c.pools[name] }

// proxied reports whether pool is a proxy pool.
func (c *Compiled) proxied(pool string) bool {
	p := c.pools[pool]
	return p != nil && p.Action == Proxy
}

// Secure checks the security of a decision for call: a SIPSecured or
// Secured dial plan takes calls over mutual TLS only (R-SEC-1), unless the
// pool the call goes to is a proxy pool — then the SBC secures the leg to
// the back end (SIP over TLS, SRTP for Secured) whatever the caller's leg
// is. Decide applies it; the core applies it to the plugin's answers too.
func (c *Compiled) Secure(call *Call, d *Decision) error {
	dp := c.plans[d.DialPlan]
	if dp == nil || !dp.secured || call.Transport == TLS || c.proxied(d.Pool) {
		return nil
	}
	return &Rejection{Reason: ErrSecurityMismatch, Gateway: d.Gateway, DialPlan: d.DialPlan,
		Detail: fmt.Sprintf("dial plan %s is %s and needs SIP over TLS, the call came over %s, and pool %s is no proxy pool",
			d.DialPlan, dp.src.Security, transportName(call.Transport), d.Pool)}
}

// Decide answers one call from the table, in the order of um-spec.md §4:
// peer (R-ID-1), gateway status (R-ID-2), dial plan (R-ID-3), security
// (R-SEC-1), calling party (R-ID-5), called party (R-ID-4). It returns a
// *Decision, or a *Rejection as the error, or — for a well-formed number
// the table does not list in a dial plan that leaves such numbers to the
// plugin — a *Decision with only Gateway and DialPlan set and ErrAskPlugin.
// It is a pure function of the table and the call.
func (c *Compiled) Decide(call *Call) (*Decision, error) {
	d, err := c.decide(call)
	if err == nil {
		if err := c.Secure(call, d); err != nil {
			return nil, err
		}
	}
	return d, err
}

func (c *Compiled) decide(call *Call) (*Decision, error) {
	gw, rej := c.peer(call)
	if rej != nil {
		return nil, rej
	}
	g := gw.src
	switch g.Status {
	case GatewayDisabled:
		return nil, &Rejection{Reason: ErrGatewayDisabled, Gateway: g.Name,
			Detail: fmt.Sprintf("gateway %s has status Disabled", g.Name)}
	case GatewayNoNewCalls:
		return nil, &Rejection{Reason: ErrGatewayDraining, Gateway: g.Name,
			Detail: fmt.Sprintf("gateway %s has status NoNewCalls and takes no new calls", g.Name)}
	}

	called := call.RequestURIUser
	if called == "" {
		called = call.ToUser
	}
	dp := gw.pilots[strings.ToLower(called)]
	if dp == nil {
		dp = gw.catchAll
	}
	if dp == nil {
		return nil, &Rejection{Reason: ErrNoDialPlan, Gateway: g.Name,
			Detail: fmt.Sprintf("no hunt group of gateway %s has pilot %q and the gateway has no catch-all hunt group", g.Name, called)}
	}
	plan := dp.src.Name
	reject := func(reason error, format string, args ...any) (*Decision, error) {
		return nil, &Rejection{Reason: reason, Gateway: g.Name, DialPlan: plan, Detail: fmt.Sprintf(format, args...)}
	}

	if dp.secured && call.Transport != TLS && !c.proxied(dp.src.Pool) {
		return reject(ErrSecurityMismatch, "dial plan %s is %s and needs SIP over TLS, the call came over %s",
			plan, dp.src.Security, transportName(call.Transport))
	}
	if dp.format.URIType == TelExtn && !ValidCaller(call.FromUser) {
		return reject(ErrBadNumber, "calling number %q is not numeric; TelExtn dial plan %s accepts digits, a leading + or anonymous",
			call.FromUser, plan)
	}

	d := &Decision{Gateway: g.Name, DialPlan: plan}
	if diverted, via, ok := DivertedNumber(call); ok {
		key, err := dp.format.Key(diverted)
		if err != nil {
			return reject(ErrBadNumber, "diverted number %q (%s) does not fit dial plan %s: %v", diverted, via, plan, err)
		}
		mb, ok := dp.mailboxes[key]
		switch {
		case ok:
			d.Service, d.Called, d.Mailbox, d.Pool = CallAnswering, diverted, mb.name, mb.pool
			return d, nil
		case dp.ask:
			return d, ErrAskPlugin
		}
		return reject(ErrUnknownNumber, "diverted number %s (%s) is no mailbox of dial plan %s", diverted, via, plan)
	}

	if dp.access[AccessKey(called, dp.format.URIType)] {
		d.Service, d.Called, d.Pool = SubscriberAccess, called, dp.src.Pool
		return d, nil
	}
	key, err := dp.format.Key(called)
	if err != nil {
		return reject(ErrBadNumber, "called number %q does not fit dial plan %s: %v", called, plan, err)
	}
	mb, ok := dp.mailboxes[key]
	switch {
	case ok:
		d.Service, d.Called, d.Mailbox, d.Pool = DirectVoicemail, called, mb.name, mb.pool
		return d, nil
	case dp.ask:
		return d, ErrAskPlugin
	}
	return reject(ErrUnknownNumber, "called number %s is no access number or mailbox of dial plan %s", called, plan)
}

// HasAddress reports whether a is an address of a gateway of the table.
func (c *Compiled) HasAddress(a netip.Addr) bool {
	return c.byAddr[a.Unmap().WithZone("")] != nil
}

// Gateway returns the gateway that sent call, or nil when the table has
// none for its source or certificate: the peer step of Decide alone.
func (c *Compiled) Gateway(call *Call) *Gateway {
	if gw, _ := c.peer(call); gw != nil {
		return gw.src
	}
	return nil
}

// peer finds the gateway that sent the call (R-ID-1): by the verified TLS
// certificate names for TLS, by source address for UDP and TCP.
func (c *Compiled) peer(call *Call) (*compiledGateway, *Rejection) {
	switch call.Transport {
	case TLS:
		for _, n := range call.PeerNames {
			if gw := c.byFQDN[NormalName(n)]; gw != nil {
				return gw, nil
			}
		}
		if len(call.PeerNames) == 0 {
			return nil, &Rejection{Reason: ErrUnknownPeer,
				Detail: fmt.Sprintf("TLS peer %s presented no certificate DNS names", call.Source)}
		}
		return nil, &Rejection{Reason: ErrUnknownPeer,
			Detail: fmt.Sprintf("TLS certificate names %s of peer %s match no gateway fqdn", strings.Join(call.PeerNames, ", "), call.Source)}
	case UDP, TCP:
		if gw := c.byAddr[call.Source.Unmap().WithZone("")]; gw != nil {
			return gw, nil
		}
		return nil, &Rejection{Reason: ErrUnknownPeer,
			Detail: fmt.Sprintf("source %s over %s is no address of any gateway", call.Source, call.Transport)}
	default:
		return nil, &Rejection{Reason: ErrUnknownPeer,
			Detail: fmt.Sprintf("transport %s of peer %s is not udp, tcp or tls", transportName(call.Transport), call.Source)}
	}
}

// DivertedNumber returns the number a redirected call was diverted from
// (R-ID-4) and the header it came from: the top (most recent) Diversion
// entry, else the History-Info entry just before the last one that carries a
// cause, else, when no entry has a cause, the second-to-last entry.
func DivertedNumber(call *Call) (number, via string, ok bool) {
	if len(call.Diversion) > 0 {
		return call.Diversion[0].User, "Diversion", true
	}
	hi := call.HistoryInfo
	last := -1
	for i, h := range hi {
		if h.Cause != "" {
			last = i
		}
	}
	switch {
	case last > 0:
		return hi[last-1].User, "History-Info", true
	case last < 0 && len(hi) >= 2:
		return hi[len(hi)-2].User, "History-Info", true
	default:
		return "", "", false
	}
}

// NormalName is the form in which DNS names are compared: lower case,
// without a trailing dot.
func NormalName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

func transportName(t Transport) string {
	if t == "" {
		return "an unknown transport"
	}
	return string(t)
}

// IsRejection reports whether err is a *Rejection (possibly wrapped).
func IsRejection(err error) bool {
	var r *Rejection
	return errors.As(err, &r)
}

// ValidHost reports whether s can stand as the host of a SIP URI the core
// writes: an IP address without zone, or a DNS name. Anything else could
// carry URI syntax into the 302's Contact. It is hostname.ValidHost.
func ValidHost(s string) bool { return hostname.ValidHost(s) }

// ValidDNSName reports whether s is a DNS host name: RFC 1123 labels, an
// optional trailing dot, no wildcard. It is hostname.ValidDNSName.
func ValidDNSName(s string) bool { return hostname.ValidDNSName(s) }
