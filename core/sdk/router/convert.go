package router

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	routerpb "github.com/umedge/umedge/core/sdk/router/proto"
)

// All conversion between the proto messages and the plain Go types of
// router.go lives here; proto types never leave this package. Every open
// string set of the Go API is a closed enum on the wire, with one table per
// set driving both directions.

var transports = []struct {
	g Transport
	p routerpb.Transport
}{{UDP, routerpb.Transport_TRANSPORT_UDP}, {TCP, routerpb.Transport_TRANSPORT_TCP}, {TLS, routerpb.Transport_TRANSPORT_TLS}}

var gatewayStatuses = []struct {
	g GatewayStatus
	p routerpb.GatewayStatus
}{
	{GatewayEnabled, routerpb.GatewayStatus_GATEWAY_STATUS_ENABLED},
	{GatewayDisabled, routerpb.GatewayStatus_GATEWAY_STATUS_DISABLED},
	{GatewayNoNewCalls, routerpb.GatewayStatus_GATEWAY_STATUS_NO_NEW_CALLS},
}

var uriTypes = []struct {
	g URIType
	p routerpb.URIType
}{{TelExtn, routerpb.URIType_URI_TYPE_TEL_EXTN}, {E164, routerpb.URIType_URI_TYPE_E164}, {SIPName, routerpb.URIType_URI_TYPE_SIP_NAME}}

var securities = []struct {
	g Security
	p routerpb.Security
}{
	{Unsecured, routerpb.Security_SECURITY_UNSECURED},
	{SIPSecured, routerpb.Security_SECURITY_SIP_SECURED},
	{Secured, routerpb.Security_SECURITY_SECURED},
}

var serviceCodes = []struct {
	g Service
	p routerpb.Service
}{
	{CallAnswering, routerpb.Service_SERVICE_CALL_ANSWERING},
	{SubscriberAccess, routerpb.Service_SERVICE_SUBSCRIBER_ACCESS},
	{DirectVoicemail, routerpb.Service_SERVICE_DIRECT_VOICEMAIL},
}

var actions = []struct {
	g Action
	p routerpb.Action
}{{Redirect, routerpb.Action_ACTION_REDIRECT}, {Proxy, routerpb.Action_ACTION_PROXY}}

var reasonCodes = []struct {
	g error
	p routerpb.Reason
}{
	{ErrUnknownPeer, routerpb.Reason_REASON_UNKNOWN_PEER},
	{ErrGatewayDisabled, routerpb.Reason_REASON_GATEWAY_DISABLED},
	{ErrGatewayDraining, routerpb.Reason_REASON_GATEWAY_DRAINING},
	{ErrNoDialPlan, routerpb.Reason_REASON_NO_DIAL_PLAN},
	{ErrUnknownNumber, routerpb.Reason_REASON_UNKNOWN_NUMBER},
	{ErrBadNumber, routerpb.Reason_REASON_BAD_NUMBER},
	{ErrSecurityMismatch, routerpb.Reason_REASON_SECURITY_MISMATCH},
}

// toEnum and fromEnum look a value up in one of the tables above. An
// unknown Go value becomes the proto zero value (UNSPECIFIED), which the
// other side refuses; an unknown proto value becomes the Go zero value.
func toEnum[G comparable, P ~int32](table []struct {
	g G
	p P
}, v G) P {
	for _, e := range table {
		if e.g == v {
			return e.p
		}
	}
	return 0
}

func fromEnum[G comparable, P ~int32](table []struct {
	g G
	p P
}, v P) G {
	for _, e := range table {
		if e.p == v {
			return e.g
		}
	}
	var zero G
	return zero
}

func addrToProto(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func addrFromProto(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("parse address: %w", err)
	}
	return a, nil
}

func durationToProto(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func durationFromProto(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func callToProto(c *Call) *routerpb.Call {
	if c == nil {
		return nil
	}
	pc := &routerpb.Call{
		CallId:         c.CallID,
		Transport:      toEnum(transports, c.Transport),
		Source:         addrToProto(c.Source),
		PeerNames:      c.PeerNames,
		RequestUriUser: []byte(c.RequestURIUser),
		ToUser:         []byte(c.ToUser),
		FromUser:       []byte(c.FromUser),
	}
	for _, d := range c.Diversion {
		pc.Diversion = append(pc.Diversion, &routerpb.Diversion{User: []byte(d.User), Reason: []byte(d.Reason)})
	}
	for _, h := range c.HistoryInfo {
		pc.HistoryInfo = append(pc.HistoryInfo, &routerpb.HistoryInfo{Index: []byte(h.Index), User: []byte(h.User), Cause: []byte(h.Cause)})
	}
	return pc
}

func callFromProto(pc *routerpb.Call) (*Call, error) {
	src, err := addrFromProto(pc.GetSource())
	if err != nil {
		return nil, fmt.Errorf("call source: %w", err)
	}
	c := &Call{
		CallID:         pc.GetCallId(),
		Transport:      fromEnum(transports, pc.GetTransport()),
		Source:         src,
		PeerNames:      pc.GetPeerNames(),
		RequestURIUser: string(pc.GetRequestUriUser()),
		ToUser:         string(pc.GetToUser()),
		FromUser:       string(pc.GetFromUser()),
	}
	for _, d := range pc.GetDiversion() {
		c.Diversion = append(c.Diversion, Diversion{User: string(d.GetUser()), Reason: string(d.GetReason())})
	}
	for _, h := range pc.GetHistoryInfo() {
		c.HistoryInfo = append(c.HistoryInfo, HistoryInfo{Index: string(h.GetIndex()), User: string(h.GetUser()), Cause: string(h.GetCause())})
	}
	return c, nil
}

func decisionToProto(d *Decision) *routerpb.RouteResponse {
	return &routerpb.RouteResponse{Result: &routerpb.RouteResponse_Decision{Decision: &routerpb.Decision{
		Service: toEnum(serviceCodes, d.Service),
		Called:  []byte(d.Called),
		Mailbox: d.Mailbox,
		Pool:    d.Pool,
	}}}
}

// decisionFromProto refuses a decision whose service is none of the
// known ones. Gateway and DialPlan are the core's to fill in.
func decisionFromProto(pd *routerpb.Decision) (*Decision, error) {
	svc := fromEnum(serviceCodes, pd.GetService())
	if svc == "" {
		return nil, fmt.Errorf("%w: decision with service %v", ErrContract, pd.GetService())
	}
	return &Decision{Service: svc, Called: string(pd.GetCalled()), Mailbox: pd.GetMailbox(), Pool: pd.GetPool()}, nil
}

// rejectionToProto sends the reason as its code. It fails when r.Reason is
// none of Reasons, since the host could not map it to a SIP status.
func rejectionToProto(r *Rejection) (*routerpb.RouteResponse, error) {
	var code routerpb.Reason
	for _, e := range reasonCodes {
		if r.Reason != nil && errors.Is(r.Reason, e.g) {
			code = e.p
			break
		}
	}
	if code == routerpb.Reason_REASON_UNSPECIFIED {
		return nil, fmt.Errorf("%w: rejection reason %w is none of router.Reasons", ErrContract, r.Reason)
	}
	return &routerpb.RouteResponse{Result: &routerpb.RouteResponse_Rejection{Rejection: &routerpb.Rejection{
		Reason: code,
		Detail: r.Detail,
	}}}, nil
}

// rejectionFromProto restores the reason sentinel, so that errors.Is works
// in the host.
func rejectionFromProto(pr *routerpb.Rejection) (*Rejection, error) {
	var reason error
	for _, e := range reasonCodes {
		if e.p == pr.GetReason() {
			reason = e.g
		}
	}
	if reason == nil {
		return nil, fmt.Errorf("%w: unknown rejection reason %v", ErrContract, pr.GetReason())
	}
	return &Rejection{Reason: reason, Detail: pr.GetDetail()}, nil
}

func tableToProto(t *Table) *routerpb.TableResponse {
	pt := &routerpb.TableResponse{Generation: t.Generation}
	for _, g := range t.Gateways {
		pg := &routerpb.Gateway{
			Name:               g.Name,
			Fqdn:               g.FQDN,
			Status:             toEnum(gatewayStatuses, g.Status),
			CallsPerSecond:     g.CallsPerSecond,
			MaxConcurrentCalls: int64(g.MaxConcurrentCalls),
			Ping:               durationToProto(g.Ping),
			PingTarget:         g.PingTarget,
			PingTransport:      toEnum(transports, g.PingTransport),
		}
		for _, a := range g.Addresses {
			pg.Addresses = append(pg.Addresses, addrToProto(a))
		}
		for _, h := range g.HuntGroups {
			pg.HuntGroups = append(pg.HuntGroups, &routerpb.HuntGroup{Pilot: h.Pilot, DialPlan: h.DialPlan})
		}
		pt.Gateways = append(pt.Gateways, pg)
	}
	for _, dp := range t.DialPlans {
		pd := &routerpb.DialPlan{
			Name:            dp.Name,
			UriType:         toEnum(uriTypes, dp.URIType),
			ExtensionDigits: int32(dp.ExtensionDigits),
			Security:        toEnum(securities, dp.Security),
			Pool:            dp.Pool,
			AccessNumbers:   dp.AccessNumbers,
		}
		if dp.Unlisted == AskPlugin {
			pd.Unlisted = routerpb.Unlisted_UNLISTED_ASK_PLUGIN
		}
		pd.Mailboxes = make([]*routerpb.Mailbox, 0, len(dp.Mailboxes))
		for _, m := range dp.Mailboxes {
			pd.Mailboxes = append(pd.Mailboxes, &routerpb.Mailbox{Number: m.Number, Name: m.Name, Pool: m.Pool})
		}
		pt.DialPlans = append(pt.DialPlans, pd)
	}
	for _, p := range t.Pools {
		pp := &routerpb.Pool{Name: p.Name, Action: toEnum(actions, p.Action)}
		for _, b := range p.Backends {
			pp.Backends = append(pp.Backends, &routerpb.Backend{
				Name:            b.Name,
				Host:            b.Host,
				TcpPort:         int32(b.TCPPort),
				TlsPort:         int32(b.TLSPort),
				UdpPort:         int32(b.UDPPort),
				MaxCallsAllowed: int64(b.MaxCallsAllowed),
				Ping:            durationToProto(b.Ping),
			})
		}
		pt.Pools = append(pt.Pools, pp)
	}
	return pt
}

// tableFromProto converts what the plugin sent. Unknown enum values become
// the Go zero value, which Compile refuses with the entry's name.
func tableFromProto(pt *routerpb.TableResponse) (*Table, error) {
	t := &Table{Generation: pt.GetGeneration()}
	for _, pg := range pt.GetGateways() {
		g := Gateway{
			Name:               pg.GetName(),
			FQDN:               pg.GetFqdn(),
			Status:             fromEnum(gatewayStatuses, pg.GetStatus()),
			CallsPerSecond:     pg.GetCallsPerSecond(),
			MaxConcurrentCalls: int(pg.GetMaxConcurrentCalls()),
			Ping:               durationFromProto(pg.GetPing()),
			PingTarget:         pg.GetPingTarget(),
			PingTransport:      fromEnum(transports, pg.GetPingTransport()),
		}
		for _, s := range pg.GetAddresses() {
			a, err := addrFromProto(s)
			if err != nil {
				return nil, fmt.Errorf("router plugin: table: gateway %q: %w", g.Name, err)
			}
			g.Addresses = append(g.Addresses, a)
		}
		for _, h := range pg.GetHuntGroups() {
			g.HuntGroups = append(g.HuntGroups, HuntGroup{Pilot: h.GetPilot(), DialPlan: h.GetDialPlan()})
		}
		t.Gateways = append(t.Gateways, g)
	}
	for _, pd := range pt.GetDialPlans() {
		dp := DialPlan{
			Name:            pd.GetName(),
			URIType:         fromEnum(uriTypes, pd.GetUriType()),
			ExtensionDigits: int(pd.GetExtensionDigits()),
			Security:        fromEnum(securities, pd.GetSecurity()),
			Pool:            pd.GetPool(),
			AccessNumbers:   pd.GetAccessNumbers(),
			Unlisted:        RejectUnlisted,
		}
		switch pd.GetUnlisted() {
		case routerpb.Unlisted_UNLISTED_REJECT:
		case routerpb.Unlisted_UNLISTED_ASK_PLUGIN:
			dp.Unlisted = AskPlugin
		default:
			dp.Unlisted = Unlisted(pd.GetUnlisted().String()) // refused by Compile, by name
		}
		dp.Mailboxes = make([]Mailbox, 0, len(pd.GetMailboxes()))
		for _, m := range pd.GetMailboxes() {
			dp.Mailboxes = append(dp.Mailboxes, Mailbox{Number: m.GetNumber(), Name: m.GetName(), Pool: m.GetPool()})
		}
		t.DialPlans = append(t.DialPlans, dp)
	}
	for _, pp := range pt.GetPools() {
		p := Pool{Name: pp.GetName(), Action: fromEnum(actions, pp.GetAction())}
		for _, pb := range pp.GetBackends() {
			p.Backends = append(p.Backends, Backend{
				Name:            pb.GetName(),
				Host:            pb.GetHost(),
				TCPPort:         int(pb.GetTcpPort()),
				TLSPort:         int(pb.GetTlsPort()),
				UDPPort:         int(pb.GetUdpPort()),
				MaxCallsAllowed: int(pb.GetMaxCallsAllowed()),
				Ping:            durationFromProto(pb.GetPing()),
			})
		}
		t.Pools = append(t.Pools, p)
	}
	return t, nil
}
