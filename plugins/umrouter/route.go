package main

import (
	"fmt"
	"strings"

	"github.com/umedge/umedge/core/sdk/router"
)

// route decides one call in the order of um-spec.md §4: peer (R-ID-1),
// gateway status (R-ID-2), dial plan (R-ID-3), security (R-SEC-1), calling
// party (R-ID-5), called party (R-ID-4).
func (c *config) route(call *router.Call) (*router.Decision, error) {
	gw, rej := c.peer(call)
	if rej != nil {
		return nil, rej
	}
	switch gw.status {
	case router.GatewayDisabled:
		return nil, &router.Rejection{Reason: router.ErrGatewayDisabled, Gateway: gw.name,
			Detail: fmt.Sprintf("gateway %s has status Disabled", gw.name)}
	case router.GatewayNoNewCalls:
		return nil, &router.Rejection{Reason: router.ErrGatewayDraining, Gateway: gw.name,
			Detail: fmt.Sprintf("gateway %s has status NoNewCalls and takes no new calls", gw.name)}
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
		return nil, &router.Rejection{Reason: router.ErrNoDialPlan, Gateway: gw.name,
			Detail: fmt.Sprintf("no hunt group of gateway %s has pilot %q and the gateway has no catch-all hunt group", gw.name, called)}
	}
	reject := func(reason error, format string, args ...any) (*router.Decision, error) {
		return nil, &router.Rejection{Reason: reason, Gateway: gw.name, DialPlan: dp.name, Detail: fmt.Sprintf(format, args...)}
	}

	if dp.secured() && call.Transport != router.TLS {
		return reject(router.ErrSecurityMismatch, "dial plan %s is %s and needs SIP over TLS, the call came over %s",
			dp.name, dp.security, transportName(call.Transport))
	}
	if dp.format.uriType == uriTelExtn && !acceptableCaller(call.FromUser) {
		return reject(router.ErrBadNumber, "calling number %q is not numeric; TelExtn dial plan %s accepts digits, a leading + or anonymous",
			call.FromUser, dp.name)
	}

	d := &router.Decision{Gateway: gw.name, DialPlan: dp.name}
	if diverted, via, ok := divertedNumber(call); ok {
		key, err := parseNumber(diverted, dp.format)
		if err != nil {
			return reject(router.ErrBadNumber, "diverted number %q (%s) does not fit dial plan %s: %v", diverted, via, dp.name, err)
		}
		mb := dp.mailboxes[key]
		if mb == nil {
			return reject(router.ErrUnknownNumber, "diverted number %s (%s) is no mailbox of dial plan %s", diverted, via, dp.name)
		}
		d.Service, d.Called, d.Mailbox, d.Pool = router.CallAnswering, diverted, mb.name, mb.pool
		return d, nil
	}

	if dp.access[lookupKey(called, dp.format.uriType)] {
		d.Service, d.Called, d.Pool = router.SubscriberAccess, called, dp.pool
		return d, nil
	}
	key, err := parseNumber(called, dp.format)
	if err != nil {
		return reject(router.ErrBadNumber, "called number %q does not fit dial plan %s: %v", called, dp.name, err)
	}
	mb := dp.mailboxes[key]
	if mb == nil {
		return reject(router.ErrUnknownNumber, "called number %s is no access number or mailbox of dial plan %s", called, dp.name)
	}
	d.Service, d.Called, d.Mailbox, d.Pool = router.DirectVoicemail, called, mb.name, mb.pool
	return d, nil
}

// peer finds the gateway that sent the call (R-ID-1): by the verified TLS
// certificate names for TLS, by source address for UDP and TCP.
func (c *config) peer(call *router.Call) (*gateway, *router.Rejection) {
	switch call.Transport {
	case router.TLS:
		for _, n := range call.PeerNames {
			if gw := c.byFQDN[normalName(n)]; gw != nil {
				return gw, nil
			}
		}
		if len(call.PeerNames) == 0 {
			return nil, &router.Rejection{Reason: router.ErrUnknownPeer,
				Detail: fmt.Sprintf("TLS peer %s presented no certificate DNS names", call.Source)}
		}
		return nil, &router.Rejection{Reason: router.ErrUnknownPeer,
			Detail: fmt.Sprintf("TLS certificate names %s of peer %s match no gateway fqdn", strings.Join(call.PeerNames, ", "), call.Source)}
	case router.UDP, router.TCP:
		if gw := c.byAddr[call.Source.Unmap().WithZone("")]; gw != nil {
			return gw, nil
		}
		return nil, &router.Rejection{Reason: router.ErrUnknownPeer,
			Detail: fmt.Sprintf("source %s over %s is no address of any gateway", call.Source, call.Transport)}
	default:
		return nil, &router.Rejection{Reason: router.ErrUnknownPeer,
			Detail: fmt.Sprintf("transport %s of peer %s is not udp, tcp or tls", transportName(call.Transport), call.Source)}
	}
}

// divertedNumber returns the number a redirected call was diverted from
// (R-ID-4) and the header it came from: the top (most recent) Diversion
// entry, else the History-Info entry just before the last one that carries a
// cause, else, when no entry has a cause, the second-to-last entry.
func divertedNumber(call *router.Call) (number, via string, ok bool) {
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

func transportName(t router.Transport) string {
	if t == "" {
		return "an unknown transport"
	}
	return string(t)
}
