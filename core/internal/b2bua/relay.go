package b2bua

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/sipheader"
	"github.com/umedge/umedge/core/sdk/router"
)

// relayed are the in-dialog requests, besides INVITE, ACK, BYE, CANCEL and
// OPTIONS, that pass from one leg to the other, with the headers each
// carries across: UPDATE (RFC 3311: session refresh, RFC 4028, and offers
// outside an INVITE), INFO (DTMF and other info packages), REFER and its
// NOTIFYs (transfer passed through, R-ID-8) and MESSAGE. Nothing that
// addresses the sending side's network is copied: no Target-Dialog, no
// Record-Route, no Contact (we write our own).
var relayed = map[sip.RequestMethod][]string{
	sip.UPDATE:  {"Session-Expires", "Min-SE"},
	sip.INFO:    {"Info-Package", "Content-Disposition"},
	sip.REFER:   {"Refer-To", "Referred-By", "Refer-Sub"},
	sip.NOTIFY:  {"Event", "Subscription-State"},
	sip.MESSAGE: nil,
}

// maxRelays bounds the relayed requests of one call waiting for their
// answers: a peer flooding INFO or MESSAGE into a leg that does not answer
// gets 503, not memory and timers.
const maxRelays = 16

// relayedBack are the headers of an answer to a relayed request that go
// back to its sender.
var relayedBack = []string{"Session-Expires", "Min-SE", "Retry-After"}

// relayKey names a relayed request by the leg it went out on and its CSeq
// there.
type relayKey struct {
	side Side
	cseq uint32
}

// pendingRelay is a relayed request waiting for its answer.
type pendingRelay struct {
	from  Side
	req   *sip.Request
	in    Inbound
	offer bool // carried an SDP offer (an UPDATE), rewritten by the media engine
	tx    *retrans
}

func (c *call) sendOn(side Side, msg []byte) {
	if side == SideB {
		c.sendB(msg)
		return
	}
	c.a.in.Requests.Send(msg)
}

func (c *call) transportOf(side Side) router.Transport {
	if side == SideB {
		return c.b.tp
	}
	return c.a.in.Transport
}

// relay passes an in-dialog request from one leg to the other.
func (c *call) relay(from Side, req *sip.Request, in Inbound) {
	for _, p := range c.relays {
		if p.from == from && branchOf(p.req) == branchOf(req) {
			return // a retransmission: the answer will come
		}
	}
	if c.state < answered || c.state == ended {
		in.Reply.Send(response(req, in.Source, "", 481, "Call/Transaction Does Not Exist", nil, nil))
		return
	}
	if len(c.relays) >= maxRelays {
		in.Reply.Send(response(req, in.Source, "", 503, "Service Unavailable", []string{"Retry-After: 1", c.e.warning("too many requests pending in this call")}, nil))
		return
	}
	referTo := "" // the Refer-To as ReferRewrite writes it (refer_rewrite.go)
	if req.Method == sip.REFER && c.referMode(from) == ReferRewrite {
		v, st := c.rewriteReferTo(from, req)
		if st != nil {
			in.Reply.Send(response(req, in.Source, "", st.code, st.phrase, st.extra, nil))
			return
		}
		referTo = v
	}
	ct := content{}
	for _, name := range relayed[req.Method] {
		if name == "Refer-To" && referTo != "" {
			ct.headers = append(ct.headers, name+": "+referTo)
			continue
		}
		for _, h := range req.GetHeaders(name) {
			switch {
			case !clean(h.Value()):
			case name == "Referred-By":
				// Who referred is the other side's identity: its user
				// passes, on our host (R-SBC-1).
				if v, ok := c.referredBy(h.Value()); ok {
					ct.headers = append(ct.headers, name+": "+v)
				}
			default:
				ct.headers = append(ct.headers, name+": "+h.Value())
			}
		}
	}
	p := &pendingRelay{from: from, req: req, in: in}
	switch body := req.Body(); {
	case isSDP(req):
		sdp, err := c.media.Offer(from, body)
		if err != nil {
			in.Reply.Send(response(req, in.Source, "", 488, "Not Acceptable Here", []string{c.e.warning(err.Error())}, nil))
			return
		}
		ct.body, p.offer = sdp, true
	case len(body) > 0:
		ctype := headerValue(req, "Content-Type")
		if !clean(ctype) {
			in.Reply.Send(response(req, in.Source, "", 400, "Bad Request", []string{c.e.warning("malformed Content-Type")}, nil))
			return
		}
		ct.ctype, ct.body = ctype, body
	}
	to := 1 - from
	var cseq uint32
	if to == SideB {
		c.b.cseq++
		cseq = c.b.cseq
	} else {
		c.a.cseq++
		cseq = c.a.cseq
	}
	msg := c.requestOn(to, string(req.Method), cseq, token(), ct)
	c.sendOn(to, msg)
	key := relayKey{to, cseq}
	if c.relays == nil {
		c.relays = map[relayKey]*pendingRelay{}
	}
	c.relays[key] = p
	p.tx = c.transaction(c.transportOf(to), false, func() { c.sendOn(to, msg) }, func() {
		delete(c.relays, key)
		if p.offer {
			c.media.Reject(from)
		}
		in.Reply.Send(response(req, in.Source, "", 408, "Request Timeout", nil, nil))
	})
}

// relayAnswer takes an answer from side to a request relayed to it and
// answers the request's sender.
func (c *call) relayAnswer(side Side, res *sip.Response) {
	key := relayKey{side, res.CSeq().SeqNo}
	p := c.relays[key]
	if p == nil || res.StatusCode < 200 {
		return
	}
	p.tx.stop()
	delete(c.relays, key)
	var extra []string
	for _, name := range relayedBack {
		if v := headerValue(res, name); v != "" && clean(v) {
			extra = append(extra, name+": "+v)
		}
	}
	var body []byte
	ctype := ""
	ok := res.StatusCode < 300
	switch {
	case p.offer && ok && isSDP(res):
		var err error
		if body, err = c.media.Answer(side, res.Body()); err != nil {
			c.media.Reject(p.from)
			p.in.Reply.Send(response(p.req, p.in.Source, "", 488, "Not Acceptable Here", []string{c.e.warning(err.Error())}, nil))
			return
		}
	case p.offer:
		c.media.Reject(p.from)
	case len(res.Body()) > 0 && clean(headerValue(res, "Content-Type")):
		ctype, body = headerValue(res, "Content-Type"), res.Body()
	}
	if ok && p.req.Method == sip.UPDATE {
		extra = append(extra, c.contactFor(p.from))
	}
	if ctype != "" {
		p.in.Reply.Send(responseTyped(p.req, p.in.Source, res.StatusCode, res.Reason, extra, ctype, body))
		return
	}
	p.in.Reply.Send(response(p.req, p.in.Source, "", res.StatusCode, res.Reason, extra, body))
}

// referredBy rewrites a Referred-By value onto our host, keeping its user.
func (c *call) referredBy(v string) (string, bool) {
	var u sip.Uri
	if _, err := sip.ParseAddressValue(v, &u, nil); err != nil {
		return "", false
	}
	var sb strings.Builder
	sb.WriteString("<sip:")
	if u.User != "" {
		sipheader.WriteUser(&sb, u.User)
		sb.WriteByte('@')
	}
	sb.WriteString(c.e.cfg.FQDN + ">")
	return sb.String(), true
}
