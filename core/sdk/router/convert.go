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
// router.go lives here; proto types never leave this package.

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
		Transport:      string(c.Transport),
		Source:         addrToProto(c.Source),
		PeerNames:      c.PeerNames,
		RequestUriUser: c.RequestURIUser,
		ToUser:         c.ToUser,
		FromUser:       c.FromUser,
	}
	for _, d := range c.Diversion {
		pc.Diversion = append(pc.Diversion, &routerpb.Diversion{User: d.User, Reason: d.Reason})
	}
	for _, h := range c.HistoryInfo {
		pc.HistoryInfo = append(pc.HistoryInfo, &routerpb.HistoryInfo{Index: h.Index, User: h.User, Cause: h.Cause})
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
		Transport:      Transport(pc.GetTransport()),
		Source:         src,
		PeerNames:      pc.GetPeerNames(),
		RequestURIUser: pc.GetRequestUriUser(),
		ToUser:         pc.GetToUser(),
		FromUser:       pc.GetFromUser(),
	}
	for _, d := range pc.GetDiversion() {
		c.Diversion = append(c.Diversion, Diversion{User: d.GetUser(), Reason: d.GetReason()})
	}
	for _, h := range pc.GetHistoryInfo() {
		c.HistoryInfo = append(c.HistoryInfo, HistoryInfo{Index: h.GetIndex(), User: h.GetUser(), Cause: h.GetCause()})
	}
	return c, nil
}

func decisionToProto(d *Decision) *routerpb.RouteResponse {
	return &routerpb.RouteResponse{Result: &routerpb.RouteResponse_Decision{Decision: &routerpb.Decision{
		Gateway:  d.Gateway,
		DialPlan: d.DialPlan,
		Service:  string(d.Service),
		Called:   d.Called,
		Mailbox:  d.Mailbox,
		Pool:     d.Pool,
	}}}
}

func decisionFromProto(pd *routerpb.Decision) *Decision {
	return &Decision{
		Gateway:  pd.GetGateway(),
		DialPlan: pd.GetDialPlan(),
		Service:  Service(pd.GetService()),
		Called:   pd.GetCalled(),
		Mailbox:  pd.GetMailbox(),
		Pool:     pd.GetPool(),
	}
}

// rejectionToProto sends the reason by name. It fails when r.Reason is none
// of Reasons, since the host could not map it to a SIP status.
func rejectionToProto(r *Rejection) (*routerpb.RouteResponse, error) {
	var reason error
	for _, known := range Reasons {
		if r.Reason != nil && errors.Is(r.Reason, known) {
			reason = known
			break
		}
	}
	if reason == nil {
		return nil, fmt.Errorf("%w: rejection reason %w is none of router.Reasons", ErrContract, r.Reason)
	}
	return &routerpb.RouteResponse{Result: &routerpb.RouteResponse_Rejection{Rejection: &routerpb.Rejection{
		Reason:   reason.Error(),
		Gateway:  r.Gateway,
		DialPlan: r.DialPlan,
		Detail:   r.Detail,
	}}}, nil
}

// rejectionFromProto restores the reason sentinel, so that errors.Is works
// in the host.
func rejectionFromProto(pr *routerpb.Rejection) (*Rejection, error) {
	reason := ReasonByName(pr.GetReason())
	if reason == nil {
		return nil, fmt.Errorf("%w: unknown rejection reason %q", ErrContract, pr.GetReason())
	}
	return &Rejection{
		Reason:   reason,
		Gateway:  pr.GetGateway(),
		DialPlan: pr.GetDialPlan(),
		Detail:   pr.GetDetail(),
	}, nil
}

func topologyToProto(t *Topology) *routerpb.TopologyResponse {
	pt := &routerpb.TopologyResponse{Generation: t.Generation}
	for _, g := range t.Gateways {
		pg := &routerpb.Gateway{
			Name:               g.Name,
			Fqdn:               g.FQDN,
			Status:             string(g.Status),
			CallsPerSecond:     g.CallsPerSecond,
			MaxConcurrentCalls: int64(g.MaxConcurrentCalls),
			Ping:               durationToProto(g.Ping),
			PingTarget:         g.PingTarget,
			PingTransport:      string(g.PingTransport),
		}
		for _, a := range g.Addresses {
			pg.Addresses = append(pg.Addresses, addrToProto(a))
		}
		pt.Gateways = append(pt.Gateways, pg)
	}
	for _, p := range t.Pools {
		pp := &routerpb.Pool{Name: p.Name}
		for _, b := range p.Backends {
			pp.Backends = append(pp.Backends, &routerpb.Backend{
				Name:            b.Name,
				Host:            b.Host,
				TcpPort:         int32(b.TCPPort),
				TlsPort:         int32(b.TLSPort),
				MaxCallsAllowed: int64(b.MaxCallsAllowed),
				Ping:            durationToProto(b.Ping),
			})
		}
		pt.Pools = append(pt.Pools, pp)
	}
	return pt
}

func topologyFromProto(pt *routerpb.TopologyResponse) (*Topology, error) {
	t := &Topology{Generation: pt.GetGeneration()}
	for _, pg := range pt.GetGateways() {
		g := Gateway{
			Name:               pg.GetName(),
			FQDN:               pg.GetFqdn(),
			Status:             GatewayStatus(pg.GetStatus()),
			CallsPerSecond:     pg.GetCallsPerSecond(),
			MaxConcurrentCalls: int(pg.GetMaxConcurrentCalls()),
			Ping:               durationFromProto(pg.GetPing()),
			PingTarget:         pg.GetPingTarget(),
			PingTransport:      Transport(pg.GetPingTransport()),
		}
		for _, s := range pg.GetAddresses() {
			a, err := addrFromProto(s)
			if err != nil {
				return nil, fmt.Errorf("router plugin: topology: gateway %q: %w", g.Name, err)
			}
			g.Addresses = append(g.Addresses, a)
		}
		t.Gateways = append(t.Gateways, g)
	}
	for _, pp := range pt.GetPools() {
		p := Pool{Name: pp.GetName()}
		for _, pb := range pp.GetBackends() {
			p.Backends = append(p.Backends, Backend{
				Name:            pb.GetName(),
				Host:            pb.GetHost(),
				TCPPort:         int(pb.GetTcpPort()),
				TLSPort:         int(pb.GetTlsPort()),
				MaxCallsAllowed: int(pb.GetMaxCallsAllowed()),
				Ping:            durationFromProto(pb.GetPing()),
			})
		}
		t.Pools = append(t.Pools, p)
	}
	return t, nil
}
