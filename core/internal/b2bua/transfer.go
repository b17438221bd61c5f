package b2bua

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// A REFER from the back end (UM transferring a call it answered, R-ID-8)
// is handled by the REFER mode of the peer that would receive it, the
// caller: [sbc.peers.<gateway>].refer_mode. Transparent passes it to the
// caller (relay.go). Handle locally — for callers such as CUCM that
// handle UM's REFER badly — keeps it from the caller (RFC 3515 as the
// transferee): the engine answers 202, calls the Refer-To target itself
// (leg C, without an offer: its answer offers), re-INVITEs the caller
// with that offer so that the caller's media now flows to leg C, and
// tells the back end how the transfer goes in NOTIFYs (message/sipfrag);
// once leg C is up it is the call's leg B, and the back end hangs up (or
// is hung up after 64×T1).
// Only targets the routing table knows are called — a back end of a pool
// or a gateway's address — anything else gets 403: a REFER cannot make
// the appliance call where routing would not. A REFER from the caller is
// always passed through.

// ReferMode is what the engine does with a REFER from the back end.
type ReferMode string

// The REFER modes.
const (
	ReferTransparent ReferMode = "transparent" // relayed to the caller (the default)
	ReferLocal       ReferMode = "handle_locally"
)

const sipfrag = "message/sipfrag;version=2.0"

// transfer is a REFER the engine carries out itself.
type transfer struct {
	referCSeq uint32 // of the REFER: the id of its subscription
	leg       bLeg   // leg C, to the Refer-To target
	inviteTx  *retrans
	ringing   bool
	aCSeq     uint32 // our re-INVITE to the caller, once leg C answered
	aBranch   string
	aTx       *retrans
	offerC    bool // the caller's media is offered leg C's (media.Offer pending)
	swapped   bool // leg C became leg B; leg is then the old leg B
	oldGone   bool // the old leg B hung up during the transfer
	notifies  []*retrans
}

func (c *call) referMode() ReferMode {
	if m := c.e.cfg.Peers[c.target.Gateway].ReferMode; m != "" {
		return m
	}
	return ReferTransparent
}

// referLocal takes a REFER from the back end in ReferLocal mode.
func (c *call) referLocal(req *sip.Request, in Inbound) {
	refuse := func(code int, phrase, why string) {
		c.e.log.Info("transfer refused", "call_id", c.b.callID, "refer_to", headerValue(req, "Refer-To"), "status", code, "why", why)
		in.Reply.Send(response(req, in.Source, "", code, phrase, []string{c.e.warning(why)}, nil))
	}
	switch {
	case c.state != confirmed:
		refuse(481, "Call/Transaction Does Not Exist", "no call to transfer")
		return
	case c.xfer != nil && !c.xfer.swapped || c.reinvite != nil:
		refuse(491, "Request Pending", "a transfer or re-INVITE is in progress")
		return
	}
	var u sip.Uri
	if _, err := sip.ParseAddressValue(headerValue(req, "Refer-To"), &u, nil); err != nil {
		refuse(400, "Bad Request", "malformed Refer-To")
		return
	}
	if u.Headers.Length() > 0 {
		refuse(501, "Not Implemented", "attended transfer (Refer-To with headers) is not handled locally")
		return
	}
	tp, dst, host, ok := c.transferTarget(&u)
	if !ok {
		refuse(403, "Forbidden", "transfer target is no back end or gateway the routing knows")
		return
	}
	x := &transfer{referCSeq: req.CSeq().SeqNo}
	l := &x.leg
	*l = bLeg{callID: "umedge-" + token(), localTag: token(), cseq: 1, inviteCSeq: 1, branch: token()}
	ruri := "sip:"
	if u.User != "" {
		ruri += escapedUser(&u) + "@"
	}
	ruri += hostPort(dst)
	if err := c.legTo(l, tp, host, dst, ruri, ruri); err != nil {
		refuse(503, "Service Unavailable", "no listener towards the transfer target")
		return
	}
	c.e.addB(c, l.callID)
	c.b.peers = append(c.b.peers, dst.Addr()) // leg C's messages come in as leg B's
	in.Reply.Send(response(req, in.Source, "", 202, "Accepted", []string{contactOf(c.b.tp, c.b.local)}, nil))
	c.xfer = x
	c.notify(x, "SIP/2.0 100 Trying", false)

	caller := c.a.invite
	l.from = "From: " + displayName(caller) + "<sip:" + fromUser(caller) + "@" + c.e.cfg.FQDN + ">;tag=" + l.localTag
	w := inviteTxRequest(l, "INVITE")
	w.line(contactOf(l.tp, l.local))
	w.line(allow)
	if rb := headerValue(req, "Referred-By"); rb != "" {
		if v, ok := c.referredBy(rb); ok {
			w.line("Referred-By: ", v)
		}
	}
	l.invite = w.end(nil) // no offer: leg C's answer offers, the caller answers
	c.sendLeg(l, l.invite)
	x.inviteTx = c.transactionFor(l.tp, true, c.e.cfg.RingTimeout, func() { c.sendLeg(l, l.invite) }, func() {
		c.transferFailed(x, 408, "Request Timeout")
	})
	c.e.log.Info("transfer handled locally", "call_id", c.b.callID, "target", l.ruri)
}

// transferTarget is where a Refer-To may send the call: a back end of a
// pool (on one of its ports) or a gateway's address, of the routing table
// in force; on a secured dial plan over TLS only.
func (c *call) transferTarget(u *sip.Uri) (tp router.Transport, dst netip.AddrPort, host string, ok bool) {
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") || c.e.cfg.Table == nil {
		return tp, dst, "", false
	}
	tbl := c.e.cfg.Table()
	if tbl == nil {
		return tp, dst, "", false
	}
	param, _ := u.UriParams.Get("transport")
	name := strings.Trim(u.Host, "[]")
	addr, err := netip.ParseAddr(name)
	if err == nil {
		addr = addr.Unmap()
	}
	for _, p := range tbl.Pools {
		for _, b := range p.Backends {
			var ba netip.Addr
			if a, err := netip.ParseAddr(b.Host); err == nil {
				ba = a.Unmap()
			}
			if !(strings.EqualFold(b.Host, name) || addr.IsValid() && ba == addr) || !ba.IsValid() {
				continue // a back end named by DNS: not resolved here, so not a target
			}
			switch port := u.Port; {
			case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(param, "tls") || port != 0 && port == b.TLSPort:
				tp, port = router.TLS, cmp0(port, b.TLSPort)
				return c.transferOK(tp, netip.AddrPortFrom(ba, uint16(port)), b.Host)
			case strings.EqualFold(param, "udp") || port != 0 && port == b.UDPPort:
				return c.transferOK(router.UDP, netip.AddrPortFrom(ba, uint16(cmp0(port, b.UDPPort))), b.Host)
			case port == 0 || port == b.TCPPort:
				return c.transferOK(router.TCP, netip.AddrPortFrom(ba, uint16(cmp0(port, b.TCPPort))), b.Host)
			}
		}
	}
	if !addr.IsValid() {
		return tp, dst, "", false
	}
	for _, g := range tbl.Gateways {
		if !slices.Contains(g.Addresses, addr) {
			continue
		}
		tp, port := router.UDP, u.Port
		switch {
		case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(param, "tls"):
			tp = router.TLS
		case strings.EqualFold(param, "tcp"):
			tp = router.TCP
		}
		if port == 0 {
			port = 5060
			if tp == router.TLS {
				port = 5061
			}
		}
		host := addr.String()
		if tp == router.TLS && g.FQDN != "" {
			host = g.FQDN
		}
		return c.transferOK(tp, netip.AddrPortFrom(addr, uint16(port)), host)
	}
	return tp, dst, "", false
}

func cmp0(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func (c *call) transferOK(tp router.Transport, dst netip.AddrPort, host string) (router.Transport, netip.AddrPort, string, bool) {
	if dst.Port() == 0 || c.secured() && tp != router.TLS {
		return tp, dst, "", false
	}
	return tp, dst, host, true
}

// notify tells the back end how the transfer goes (RFC 3515 §2.4.4): a
// NOTIFY in the old leg B's dialog with the status line of leg C.
func (c *call) notify(x *transfer, status string, final bool) {
	l := &c.b
	if x.swapped {
		l = &x.leg
	}
	if x.oldGone || len(x.notifies) >= 4 {
		return
	}
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	l.cseq++
	msg := c.legRequest(l, "NOTIFY", l.cseq, token(), content{
		headers: []string{"Event: refer;id=" + strconv.FormatUint(uint64(x.referCSeq), 10), "Subscription-State: " + state},
		ctype:   sipfrag, body: []byte(status + "\r\n"),
	})
	c.sendLeg(l, msg)
	x.notifies = append(x.notifies, c.transaction(l.tp, false, func() { c.sendLeg(l, msg) }, nil))
}

// transferMsg takes a message of leg C, or of the old leg B once leg C
// replaced it, and reports true; false for anything else.
func (c *call) transferMsg(msg sip.Message, in Inbound) bool {
	x := c.xfer
	if x == nil {
		return false
	}
	id := ""
	if h := msg.CallID(); h != nil {
		id = string(*h)
	}
	res, isRes := msg.(*sip.Response)
	if isRes && res.CSeq().MethodName == sip.NOTIFY && res.StatusCode >= 200 {
		for _, n := range x.notifies {
			n.stop() // one answer at a time: NOTIFYs go out one by one
		}
		return id == x.leg.callID && x.swapped || id == c.b.callID
	}
	if id != x.leg.callID {
		if req, ok := msg.(*sip.Request); ok && req.Method == sip.BYE && !x.swapped && id == c.b.callID {
			// The back end hangs up after the 202, as transferors do: the
			// transfer goes on without it.
			in.Reply.Send(response(req, in.Source, "", 200, "OK", nil, nil))
			x.oldGone = true
			return true
		}
		return false
	}
	if x.swapped { // the old leg B
		switch m := msg.(type) {
		case *sip.Request:
			switch m.Method {
			case sip.BYE:
				x.oldGone = true
				in.Reply.Send(response(m, in.Source, "", 200, "OK", nil, nil))
			case sip.ACK:
			default:
				in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
			}
		case *sip.Response:
			if m.CSeq().MethodName == sip.BYE && m.StatusCode >= 200 {
				x.leg.byeTx.stop()
			}
		}
		return true
	}
	switch m := msg.(type) {
	case *sip.Request:
		if m.Method != sip.ACK {
			in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		}
	case *sip.Response:
		if m.CSeq().MethodName == sip.INVITE && m.CSeq().SeqNo == 1 {
			c.transferAnswer(x, m)
		}
	}
	return true
}

// transferAnswer takes leg C's answer to its INVITE.
func (c *call) transferAnswer(x *transfer, res *sip.Response) {
	l := &x.leg
	switch code := res.StatusCode; {
	case code < 200:
		x.inviteTx.quiet()
		if code != 100 && !x.ringing {
			x.ringing = true
			c.notify(x, "SIP/2.0 "+strconv.Itoa(code)+" "+statusText(res.Reason), false)
		}
	case code >= 300:
		x.inviteTx.stop()
		var w wire
		w.line("ACK ", l.ruri, " SIP/2.0")
		w.via(l.tp, l.local, l.branch)
		w.line("Max-Forwards: 70")
		w.line(l.from)
		if to := res.To(); to != nil {
			w.line(to.String())
		}
		w.line("Call-ID: ", l.callID)
		w.line("CSeq: 1 ACK")
		c.sendLeg(l, w.end(nil))
		c.transferFailed(x, code, res.Reason)
	case l.remoteTag != "":
		if l.ack != nil {
			c.sendLeg(l, l.ack) // the 2xx again: our ACK was lost
		}
	default:
		x.inviteTx.stop()
		l.remoteTag = tagOf(res.To().Params)
		if ct := res.Contact(); ct != nil {
			l.target = ct.Address.String()
		}
		for _, h := range res.GetHeaders("Record-Route") {
			l.routeSet = append(l.routeSet, h.Value())
		}
		slices.Reverse(l.routeSet)
		sdp := sdpOf(res)
		if sdp == nil {
			c.dropLegC(x)
			c.transferFailed(x, 488, "Not Acceptable Here")
			return
		}
		offer, err := c.media.Offer(SideB, sdp)
		if err != nil {
			c.e.log.Info("transfer target's SDP refused", "call_id", c.b.callID, "err", err)
			c.dropLegC(x)
			c.transferFailed(x, 488, "Not Acceptable Here")
			return
		}
		x.offerC = true
		// The caller's media moves to leg C: its offer, through us.
		c.a.cseq++
		x.aCSeq, x.aBranch = c.a.cseq, token()
		msg := c.requestOn(SideA, "INVITE", x.aCSeq, x.aBranch, content{body: offer})
		c.a.in.Requests.Send(msg)
		x.aTx = c.transaction(c.a.in.Transport, true, func() { c.a.in.Requests.Send(msg) }, func() {
			c.transferReinviteFailed(x)
		})
	}
}

// transferReinvite takes the caller's answer to the re-INVITE that moves
// its media to leg C.
func (c *call) transferReinvite(x *transfer, res *sip.Response) {
	if res.StatusCode < 200 {
		x.aTx.quiet()
		return
	}
	if x.swapped {
		if res.StatusCode < 300 {
			c.a.in.Requests.Send(c.a.reAck) // the 2xx again: our ACK was lost
		}
		return
	}
	x.aTx.stop()
	if res.StatusCode >= 300 {
		c.a.in.Requests.Send(c.inDialogA("ACK", x.aCSeq, x.aBranch, nil))
		c.transferReinviteFailed(x)
		return
	}
	c.ackIn(SideA, x.aCSeq, nil)
	var answer []byte
	if sdp := sdpOf(res); sdp != nil {
		var err error
		if answer, err = c.media.Answer(SideA, sdp); err != nil {
			c.e.log.Info("caller's answer for the transfer refused", "call_id", c.b.callID, "err", err)
			answer = nil
		}
	}
	x.offerC = false
	l := &x.leg
	l.ack = c.legRequest(l, "ACK", 1, token(), content{body: answer})
	c.sendLeg(l, l.ack)
	if answer == nil {
		c.media.Reject(SideB) // the media stays with the old leg B
		c.dropLegC(x)         // ACKed; now BYE
		c.transferFailed(x, 488, "Not Acceptable Here")
		return
	}
	// Leg C is the call's leg B from now on; the old leg B gets the
	// final NOTIFY and our BYE.
	old := c.b
	c.b = *l
	c.b.peers = old.peers
	x.leg = old
	x.swapped = true
	c.notify(x, "SIP/2.0 200 OK", true)
	if !x.oldGone {
		// The transferor hangs up once told (RFC 3515 §2.4.5, as UM
		// does); one that does not is hung up after 64×T1.
		time.AfterFunc(64*c.e.cfg.T1, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.xfer == x && !x.oldGone {
				x.oldGone = true
				ol := &x.leg
				ol.cseq++
				bye := c.legRequest(ol, "BYE", ol.cseq, token(), content{})
				c.sendLeg(ol, bye)
				ol.byeTx = c.transaction(ol.tp, false, func() { c.sendLeg(ol, bye) }, nil)
			}
		})
	}
	c.e.log.Info("call transferred", "call_id", c.b.callID, "target", c.b.ruri)
}

// transferReinviteFailed gives up a transfer whose caller refused (or
// never answered) the move to leg C: leg C is hung up, the call stays as
// it was.
func (c *call) transferReinviteFailed(x *transfer) {
	if x.offerC {
		c.media.Reject(SideB)
		x.offerC = false
	}
	c.dropLegC(x)
	c.transferFailed(x, 500, "Server Internal Error")
}

// dropLegC hangs up an answered leg C: ACK (without the answer it lacks)
// if not yet sent, then BYE.
func (c *call) dropLegC(x *transfer) {
	l := &x.leg
	if l.ack == nil {
		l.ack = c.legRequest(l, "ACK", 1, token(), content{})
		c.sendLeg(l, l.ack)
	}
	l.cseq++
	bye := c.legRequest(l, "BYE", l.cseq, token(), content{})
	c.sendLeg(l, bye)
	l.byeTx = c.transaction(l.tp, false, func() { c.sendLeg(l, bye) }, nil)
}

// transferFailed ends a transfer that did not reach its target: the back
// end hears why; the call goes on with it — or ends, when it hung up.
func (c *call) transferFailed(x *transfer, code int, phrase string) {
	if c.xfer != x || x.swapped {
		return
	}
	c.e.log.Info("transfer failed", "call_id", c.b.callID, "target", x.leg.ruri, "status", code)
	c.notify(x, "SIP/2.0 "+strconv.Itoa(code)+" "+statusText(phrase), true)
	c.xfer = nil
	if x.oldGone && c.state != ended {
		c.byeA()
		c.end("transfer failed after the back end hung up")
	}
}

// abandonTransfer is end's part for a transfer in progress: leg C is
// cancelled or hung up.
func (c *call) abandonTransfer() {
	x := c.xfer
	if x == nil || x.swapped {
		return
	}
	c.xfer = nil
	x.inviteTx.stop()
	x.aTx.stop()
	l := &x.leg
	switch {
	case l.remoteTag != "":
		c.dropLegC(x)
	case l.invite != nil:
		c.sendLeg(l, inviteTxRequest(l, "CANCEL").end(nil))
	}
}

// inviteTxRequest begins a request of leg C's INVITE transaction (the
// INVITE, its CANCEL): the INVITE's branch and CSeq, To without tag.
func inviteTxRequest(l *bLeg, method string) *wire {
	w := &wire{}
	w.line(method, " ", l.ruri, " SIP/2.0")
	w.via(l.tp, l.local, l.branch)
	w.line("Max-Forwards: 70")
	w.line(l.from)
	w.line("To: <", l.to, ">")
	w.line("Call-ID: ", l.callID)
	w.line("CSeq: 1 ", method)
	return w
}

// statusText keeps a reason phrase printable for a sipfrag.
func statusText(s string) string {
	if t := warningText(s); t != "" {
		return t
	}
	return "Unknown"
}

// addB registers another leg-B Call-ID of c (a transfer's leg C); forget
// drops it with the call.
func (e *Engine) addB(c *call, id string) {
	e.mu.Lock()
	e.byB[id] = c
	if e.moreB == nil {
		e.moreB = map[*call][]string{}
	}
	e.moreB[c] = append(e.moreB[c], id)
	e.mu.Unlock()
}

// forgetMoreB drops c's other leg-B Call-IDs; e.mu held.
func (e *Engine) forgetMoreB(c *call) {
	for _, id := range e.moreB[c] {
		if e.byB[id] == c {
			delete(e.byB, id)
		}
	}
	delete(e.moreB, c)
}
