package b2bua

import (
	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// relatch follows a UDP caller whose NAT mapping moved (R-SBC-2 for the
// signalling): a request in the call's dialog that comes from the caller's
// address but another port makes that port where our requests to the
// caller (re-INVITE, BYE, keep-alives) go from then on, as its media
// re-latches. Only an in-dialog request counts, one carrying our To tag:
// a stray datagram with the caller's address cannot move the call.
func (c *call) relatch(msg sip.Message, in Inbound) {
	req, ok := msg.(*sip.Request)
	if !ok || in.Transport != router.UDP || in.Requests == nil || req.To() == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == ended || c.a.in.Transport != router.UDP || tagOf(req.To().Params) != c.a.localTag || in.Source == c.a.requestsTo {
		return
	}
	if !c.a.requestsTo.IsValid() && in.Source == c.a.in.Source {
		return
	}
	c.e.log.Info("caller's NAT mapping moved: requests follow", "call_id", c.b.callID,
		"from", c.a.in.Source, "to", in.Source)
	c.a.requestsTo, c.a.in.Requests = in.Source, in.Requests
}
