package b2bua

import (
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// handleA takes a message from the caller's side. It reports false for a
// request that names no dialog of this call (the front answers it).
func (c *call) handleA(msg sip.Message, in Inbound) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notifyAnswer(msg) || c.callerTransferA(msg, in) {
		return true
	}
	switch m := msg.(type) {
	case *sip.Request:
		return c.requestA(m, in)
	case *sip.Response:
		c.responseA(m)
	}
	return true
}

func (c *call) requestA(req *sip.Request, in Inbound) bool {
	if req.To() == nil || req.CSeq() == nil {
		return false
	}
	toTag := tagOf(req.To().Params)
	ours := toTag == c.a.localTag
	switch req.Method {
	case sip.INVITE:
		switch {
		case toTag == "" && branchOf(req) == c.a.branch:
			if c.a.last != nil { // a retransmission: our last answer again
				c.a.in.Reply.Send(c.a.last)
			}
		case toTag == "" && c.state == ended:
			c.e.forget(c)
			return false // a new call that reuses an ended call's Call-ID
		case toTag == "":
			in.Reply.Send(response(req, in.Source, "", 482, "Loop Detected", nil, nil))
		case ours:
			c.reinviteFrom(SideA, req, in)
		default:
			return false
		}
	case sip.ACK:
		if ours {
			c.ackFrom(SideA, req)
		}
	case sip.CANCEL:
		if branchOf(req) != c.a.branch {
			return false
		}
		in.Reply.Send(response(req, in.Source, c.a.localTag, 200, "OK", nil, nil))
		if c.state == calling || c.state == early {
			c.cancelB()
			c.a.finalLocked(c, 487, "Request Terminated", nil, nil)
			c.end("cancelled by caller")
		}
	case sip.BYE:
		if !ours {
			return false
		}
		in.Reply.Send(response(req, in.Source, "", 200, "OK", nil, nil))
		c.byeFrom(SideA)
	case sip.OPTIONS:
		in.Reply.Send(response(req, in.Source, "", 200, "OK", []string{allow}, nil))
	case sip.REFER:
		switch {
		case ours && c.referMode(SideA) == ReferLocal:
			c.referLocal(SideA, req, in)
		case ours:
			c.relay(SideA, req, in)
		default:
			in.Reply.Send(response(req, in.Source, "", 501, "Not Implemented", []string{allow}, nil))
		}
	default:
		if _, ok := relayed[req.Method]; ok && ours {
			c.relay(SideA, req, in)
			break
		}
		in.Reply.Send(response(req, in.Source, "", 501, "Not Implemented", []string{allow}, nil))
	}
	return true
}

// byeFrom ends the call for a BYE from one side: BYE to the other.
func (c *call) byeFrom(side Side) {
	if c.state == ended {
		return // a retransmitted BYE
	}
	if side == SideA {
		if c.state < answered {
			// A BYE in the early dialog (RFC 3261 §15.1.2): the INVITE
			// still gets its answer.
			c.cancelB()
			c.a.finalLocked(c, 487, "Request Terminated", nil, nil)
		} else {
			c.byeB()
		}
		c.end("caller hung up")
		return
	}
	c.byeA()
	c.end("callee hung up")
}

// responseA takes an answer of the caller to one of our requests.
func (c *call) responseA(res *sip.Response) {
	cs := res.CSeq()
	if cs == nil {
		return
	}
	switch cs.MethodName {
	case sip.BYE:
		if res.StatusCode >= 200 {
			c.a.out.stop()
		}
	case sip.INVITE:
		if x := c.xfer; x != nil && x.by == SideB && x.reCSeq != 0 && cs.SeqNo == x.reCSeq {
			c.transferReinvite(x, res)
		} else if ri := c.reinvite; ri != nil && ri.from == SideB && cs.SeqNo == ri.cseq {
			c.reinviteAnswer(SideA, res)
		} else if res.StatusCode >= 200 && res.StatusCode < 300 && c.a.reAck != nil && cs.SeqNo == c.a.reAckCSeq {
			c.a.in.Requests.Send(c.a.reAck) // a retransmitted 2xx of a re-INVITE done: our ACK was lost
		}
	case sip.OPTIONS: // our keep-alive
		if res.StatusCode < 200 || c.keepTx == nil || c.state == ended {
			return
		}
		c.keepTx.stop()
		if res.StatusCode == 481 { // the caller has lost the call
			c.byeB()
			c.end("caller lost the dialog (keep-alive 481)")
		}
	default:
		c.relayAnswer(SideA, res)
	}
}

// handleB takes a message from the back end's side.
func (c *call) handleB(msg sip.Message, in Inbound) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notifyAnswer(msg) || c.transferMsg(msg, in) {
		return
	}
	switch m := msg.(type) {
	case *sip.Response:
		c.responseB(m)
	case *sip.Request:
		c.requestB(m, in)
	}
}

func (c *call) requestB(req *sip.Request, in Inbound) {
	if req.To() == nil || req.CSeq() == nil {
		return
	}
	if tagOf(req.To().Params) != c.b.localTag {
		if req.Method != sip.ACK {
			in.Reply.Send(response(req, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		}
		return
	}
	switch req.Method {
	case sip.BYE:
		in.Reply.Send(response(req, in.Source, "", 200, "OK", nil, nil))
		c.byeFrom(SideB)
	case sip.INVITE:
		c.reinviteFrom(SideB, req, in)
	case sip.ACK:
		c.ackFrom(SideB, req)
	case sip.OPTIONS:
		in.Reply.Send(response(req, in.Source, "", 200, "OK", []string{allow}, nil))
	case sip.CANCEL:
		in.Reply.Send(response(req, in.Source, "", 200, "OK", nil, nil))
	case sip.REFER:
		if c.referMode(SideB) == ReferLocal {
			c.referLocal(SideB, req, in)
			break
		}
		c.relay(SideB, req, in)
	default:
		if _, ok := relayed[req.Method]; ok {
			c.relay(SideB, req, in)
			break
		}
		in.Reply.Send(response(req, in.Source, "", 501, "Not Implemented", []string{allow}, nil))
	}
}

func (c *call) responseB(res *sip.Response) {
	cs := res.CSeq()
	if cs == nil {
		return
	}
	switch {
	case cs.MethodName == sip.INVITE && cs.SeqNo == c.b.inviteCSeq:
		c.inviteAnswer(res)
	case cs.MethodName == sip.INVITE:
		if ri := c.reinvite; ri != nil && ri.from == SideA && cs.SeqNo == ri.cseq {
			c.reinviteAnswer(SideB, res)
		} else if res.StatusCode >= 200 && res.StatusCode < 300 && c.b.reAck != nil && cs.SeqNo == c.b.reAckCSeq {
			c.sendB(c.b.reAck) // a retransmitted 2xx of a re-INVITE done
		}
	case cs.MethodName == sip.BYE:
		if res.StatusCode >= 200 {
			c.b.byeTx.stop()
		}
	case cs.MethodName == sip.CANCEL:
		if res.StatusCode >= 200 {
			c.b.cancelTx.stop()
		}
	default:
		c.relayAnswer(SideB, res)
	}
}

// inviteAnswer takes the back end's answer to leg B's INVITE.
func (c *call) inviteAnswer(res *sip.Response) {
	code := res.StatusCode
	switch {
	case code < 200:
		c.b.inviteTx.stop()
		if !c.b.provisonal {
			c.b.provisonal = true
			if c.state != ended && c.ring == nil {
				c.ring = time.AfterFunc(c.e.cfg.RingTimeout, c.ringTimeout)
			}
		}
		if c.cancelled {
			c.cancelB()
			return
		}
		if c.state == calling {
			c.state = early
		}
		if c.state == early {
			c.provisional(res)
		}
	case code < 300:
		c.success(res)
	default:
		c.b.inviteTx.stop()
		c.ackFailure(res)
		c.b.refused = true
		if c.state == ended || c.state >= answered {
			return
		}
		if code < 400 {
			switch mode := c.redirectMode(); {
			case mode == RedirectLocal && c.follow(res):
				return
			case mode != RedirectLocal && c.relayRedirect(res, mode == RedirectRewrite):
				return
			}
			// A redirect not followed goes no further: relayed, it would
			// carry no Contact (the back end's is not the caller's to see).
			c.e.Metrics.Failed.Add(1)
			c.a.finalLocked(c, 502, "Bad Gateway", []string{c.e.warning("back end redirected the call elsewhere")}, nil)
			c.end(strconv.Itoa(code) + " " + res.Reason + " from back end, not followed")
			return
		}
		if (code == 408 || code >= 500 && code < 600) && c.failover(strconv.Itoa(code)+" "+res.Reason) {
			return
		}
		c.e.Metrics.Failed.Add(1)
		var extra []string
		if ra := headerValue(res, "Retry-After"); ra != "" {
			extra = append(extra, "Retry-After: "+ra)
		}
		if mse := headerValue(res, "Min-SE"); code == 422 && mse != "" {
			extra = append(extra, "Min-SE: "+mse) // Session Interval Too Small (RFC 4028 §6)
		}
		c.a.finalLocked(c, code, res.Reason, extra, nil)
		c.end(strconv.Itoa(code) + " " + res.Reason + " from back end")
	}
}

func (c *call) ringTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state < answered {
		c.cancelB()
		c.failA(408, "Request Timeout", "back end did not answer in time")
	}
}

// ackFailure ACKs a non-2xx final answer of leg B's INVITE: part of its
// transaction, with the INVITE's branch (RFC 3261 §17.1.1.3).
func (c *call) ackFailure(res *sip.Response) {
	c.sendB(failureAck(c.b.ruri, c.b.tp, c.b.local, c.b.branch, c.b.from, res.To(), c.b.callID, c.b.inviteCSeq))
}

// failureAck writes the ACK of a non-2xx answer (whose To is to) to the
// INVITE sent to ruri with branch and cseq.
func failureAck(ruri string, tp router.Transport, local netip.AddrPort, branch, from string, to *sip.ToHeader, callID string, cseq uint32) []byte {
	var w wire
	w.line("ACK ", ruri, " SIP/2.0")
	w.via(tp, local, branch)
	w.line("Max-Forwards: 70")
	w.line(from)
	if to != nil {
		w.line(to.String())
	}
	w.line("Call-ID: ", callID)
	w.cseq(cseq, " ACK")
	return w.end(nil)
}

// success takes leg B's 2xx: the dialog with the back end is established;
// its SDP goes to the caller in our 2xx.
func (c *call) success(res *sip.Response) {
	c.b.inviteTx.stop()
	if c.ring != nil {
		c.ring.Stop()
	}
	if c.b.ack != nil {
		c.sendB(c.b.ack) // the 2xx again: our ACK was lost
		return
	}
	if c.state == answered || c.state == confirmed {
		return // the 2xx again before the caller's ACK: that ACK answers it
	}
	c.b.remoteTag = tagOf(res.To().Params)
	if ct := res.Contact(); ct != nil {
		c.b.target = ct.Address.String()
	}
	c.b.routeSet = c.b.routeSet[:0]
	for h := range named(res, "Record-Route") {
		c.b.routeSet = append(c.b.routeSet, h.Value())
	}
	slices.Reverse(c.b.routeSet)
	if c.state == ended || c.cancelled {
		// Answered after the caller gave up: take the call and end it.
		c.b.ack = c.inDialogB("ACK", c.b.inviteCSeq, token(), nil)
		c.sendB(c.b.ack)
		c.byeB()
		return
	}
	var body []byte
	var err error
	if sdp := sdpOf(res); sdp != nil {
		if c.lateOffer {
			body, err = c.media.Offer(SideB, sdp)
		} else {
			body, err = c.media.Answer(SideB, sdp)
		}
	}
	if err != nil || body == nil {
		why := "back end answered without SDP"
		if err != nil {
			c.e.log.Info("back end's SDP refused", "call_id", c.b.callID, "err", err)
			why = "back end's SDP refused"
		}
		c.b.ack = c.inDialogB("ACK", c.b.inviteCSeq, token(), nil)
		c.sendB(c.b.ack)
		c.byeB()
		c.failA(502, "Bad Gateway", why)
		return
	}
	c.state, c.answerAt = answered, time.Now()
	c.e.Metrics.Answered.Add(1)
	c.a.finalLocked(c, res.StatusCode, res.Reason, sessionTimer(res), body)
}

// follow places leg B again at the Contact of the back end's 3xx (R-CR-5:
// the UM service moves the call to a worker instance), where
// redirectTarget allows it.
func (c *call) follow(res *sip.Response) bool {
	ct := res.Contact()
	if ct == nil || c.redirects >= c.e.cfg.MaxRedirects {
		return false
	}
	u := ct.Address
	tp, dst, _, ok := c.redirectTarget(&u)
	if !ok {
		return false
	}
	c.redirects++
	c.e.Metrics.Redirects.Add(1)
	uri := "sip:"
	if u.User != "" {
		uri += escapedUser(&u) + "@"
	}
	uri += hostPort(dst)
	if err := c.routeTo(tp, c.b.serverName, dst, uri, uri); err != nil {
		return false
	}
	c.b.cseq++
	c.b.inviteCSeq = c.b.cseq
	mf, _ := maxForwards(c.a.invite)
	c.sendInvite(mf, c.b.offer)
	return true
}

// ackFrom takes an ACK from one side: of our 2xx to the caller's INVITE,
// or of our answer to a relayed re-INVITE.
func (c *call) ackFrom(side Side, req *sip.Request) {
	if ri := c.reinvite; ri != nil && ri.from == side && req.CSeq().SeqNo == ri.req.CSeq().SeqNo {
		ri.final.stop()
		c.reinvite = nil
		if ri.lateOffer && ri.final != nil {
			var body []byte
			if sdp := sdpOf(req); sdp != nil {
				var err error
				if body, err = c.media.Answer(side, sdp); err != nil {
					c.e.log.Info("answer in the ACK of a re-INVITE refused", "call_id", c.b.callID, "err", err)
					body = nil
				}
			}
			c.ackIn(ri.answerer, ri.cseq, body)
		}
		c.settleMedia()
		return
	}
	if side != SideA {
		return
	}
	if c.finalCode >= 300 {
		c.a.final.stop()
		return
	}
	if c.state != answered {
		return // a retransmitted ACK
	}
	c.a.final.stop()
	c.state = confirmed
	c.startKeepAlive()
	var body []byte
	if c.lateOffer {
		sdp := sdpOf(req)
		var err error
		if sdp == nil {
			err = errNoAnswer
		} else {
			body, err = c.media.Answer(SideA, sdp)
		}
		if err != nil {
			c.b.ack = c.inDialogB("ACK", c.b.inviteCSeq, token(), nil)
			c.sendB(c.b.ack)
			c.byeA()
			c.byeB()
			c.end("caller's answer in ACK refused: " + err.Error())
			return
		}
	}
	c.b.ack = c.inDialogB("ACK", c.b.inviteCSeq, token(), body)
	c.sendB(c.b.ack)
	c.settle()
}

// reinviteFrom relays a re-INVITE (hold, resume, codec change, re-key)
// from one side to the other, its offer rewritten by the media engine.
func (c *call) reinviteFrom(side Side, req *sip.Request, in Inbound) {
	if ri := c.reinvite; ri != nil && ri.from == side && branchOf(req) == branchOf(ri.req) {
		return // a retransmission: the answer will come
	}
	switch {
	case c.state != confirmed:
		in.Reply.Send(response(req, in.Source, "", 500, "Server Internal Error", []string{"Retry-After: 1"}, nil))
		return
	case c.reinvite != nil, c.xfer != nil && !c.xfer.swapped:
		in.Reply.Send(response(req, in.Source, "", 491, "Request Pending", nil, nil))
		return
	}
	var offer []byte
	if sdp := sdpOf(req); sdp != nil {
		var err error
		if offer, err = c.media.Offer(side, sdp); err != nil {
			in.Reply.Send(response(req, in.Source, "", 488, "Not Acceptable Here", []string{c.e.warning(err.Error())}, nil))
			return
		}
	}
	ri := &reinvite{from: side, req: req, in: in, branch: token(), lateOffer: offer == nil}
	c.reinvite = ri
	in.Reply.Send(response(req, in.Source, "", 100, "Trying", nil, nil))
	if side == SideA {
		c.b.cseq++
		ri.cseq = c.b.cseq
		ri.msg = c.requestOn(SideB, "INVITE", ri.cseq, ri.branch, content{headers: sessionTimer(req), body: offer})
		c.sendB(ri.msg)
		ri.tx = c.transaction(c.b.tp, true, func() { c.sendB(ri.msg) }, func() { c.reinviteFailed(ri, 408, "Request Timeout") })
		return
	}
	c.a.cseq++
	ri.cseq = c.a.cseq
	ri.msg = c.requestOn(SideA, "INVITE", ri.cseq, ri.branch, content{headers: sessionTimer(req), body: offer})
	c.a.in.Requests.Send(ri.msg)
	ri.tx = c.transaction(c.a.in.Transport, true, func() { c.a.in.Requests.Send(ri.msg) }, func() { c.reinviteFailed(ri, 408, "Request Timeout") })
}

// reinviteAnswer takes the answer to a relayed re-INVITE from the side
// that got it (answerer) and answers the side that sent it.
func (c *call) reinviteAnswer(answerer Side, res *sip.Response) {
	ri := c.reinvite
	if res.StatusCode < 200 {
		ri.tx.quiet() // the deadline stays: an answerer that goes quiet after 100 gets its 408
		return
	}
	ri.tx.stop()
	if res.StatusCode >= 300 {
		c.ackReinviteFailure(answerer, ri, res)
		c.reinviteFailed(ri, res.StatusCode, res.Reason)
		return
	}
	if ri.final != nil {
		if !ri.lateOffer {
			c.ackIn(answerer, ri.cseq, nil) // the 2xx again: our ACK was lost
		}
		return
	}
	var body []byte
	sdp := sdpOf(res)
	switch {
	case ri.lateOffer:
		// The 2xx offers; the sender's ACK will answer, and then the
		// answerer gets its ACK.
		ri.answerer = answerer
		if sdp != nil {
			var err error
			if body, err = c.media.Offer(answerer, sdp); err != nil {
				c.e.log.Info("offer in a re-INVITE's 2xx refused", "call_id", c.b.callID, "err", err)
				c.ackIn(answerer, ri.cseq, nil)
				c.reinviteFailed(ri, 488, "Not Acceptable Here")
				return
			}
		}
	default:
		c.ackIn(answerer, ri.cseq, nil)
		if sdp != nil {
			var err error
			if body, err = c.media.Answer(answerer, sdp); err != nil {
				c.e.log.Info("re-INVITE answer refused", "call_id", c.b.callID, "err", err)
				c.reinviteFailed(ri, 488, "Not Acceptable Here")
				return
			}
		}
	}
	extra := append([]string{c.contactFor(ri.from), allow}, sessionTimer(res)...)
	tag := c.a.localTag
	if ri.from == SideB {
		tag = c.b.localTag
	}
	msg := response(ri.req, ri.in.Source, tag, res.StatusCode, res.Reason, extra, body)
	ri.in.Reply.Send(msg)
	ri.final = c.transaction(ri.in.Transport, false, func() { ri.in.Reply.Send(msg) }, func() {
		if c.reinvite == ri {
			c.reinvite = nil
		}
	})
}

// ackIn sends the ACK of a 2xx to our re-INVITE on one side.
func (c *call) ackIn(side Side, cseq uint32, body []byte) {
	if side == SideB {
		ack := c.inDialogB("ACK", cseq, token(), body)
		c.b.reAck, c.b.reAckCSeq = ack, cseq
		c.sendB(ack)
		return
	}
	ack := c.inDialogA("ACK", cseq, token(), body)
	c.a.reAck, c.a.reAckCSeq = ack, cseq
	c.a.in.Requests.Send(ack)
}

// ackReinviteFailure ACKs a non-2xx answer to our re-INVITE, in its
// transaction.
func (c *call) ackReinviteFailure(side Side, ri *reinvite, res *sip.Response) {
	if side == SideB {
		msg := c.inDialogB("ACK", ri.cseq, ri.branch, nil)
		c.sendB(msg)
		return
	}
	c.a.in.Requests.Send(c.inDialogA("ACK", ri.cseq, ri.branch, nil))
}

// reinviteFailed answers the re-INVITE's sender with a failure; the media
// stays as it was.
func (c *call) reinviteFailed(ri *reinvite, code int, phrase string) {
	if c.media != nil {
		c.media.Reject(ri.from)
	}
	ri.in.Reply.Send(response(ri.req, ri.in.Source, "", code, phrase, nil, nil))
	if c.reinvite == ri {
		c.reinvite = nil
	}
}

func (c *call) contactFor(side Side) string {
	if side == SideA {
		return contactOf(c.a.in.Transport, c.a.in.Local)
	}
	return contactOf(c.b.tp, c.b.local)
}
