package b2bua

import (
	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/hdrrules"
	"github.com/umedge/umedge/core/internal/sipheader"
)

// Header manipulation (R-SBC-10): each peer's rules, [sbc.peers.<name>],
// apply to what the engine sends to that peer (out) and what it receives
// from it (in) — the caller's gateway on leg A, the pool on leg B. Sent
// messages pass through outbound, the one place that rewrites them, on
// their way to the socket (a retransmission is rewritten again, alike);
// received ones through inbound, before the engine reads them. Inbound
// rules run after routing: they shape what the call carries, not where
// it goes.

// rulesOf are the header rules of a leg's peer.
func (c *call) rulesOf(side Side) *hdrrules.Set {
	if side == SideB {
		return c.e.cfg.Peers[c.target.Pool].Rules
	}
	return c.e.cfg.Peers[c.target.Gateway].Rules
}

// outbound rewrites a message for the peer of rs.
func (e *Engine) outbound(rs *hdrrules.Set, msg []byte) []byte {
	out, res := rs.ApplyMessage(hdrrules.Out, msg)
	e.countRules(res)
	return out
}

// ruled is a Sender towards a peer with rules.
type ruled struct {
	Sender
	e  *Engine
	rs *hdrrules.Set
}

func (r ruled) Send(b []byte) { r.Sender.Send(r.e.outbound(r.rs, b)) }

// withRules returns in with its senders rewriting for rs.
func (e *Engine) withRules(rs *hdrrules.Set, in Inbound) Inbound {
	if !rs.Has(hdrrules.Out) {
		return in
	}
	if _, done := in.Reply.(ruled); !done && in.Reply != nil {
		in.Reply = ruled{in.Reply, e, rs}
	}
	if _, done := in.Requests.(ruled); !done && in.Requests != nil {
		in.Requests = ruled{in.Requests, e, rs}
	}
	return in
}

// inbound rewrites a received message by rs and reports whether it
// changed. From and To keep their tags: rules change only their URI.
func (e *Engine) inbound(rs *hdrrules.Set, msg sip.Message) bool {
	if !rs.Has(hdrrules.In) {
		return false
	}
	names := rs.Names()
	var hs []hdrrules.Header
	for _, n := range names {
		for _, h := range msg.GetHeaders(n) {
			hs = append(hs, hdrrules.Header{Name: n, Value: h.Value()})
		}
	}
	rm, ok := msg.(interface{ RemoveHeader(name string) bool })
	if !ok {
		return false
	}
	out, res := rs.Apply(hdrrules.In, hs)
	e.countRules(res)
	if !res.Changed {
		return false
	}
	for _, n := range names {
		if n == "From" || n == "To" {
			for _, h := range out {
				if h.Name == n {
					setAddress(msg, n, h.Value)
				}
			}
			continue
		}
		for _, h := range msg.GetHeaders(n) {
			rm.RemoveHeader(h.Name())
		}
		for _, h := range out {
			if h.Name == n {
				msg.AppendHeader(sip.NewHeader(n, h.Value))
			}
		}
	}
	return true
}

// setAddress gives msg's From or To the URI and display name of v,
// keeping its parameters (the tag).
func setAddress(msg sip.Message, name, v string) {
	var u sip.Uri
	var params sip.HeaderParams
	dn, err := sip.ParseAddressValue(v, &u, &params)
	if err != nil {
		return
	}
	type heads interface {
		From() *sip.FromHeader
		To() *sip.ToHeader
	}
	h, ok := msg.(heads)
	if !ok {
		return
	}
	if f := h.From(); name == "From" && f != nil {
		f.Address, f.DisplayName = u, dn
	}
	if t := h.To(); name == "To" && t != nil {
		t.Address, t.DisplayName = u, dn
	}
}

func (e *Engine) countRules(res hdrrules.Result) {
	if res.Refused > 0 {
		e.Metrics.RulesRefused.Add(uint64(res.Refused))
	}
}

// inviteRules applies the caller's inbound rules to its INVITE; when they
// changed Diversion or History-Info, leg B's Diversion is written from the
// result (the router parsed the headers as they came).
func (e *Engine) inviteRules(req *sip.Request, t *Target) {
	rs := e.cfg.Peers[t.Gateway].Rules
	if !e.inbound(rs, req) || t.Call == nil {
		return
	}
	values := func(name string) []string {
		var out []string
		for _, h := range req.GetHeaders(name) {
			out = append(out, h.Value())
		}
		return out
	}
	call := *t.Call
	var err error
	if call.Diversion, err = sipheader.Diversion(values("Diversion")); err != nil {
		e.log.Info("Diversion after the header rules unparsable; the one received is used", "call_id", callIDOf(req), "err", err)
		call.Diversion = t.Call.Diversion
	}
	if call.HistoryInfo, err = sipheader.HistoryInfo(values("History-Info")); err != nil {
		e.log.Info("History-Info after the header rules unparsable; the one received is used", "call_id", callIDOf(req), "err", err)
		call.HistoryInfo = t.Call.HistoryInfo
	}
	t.Call = &call
}
