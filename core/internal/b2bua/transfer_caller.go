package b2bua

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// legAInfo is side A for the CDR and /calls: the caller, or leg C once a
// caller's transfer made it side A.
func (c *call) legAInfo() LegInfo {
	if l := c.a.called; l != nil {
		return LegInfo{Transport: l.tp, Peer: l.dst.String(), CallID: l.callID}
	}
	return LegInfo{Transport: c.a.in.Transport, Peer: c.a.in.Source.String(), CallID: c.a.callID}
}

// A REFER from the caller (a PBX transferring the call it made to the
// back end, or a trunk's caller, R-ID-8) is handled by the REFER mode of
// the peer that would receive it, the back end's pool:
// [sbc.peers.<pool>].refer_mode. Transparent passes it to the back end
// (relay.go). Handle locally keeps it from the back end: the engine, as
// the transferee on the back end's behalf (RFC 3515), answers the caller
// 202, calls the Refer-To target itself (leg C, without an offer: its
// answer offers), re-INVITEs the back end with that offer so that the
// back end's media now flows to leg C, and tells the caller how the
// transfer goes in NOTIFYs (message/sipfrag) — transfer.go, as for the
// back end's REFER. Once the back end has answered the re-INVITE, leg C
// is the call's side A (swapA): the caller, the transferor, is released —
// it hangs up after the final NOTIFY (a BYE that no longer ends the
// call), or is hung up after 64×T1. A caller that hangs up during the
// transfer does not end the call either, unless the transfer then fails.
// Leg C is a leg the engine calls, so it speaks with the pool's header
// rules, like leg B and like the back end's transfers; its media takes
// side A of the media session, with the caller's profile. The CDR's From
// stays the original caller; its leg A is leg C from then on.

// legSender sends side A's requests to leg C once it replaced the caller.
type legSender struct {
	c *call
	l *bLeg
}

func (s legSender) Send(b []byte) { s.c.sendLeg(s.l, b) }

// callerTransferA takes the messages of the caller's dialog that a
// caller's transfer in progress handles, and reports true: the caller's
// BYE (which no longer ends the call) and its answers to our NOTIFYs; once
// leg C replaced the caller, everything of the old dialog.
func (c *call) callerTransferA(msg sip.Message, in Inbound) bool {
	x := c.xfer
	if x == nil || x.by != SideA {
		return false
	}
	caller := &c.a
	if x.swapped {
		caller = &x.oldA
	}
	if id := msg.CallID(); id == nil || string(*id) != caller.callID {
		return false
	}
	switch m := msg.(type) {
	case *sip.Response:
		switch cs := m.CSeq(); {
		case cs.MethodName == sip.NOTIFY && !x.swapped && c.relays[relayKey{SideA, cs.SeqNo}] != nil:
			return false // the answer to a NOTIFY relayed to the caller: relayed back
		case cs.MethodName == sip.NOTIFY: // not ours (notifyAnswer took those): dropped
		case cs.MethodName == sip.BYE && x.swapped && m.StatusCode >= 200:
			x.oldA.out.stop()
		case !x.swapped:
			return false // the caller's answer to another request of ours
		}
		return true
	case *sip.Request:
		ours := tagOf(m.To().Params) == caller.localTag
		switch {
		case m.Method == sip.BYE && ours:
			// The transferor hangs up after the 202, as it should: the
			// transfer goes on without it.
			in.Reply.Send(response(m, in.Source, "", 200, "OK", nil, nil))
			x.oldGone = true
		case !x.swapped:
			return false
		case m.Method == sip.ACK:
		default:
			in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		}
		return true
	}
	return false
}

// callerTransferMsg is transferMsg for a caller's transfer: leg C's
// messages and the back end's answer to the re-INVITE that moves its
// media to leg C. Once leg C is side A its messages are side A's.
func (c *call) callerTransferMsg(x *transfer, msg sip.Message, in Inbound) bool {
	id := ""
	if h := msg.CallID(); h != nil {
		id = string(*h)
	}
	if id == c.b.callID {
		res, ok := msg.(*sip.Response)
		if ok && x.reCSeq != 0 && res.CSeq().MethodName == sip.INVITE && res.CSeq().SeqNo == x.reCSeq {
			c.transferReinvite(x, res)
			return true
		}
		return false
	}
	if id != x.leg.callID {
		return false
	}
	if !x.swapped {
		c.legCMsg(x, msg, in)
		return true
	}
	l := &x.leg
	switch m := msg.(type) {
	case *sip.Request:
		c.requestA(m, in)
	case *sip.Response:
		if cs := m.CSeq(); cs.MethodName == sip.INVITE && cs.SeqNo == l.inviteCSeq {
			if l.ack != nil && m.StatusCode >= 200 && m.StatusCode < 300 {
				c.sendLeg(l, l.ack) // the 2xx again: our ACK was lost
			}
			return true
		}
		c.responseA(m)
	}
	return true
}

// swapA makes leg C the call's side A: our requests on side A go to it in
// its dialog (requestOn, legSender); the caller's dialog is kept in x.oldA
// for its BYE.
func (c *call) swapA(x *transfer) {
	l := &x.leg
	x.oldA = c.a
	// Field by field: in.Source stays the caller's, so that its messages
	// (its BYE) still find the call by leg A's Call-ID (Engine.Handle,
	// fromA, which reads it without the call's lock). invite stays the
	// caller's INVITE: the CDR's From is the original caller.
	c.a.in.Transport, c.a.in.Local, c.a.in.Requests = l.tp, l.local, legSender{c, l}
	c.a.callID, c.a.localTag, c.a.remoteTag, c.a.remoteURI = l.callID, l.localTag, l.remoteTag, l.target
	c.a.cseq, c.a.last, c.a.final, c.a.out, c.a.reAck, c.a.reAckCSeq, c.a.requestsTo = l.cseq, nil, nil, nil, nil, 0, netip.AddrPort{}
	c.a.called = l
	x.swapped = true
	if c.keep != nil {
		c.keep.Stop() // the keep-alive was for the caller's NAT
	}
}
