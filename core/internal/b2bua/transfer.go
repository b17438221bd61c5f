package b2bua

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/sipheader"
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
// is hung up after 64×T1). A REFER from the caller is the same the other
// way round, by the REFER mode of the back end's pool (transfer_caller.go).
// Rewrite relays the REFER with its Refer-To rewritten onto our own
// address (refer_rewrite.go): the transferee's new INVITE comes to us.
// Only targets the routing table knows are called — a back end of a pool
// or a gateway's address — anything else gets 403: a REFER cannot make
// the appliance call where routing would not.

// ReferMode is what the engine does with a REFER.
type ReferMode string

// The REFER modes.
const (
	ReferTransparent ReferMode = "transparent" // relayed to the other side (the default)
	ReferLocal       ReferMode = "handle_locally"
	// ReferRewrite relays the REFER with its Refer-To rewritten onto our
	// address, its user a signed marker naming the original target, as
	// RedirectRewrite does for a 3xx Contact (refer_rewrite.go).
	ReferRewrite ReferMode = "rewrite"
)

const sipfrag = "message/sipfrag;version=2.0"

// transfer is a REFER the engine carries out itself. by is the side that
// sent it, the transferor, whose leg leg C replaces; the other side stays
// and is re-INVITEd onto leg C.
type transfer struct {
	by        Side
	referCSeq uint32 // of the REFER: the id of its subscription
	leg       bLeg   // leg C, to the Refer-To target; after a back end's transfer, the old leg B
	inviteTx  *retrans
	ringing   bool
	reCSeq    uint32 // our re-INVITE to the side that stays, once leg C answered
	reBranch  string
	reTx      *retrans
	offerC    bool // leg C's offer is with the media engine (Offer(by) pending)
	swapped   bool // leg C replaced the transferor's leg
	oldA      aLeg // after a caller's transfer, the caller (transfer_caller.go)
	oldGone   bool // the transferor hung up
}

// stay is the side that stays: the other one than the transferor's.
func (x *transfer) stay() Side {
	if x.by == SideA {
		return SideB
	}
	return SideA
}

// transferor names side by for the log.
func transferor(by Side) string {
	if by == SideA {
		return "caller"
	}
	return "back end"
}

// referMode is what a REFER from side by does: the mode of the peer that
// would receive it — the caller's gateway for the back end's REFER, the
// back end's pool for the caller's.
func (c *call) referMode(by Side) ReferMode {
	peer := c.target.Gateway
	if by == SideA {
		peer = c.target.Pool
	}
	return c.e.referMode(peer)
}

// referMode is the REFER mode of the peer named peer.
func (e *Engine) referMode(peer string) ReferMode {
	if m := e.cfg.Peers[peer].ReferMode; m != "" {
		return m
	}
	return ReferTransparent
}

// refuseTransfer refuses a REFER handled locally, with why in a Warning.
func (e *Engine) refuseTransfer(callID string, req *sip.Request, in Inbound, code int, phrase, why string) {
	e.log.Info("transfer refused", "call_id", callID, "refer_to", headerValue(req, "Refer-To"), "status", code, "why", why)
	in.Reply.Send(response(req, in.Source, "", code, phrase, []string{e.warning(why)}, nil))
}

// busy reports whether a REFER or re-INVITE must wait for x: until leg C
// replaced the transferor, and after a caller's transfer until the caller
// is gone (its old dialog is still x's).
func (x *transfer) busy() bool {
	return x != nil && (!x.swapped || x.by == SideA && !x.oldGone)
}

// referLocal takes a REFER from side by in ReferLocal mode.
func (c *call) referLocal(by Side, req *sip.Request, in Inbound) {
	refuse := func(code int, phrase, why string) {
		c.e.refuseTransfer(c.b.callID, req, in, code, phrase, why)
	}
	switch {
	case c.state != confirmed:
		refuse(481, "Call/Transaction Does Not Exist", "no call to transfer")
		return
	case c.xfer.busy() || c.reinvite != nil:
		refuse(491, "Request Pending", "a transfer or re-INVITE is in progress")
		return
	case c.notes != nil && c.notes.next != nil:
		// A former transfer's final NOTIFY waits for the answer to the
		// last: a new subscription would drop it (notify). Once it is
		// out, unanswered, a REFER is taken: the transferor knows.
		refuse(491, "Request Pending", "a NOTIFY of the last transfer is unanswered")
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
	dest, ok := c.transferTarget(&u)
	if !ok {
		refuse(403, "Forbidden", errNotTarget)
		return
	}
	tp, dst, host := dest.tp, dest.dst, dest.host
	x := &transfer{by: by, referCSeq: req.CSeq().SeqNo}
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
	in.Reply.Send(response(req, in.Source, "", 202, "Accepted", []string{c.contactFor(by)}, nil))
	c.xfer = x
	c.notify(x, "SIP/2.0 100 Trying", false)

	l.from = c.transferFrom(by) + ";tag=" + l.localTag
	w := inviteTxRequest(l, "INVITE")
	w.line(contactOf(l.tp, l.local))
	w.line(allow)
	if rb := headerValue(req, "Referred-By"); rb != "" {
		if v, ok := c.referredBy(rb); ok {
			w.line("Referred-By: ", v)
		}
	}
	l.invite = w.end(nil) // no offer: leg C's answer offers, the side that stays answers
	c.sendLeg(l, l.invite)
	x.inviteTx = c.transactionFor(l.tp, true, c.e.cfg.RingTimeout, func() { c.sendLeg(l, l.invite) }, func() {
		c.transferFailed(x, 408, "Request Timeout")
	})
	c.e.log.Info("transfer handled locally", "call_id", c.b.callID, "by", transferor(by), "target", l.ruri)
}

// transferFrom is leg C's From, without tag: the party that stays, on
// our host — the caller for the back end's transfer, the one the caller
// called for the caller's.
func (c *call) transferFrom(by Side) string {
	caller := c.a.invite
	if by == SideB {
		return "From: " + displayName(caller) + "<sip:" + fromUser(caller) + "@" + c.e.cfg.FQDN + ">"
	}
	var sb strings.Builder
	sb.WriteString("From: <sip:")
	if to := caller.To(); to != nil && to.Address.User != "" {
		sipheader.WriteUser(&sb, to.Address.User)
		sb.WriteByte('@')
	}
	sb.WriteString(c.e.cfg.FQDN + ">")
	return sb.String()
}

// errNotTarget is the Warning of a Refer-To the routing does not allow.
const errNotTarget = "transfer target is no back end or gateway the routing knows"

// xferDest is where a Refer-To may send the call, and which peer that is.
type xferDest struct {
	tp   router.Transport
	dst  netip.AddrPort
	host string // the name to call it by: its TLS server name, or its address
	// pool and backend name the peer: a back end of a pool, or for a
	// gateway its name as both — the profile ([sbc.peers.<name>]) that a
	// call to it uses.
	pool, backend string
}

// transferTarget is where a Refer-To may send the call: a back end of a
// pool (on one of its ports) or a gateway's address, of the routing table
// in force; on a secured dial plan over TLS only.
func (c *call) transferTarget(u *sip.Uri) (xferDest, bool) {
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") || c.e.cfg.Table == nil {
		return xferDest{}, false
	}
	tbl := c.e.cfg.Table()
	if tbl == nil {
		return xferDest{}, false
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
			d := xferDest{host: b.Host, pool: p.Name, backend: b.Name}
			switch port := u.Port; {
			case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(param, "tls") || port != 0 && port == b.TLSPort:
				d.tp, d.dst = router.TLS, netip.AddrPortFrom(ba, uint16(cmp0(port, b.TLSPort)))
				return c.transferOK(d)
			case strings.EqualFold(param, "udp") || port != 0 && port == b.UDPPort:
				d.tp, d.dst = router.UDP, netip.AddrPortFrom(ba, uint16(cmp0(port, b.UDPPort)))
				return c.transferOK(d)
			case port == 0 || port == b.TCPPort:
				d.tp, d.dst = router.TCP, netip.AddrPortFrom(ba, uint16(cmp0(port, b.TCPPort)))
				return c.transferOK(d)
			}
		}
	}
	if !addr.IsValid() {
		return xferDest{}, false
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
		return c.transferOK(xferDest{tp: tp, dst: netip.AddrPortFrom(addr, uint16(port)), host: host, pool: g.Name, backend: g.Name})
	}
	return xferDest{}, false
}

func cmp0(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func (c *call) transferOK(d xferDest) (xferDest, bool) {
	if d.dst.Port() == 0 || c.secured() && d.tp != router.TLS {
		return xferDest{}, false
	}
	return d, true
}

// notify tells the transferor how the transfer goes (RFC 3515 §2.4.4): a
// NOTIFY in its dialog with the status line of leg C. The NOTIFYs go out
// one at a time (c.notes): a transferor that has not answered one gets
// the next only then, so none arrives out of order over UDP nor before
// the transferor is done with the last (SIPp's scenarios, and UAs that
// keep one subscription transaction, are not); a state reached meanwhile
// replaces one still waiting, as RFC 6665 §4.2.2 lets a notifier do.
func (c *call) notify(x *transfer, status string, final bool) {
	if c.notes == nil {
		c.notes = &notifier{} // most calls never transfer: 56 B a call less (a call fits 1,152 B)
	}
	n := c.notes
	if n.x != x {
		n.tx.stop() // a former transfer's subscription: this one replaces it
		*n = notifier{x: x, callID: c.b.callID}
		if x.by == SideA {
			n.callID = c.a.callID
		}
	}
	switch {
	case x.oldGone || n.done:
		return
	case !final && n.sent >= 3:
		return // a target with many provisional answers: three are told
	case n.tx != nil:
		n.next = &notice{status, final}
		n.done = final
		return
	}
	n.done = final
	c.sendNotify(n, notice{status, final})
}

// notifier is the subscription a transfer's REFER made (RFC 3515 §2.4.4)
// as seen from our end: the NOTIFY awaiting its answer and the state to
// tell next. It outlives the transfer (c.xfer) when that failed: its
// final NOTIFY may still be waiting.
type notifier struct {
	x          *transfer
	callID     string   // of the transferor's dialog
	first, seq uint32   // the CSeqs of our first and latest NOTIFY
	tx         *retrans // the latest, until answered
	next       *notice  // to send once it is
	sent       int
	done       bool // the final state is out or waiting, or the transferor went silent
}

type notice struct {
	status string
	final  bool
}

func (c *call) sendNotify(n *notifier, m notice) {
	x := n.x
	state := "active;expires=60"
	if m.final {
		state = "terminated;reason=noresource"
	}
	ct := content{
		headers: []string{"Event: refer;id=" + strconv.FormatUint(uint64(x.referCSeq), 10), "Subscription-State: " + state},
		ctype:   sipfrag, body: []byte(m.status + "\r\n"),
	}
	// A transferor that does not answer in 64×T1 is gone (RFC 6665
	// §4.2.2): it is told no more.
	gone := func() { n.tx, n.next, n.done = nil, nil, true }
	if x.by == SideA {
		a := &c.a
		if x.swapped {
			a = &x.oldA // leg C replaced the caller: the NOTIFY is the old dialog's
		}
		a.cseq++
		n.seq = a.cseq
		msg := c.aRequest(a, "NOTIFY", a.cseq, token(), ct)
		send := a.in.Requests
		send.Send(msg)
		n.tx = c.transaction(a.in.Transport, false, func() { send.Send(msg) }, gone)
	} else {
		l := &c.b
		if x.swapped {
			l = &x.leg
		}
		l.cseq++
		n.seq = l.cseq
		msg := c.legRequest(l, "NOTIFY", l.cseq, token(), ct)
		c.sendLeg(l, msg)
		n.tx = c.transaction(l.tp, false, func() { c.sendLeg(l, msg) }, gone)
	}
	if n.sent == 0 {
		n.first = n.seq
	}
	n.sent++
}

// notifyAnswer takes the transferor's answer to one of our NOTIFYs and
// reports true; a 2xx to the latest lets the next go out, a failure ends
// the subscription.
// Anything else it leaves, false.
func (c *call) notifyAnswer(msg sip.Message) bool {
	n := c.notes
	res, ok := msg.(*sip.Response)
	if !ok || n == nil || n.x == nil || n.sent == 0 {
		return false
	}
	cs, id := res.CSeq(), res.CallID()
	if cs == nil || cs.MethodName != sip.NOTIFY || id == nil || string(*id) != n.callID || cs.SeqNo < n.first || cs.SeqNo > n.seq {
		return false
	}
	if _, ok := c.relays[relayKey{n.x.by, cs.SeqNo}]; ok && !n.x.swapped {
		return false // a NOTIFY relayed on the same leg, between two of ours
	}
	if cs.SeqNo == n.seq && res.StatusCode >= 200 && n.tx != nil {
		n.tx.stop()
		n.tx = nil
		if res.StatusCode >= 300 {
			// A failed NOTIFY ends the subscription (RFC 6665 §4.2.2: a
			// 481 does, and one we cannot act on, as we retry none).
			n.next, n.done = nil, true
		}
		if m := n.next; m != nil {
			n.next = nil
			c.sendNotify(n, *m)
		}
	}
	return true
}

// transferMsg takes a message of leg C, or of the old leg B once leg C
// replaced it, or the answer of the side that stays to our re-INVITE
// when that is leg B, and reports true; false for anything else.
func (c *call) transferMsg(msg sip.Message, in Inbound) bool {
	x := c.xfer
	if x == nil {
		return false
	}
	if x.by == SideA {
		return c.callerTransferMsg(x, msg, in) // transfer_caller.go
	}
	id := ""
	if h := msg.CallID(); h != nil {
		id = string(*h)
	}
	if res, ok := msg.(*sip.Response); ok && res.CSeq().MethodName == sip.NOTIFY {
		if _, relayed := c.relays[relayKey{SideB, res.CSeq().SeqNo}]; relayed && id == c.b.callID {
			return false // the answer to a NOTIFY relayed to leg B (leg C once swapped): relayed back
		}
		return id == x.leg.callID && x.swapped || id == c.b.callID // not ours (notifyAnswer took those): dropped
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
	c.legCMsg(x, msg, in)
	return true
}

// legCMsg takes a message of leg C before it replaced the transferor.
func (c *call) legCMsg(x *transfer, msg sip.Message, in Inbound) {
	switch m := msg.(type) {
	case *sip.Request:
		if m.Method != sip.ACK {
			in.Reply.Send(response(m, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		}
	case *sip.Response:
		switch cs := m.CSeq(); {
		case cs.MethodName == sip.INVITE && cs.SeqNo == 1:
			c.transferAnswer(x, m)
		case cs.MethodName == sip.BYE && m.StatusCode >= 200:
			x.leg.byeTx.stop()
		}
	}
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
		offer, err := c.media.Offer(x.by, sdp) // leg C takes the transferor's side
		if err != nil {
			c.e.log.Info("transfer target's SDP refused", "call_id", c.b.callID, "err", err)
			c.dropLegC(x)
			c.transferFailed(x, 488, "Not Acceptable Here")
			return
		}
		x.offerC = true
		// The media of the side that stays moves to leg C: its offer,
		// through us.
		stay := x.stay()
		cseq := &c.a.cseq
		if stay == SideB {
			cseq = &c.b.cseq
		}
		*cseq++
		x.reCSeq, x.reBranch = *cseq, token()
		msg := c.requestOn(stay, "INVITE", x.reCSeq, x.reBranch, content{body: offer})
		c.sendOn(stay, msg)
		x.reTx = c.transaction(c.transportOf(stay), true, func() { c.sendOn(stay, msg) }, func() {
			c.transferReinviteFailed(x)
		})
	}
}

// transferReinvite takes the answer of the side that stays to the
// re-INVITE that moves its media to leg C.
func (c *call) transferReinvite(x *transfer, res *sip.Response) {
	stay := x.stay()
	if res.StatusCode < 200 {
		x.reTx.quiet()
		return
	}
	if x.swapped {
		if res.StatusCode < 300 {
			reAck := c.a.reAck
			if stay == SideB {
				reAck = c.b.reAck
			}
			c.sendOn(stay, reAck) // the 2xx again: our ACK was lost
		}
		return
	}
	x.reTx.stop()
	if res.StatusCode >= 300 {
		c.sendOn(stay, c.requestOn(stay, "ACK", x.reCSeq, x.reBranch, content{}))
		c.transferReinviteFailed(x)
		return
	}
	c.ackIn(stay, x.reCSeq, nil)
	var answer []byte
	if sdp := sdpOf(res); sdp != nil {
		var err error
		if answer, err = c.media.Answer(stay, sdp); err != nil {
			c.e.log.Info("answer for the transfer refused", "call_id", c.b.callID, "side", transferor(stay), "err", err)
			answer = nil
		}
	}
	x.offerC = false
	l := &x.leg
	l.ack = c.legRequest(l, "ACK", 1, token(), content{body: answer})
	c.sendLeg(l, l.ack)
	if answer == nil {
		c.media.Reject(x.by) // the media stays with the transferor's leg
		c.dropLegC(x)        // ACKed; now BYE
		c.transferFailed(x, 488, "Not Acceptable Here")
		return
	}
	if x.by == SideA {
		c.notify(x, "SIP/2.0 200 OK", true)
		c.swapA(x) // transfer_caller.go
	} else {
		// Leg C is the call's leg B from now on; the old leg B gets the
		// final NOTIFY and our BYE.
		old := c.b
		c.b = *l
		c.b.peers = old.peers
		x.leg = old
		x.swapped = true
		c.notify(x, "SIP/2.0 200 OK", true)
	}
	if !x.oldGone {
		// The transferor hangs up once told (RFC 3515 §2.4.5, as UM
		// does); one that does not is hung up after 64×T1.
		time.AfterFunc(64*c.e.cfg.T1, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.xfer == x && !x.oldGone {
				c.byeTransferor(x)
			}
		})
	}
	c.e.log.Info("call transferred", "call_id", c.b.callID, "by", transferor(x.by), "target", l.ruri)
}

// byeTransferor hangs up the transferor's old leg once leg C replaced it.
func (c *call) byeTransferor(x *transfer) {
	x.oldGone = true
	if x.by == SideA {
		a := &x.oldA
		a.cseq++
		bye := c.aRequest(a, "BYE", a.cseq, token(), content{})
		send := a.in.Requests
		send.Send(bye)
		a.out = c.transaction(a.in.Transport, false, func() { send.Send(bye) }, nil)
		return
	}
	ol := &x.leg
	ol.cseq++
	bye := c.legRequest(ol, "BYE", ol.cseq, token(), content{})
	c.sendLeg(ol, bye)
	ol.byeTx = c.transaction(ol.tp, false, func() { c.sendLeg(ol, bye) }, nil)
}

// transferReinviteFailed gives up a transfer whose side that stays
// refused (or never answered) the move to leg C: leg C is hung up, the
// call stays as it was.
func (c *call) transferReinviteFailed(x *transfer) {
	if x.offerC {
		c.media.Reject(x.by)
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

// transferFailed ends a transfer that did not reach its target: the
// transferor hears why; the call goes on with it — or ends, when it hung
// up.
func (c *call) transferFailed(x *transfer, code int, phrase string) {
	if c.xfer != x || x.swapped {
		return
	}
	c.e.log.Info("transfer failed", "call_id", c.b.callID, "target", x.leg.ruri, "status", code)
	c.notify(x, "SIP/2.0 "+strconv.Itoa(code)+" "+statusText(phrase), true)
	c.xfer = nil
	if !x.oldGone || c.state == ended {
		return
	}
	if x.by == SideB {
		c.byeA()
		c.end("transfer failed after the back end hung up")
		return
	}
	c.byeB()
	c.end("transfer failed after the caller hung up")
}

// abandonTransfer is end's part for a transfer: leg C is cancelled or
// hung up while it has not replaced the transferor; once it has, a
// caller still in its old dialog is hung up.
func (c *call) abandonTransfer() {
	x := c.xfer
	if x == nil {
		return
	}
	if x.swapped {
		if x.by == SideA && !x.oldGone {
			c.byeTransferor(x)
		}
		return
	}
	c.xfer = nil
	x.inviteTx.stop()
	x.reTx.stop()
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
