package b2bua

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// errNoAnswer is a late offer's ACK without the caller's SDP answer.
var errNoAnswer = errors.New("ACK without SDP answer to the back end's offer")

// errNoPort is a back end without a port for the transport the call needs.
var errNoPort = errors.New("no port")

type callState int

const (
	calling   callState = iota // leg B's INVITE sent, nothing back yet
	early                      // leg B answered provisionally
	answered                   // leg B's 2xx relayed to the caller, its ACK awaited
	confirmed                  // both legs established
	ended
)

var stateNames = [...]string{"calling", "early", "answered", "confirmed", "ended"}

func (s callState) String() string { return stateNames[s] }

// call is one proxy call: leg A (we are the caller's UAS) and leg B (we
// are the back end's UAC). Its mutex guards everything below it; sends
// never block, so they happen with it held.
type call struct {
	e      *Engine
	target Target
	// keyA and keyB are the Call-IDs byA and byB know the call by, set at
	// admission: a transfer's leg C takes over its side's callID, and
	// forget must still drop the transferor's.
	keyA, keyB string

	mu        sync.Mutex
	state     callState
	a         aLeg
	b         bLeg
	media     MediaSession
	lateOffer bool // the caller's INVITE had no SDP: leg B's 2xx offers, the caller's ACK answers
	cancelled bool // the caller cancelled before leg B answered provisionally
	redirects int
	reinvite  *reinvite                  // the re-INVITE in progress, one at a time
	xfer      *transfer                  // the REFER the engine carries out itself (transfer.go)
	notes     *notifier                  // its NOTIFYs to the transferor (transfer.go); nil until a transfer's first
	relays    map[relayKey]*pendingRelay // other in-dialog requests relayed, by the leg and CSeq they went out with
	started   time.Time
	answerAt  time.Time
	endAt     time.Time
	reason    string // why the call ended, for the CDR
	finalCode int    // the final answer the caller got
	ring      *time.Timer
	keep      *time.Timer // keep-alive towards a UDP caller
	keepTx    *retrans    // the keep-alive OPTIONS in progress
	released  bool
}

// aLeg is the caller's side: we answer its INVITE.
type aLeg struct {
	in        Inbound
	invite    *sip.Request
	callID    string
	branch    string // of the INVITE's top Via
	localTag  string // our To tag
	remoteTag string // the caller's From tag
	remoteURI string // the caller's Contact: the Request-URI of our requests
	cseq      uint32 // of our last request to the caller
	last      []byte // our last answer to the INVITE, for its retransmissions
	final     *retrans
	out       *retrans // our BYE to the caller in progress
	reAck     []byte   // our ACK of the caller's 2xx to the last re-INVITE we relayed to it
	reAckCSeq uint32
	// requestsTo is where in.Requests sends since the caller's NAT
	// mapping moved (nat.go); zero: in.Source.
	requestsTo netip.AddrPort
	// called is leg C of a caller's transfer once it replaced the caller
	// (transfer_caller.go): our requests on side A are its dialog's.
	called *bLeg
}

// bLeg is the back end's side: we call it.
type bLeg struct {
	tp         router.Transport
	dst        netip.AddrPort
	serverName string
	peers      []netip.Addr // every address leg B was sent to: its messages come from one of them
	ruri       string       // Request-URI of the INVITE
	to         string       // To of the dialog, without tag
	callID     string
	localTag   string
	remoteTag  string
	cseq       uint32 // of our last request on leg B
	inviteCSeq uint32 // of the INVITE transaction in progress (a 3xx starts another)
	branch     string
	local      netip.AddrPort
	offer      []byte // our SDP offer in the INVITE, sent again after a 3xx
	invite     []byte // the INVITE in progress, for retransmission
	inviteTx   *retrans
	provisonal bool
	target     string // the back end's Contact from its 2xx: Request-URI in the dialog
	routeSet   []string
	ack        []byte // our ACK of the 2xx, for the 2xx's retransmissions
	refused    bool   // the INVITE in progress got a final failure, ACKed (ackFailure)
	reAck      []byte // our ACK of the last re-INVITE's 2xx, likewise
	reAckCSeq  uint32
	cancelTx   *retrans // our CANCEL in progress
	byeTx      *retrans // our BYE in progress
	from       string   // our From line
}

// reinvite is a re-INVITE relayed from one leg to the other.
type reinvite struct {
	from   Side
	req    *sip.Request // as received
	in     Inbound      // where it came from (for the answers)
	cseq   uint32       // of our re-INVITE on the other leg
	branch string
	msg    []byte
	tx     *retrans
	final  *retrans // our 2xx to its sender, until ACK
	// lateOffer: the re-INVITE came without SDP, so the answerer's 2xx
	// offers and the sender's ACK answers (RFC 3261 §14.1); the answerer's
	// ACK waits for that answer.
	lateOffer bool
	answerer  Side
}

func newCall(e *Engine, req *sip.Request, in Inbound, t Target) *call {
	c := &call{e: e, target: t, started: time.Now()}
	c.a = aLeg{in: in, invite: req, branch: branchOf(req), localTag: token()}
	if id := req.CallID(); id != nil {
		c.a.callID = string(*id)
	}
	if f := req.From(); f != nil {
		c.a.remoteTag = tagOf(f.Params)
	}
	if ct := req.Contact(); ct != nil {
		c.a.remoteURI = ct.Address.String()
	} else {
		c.a.remoteURI = req.From().Address.String()
	}
	c.b = bLeg{callID: "umedge-" + token(), localTag: token(), cseq: 1, inviteCSeq: 1}
	return c
}

func (c *call) beKey() string { return c.target.Pool + "/" + c.target.Backend.Name }

func (c *call) fromA(in Inbound) bool { return in.Source.Addr() == c.a.in.Source.Addr() }

func (c *call) fromB(src netip.AddrPort) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.b.peers {
		if a == src.Addr() {
			return true
		}
	}
	return false
}

// start places leg B. Called once, after admission, on the front's
// reader: nothing here waits — a back end named by DNS is looked up on a
// goroutine of its own, with the caller told 100 Trying first.
func (c *call) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	req := c.a.invite
	if _, ok := maxForwards(req); !ok {
		c.reject(483, "Too Many Hops", "caller's Max-Forwards is 0")
		return
	}
	if ext := unsupported(req); ext != "" {
		c.reject(420, "Bad Extension", "", "Unsupported: "+ext)
		return
	}
	c.a.respondLocked(c, 100, "Trying")
	c.resolve(c.target.Backend, c.first)
}

// resolve finds b's address and calls then with it, c.mu held: at once
// for the call's pinned Target.Addr or an IP literal, else from a
// goroutine once DNS has answered, and only if the call still waits for b.
func (c *call) resolve(b *router.Backend, then func(b *router.Backend, addr netip.Addr, err error)) {
	if b == c.target.Backend && c.target.Addr.IsValid() {
		then(b, c.target.Addr, nil)
		return
	}
	if a, err := netip.ParseAddr(b.Host); err == nil {
		then(b, a.Unmap(), nil)
		return
	}
	go func() {
		addr, err := c.e.tp.Resolve(b.Host)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.state == ended || c.cancelled || c.target.Backend != b {
			return
		}
		then(b, addr, err)
	}()
}

// first places the first INVITE of leg B once its back end's address is
// known: the media session, the caller's offer through it, the INVITE.
func (c *call) first(b *router.Backend, addr netip.Addr, err error) {
	if !c.routed(b, addr, err) {
		return
	}
	req := c.a.invite
	ms, err := c.e.media.NewSession(c.b.callID, &c.target, c.a.in.Local.Addr(), c.b.local.Addr(), func() { c.hangup("media timeout") })
	if err != nil {
		c.mediaFailed(err)
		return
	}
	c.media = ms
	var offer []byte
	if sdp := sdpOf(req); sdp != nil {
		if offer, err = ms.Offer(SideA, sdp); err != nil {
			c.mediaFailed(err)
			return
		}
	} else {
		c.lateOffer = true
	}
	mf, _ := maxForwards(req)
	c.sendInvite(mf, offer)
}

func (c *call) retryAfter() string {
	return "Retry-After: " + strconv.Itoa(max(int(c.e.cfg.RetryAfter/time.Second), 1))
}

// mediaFailed rejects the call for a media error: 503 when the port pool
// is empty, 488 when the SDP is refused.
func (c *call) mediaFailed(err error) {
	if errors.Is(err, ErrNoMediaPorts) {
		c.reject(503, "Service Unavailable", err.Error(), c.retryAfter())
		return
	}
	c.reject(488, "Not Acceptable Here", err.Error())
}

// unsupported returns the first option the caller requires that the
// engine does not do (RFC 3261 §8.2.2.3), or "".
func unsupported(req *sip.Request) string {
	for h := range named(req, "Require") {
		for _, opt := range strings.Split(h.Value(), ",") {
			if opt = strings.TrimSpace(opt); opt != "" {
				return opt
			}
		}
	}
	return ""
}

// route points leg B at a back end at addr: its transport by the dial
// plan's security (secured plans over TLS), else TCP, else UDP.
func (c *call) route(b *router.Backend, addr netip.Addr, user string) error {
	tp, port := router.TCP, b.TCPPort
	switch {
	case c.secured():
		tp, port = router.TLS, b.TLSPort
	case b.TCPPort == 0 && b.UDPPort != 0:
		tp, port = router.UDP, b.UDPPort
	case b.TCPPort == 0:
		tp, port = router.TLS, b.TLSPort
	}
	if port == 0 {
		return fmt.Errorf("%w: back end %s has no %s port", errNoPort, b.Name, tp)
	}
	uri := "sip:"
	if user != "" {
		uri += user + "@"
	}
	host := b.Host
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	uri += host + ":" + strconv.Itoa(port)
	return c.routeTo(tp, b.Host, netip.AddrPortFrom(addr, uint16(port)), uri, uri)
}

// secured reports whether the call's dial plan wants SIP over TLS to the
// back end.
func (c *call) secured() bool {
	return c.target.Security == router.SIPSecured || c.target.Security == router.Secured
}

// routeTo sets leg B's destination and Request-URI.
func (c *call) routeTo(tp router.Transport, host string, dst netip.AddrPort, ruri, to string) error {
	return c.legTo(&c.b, tp, host, dst, ruri, to)
}

// legTo sets a back-end side leg's destination and Request-URI.
func (c *call) legTo(l *bLeg, tp router.Transport, host string, dst netip.AddrPort, ruri, to string) error {
	l.tp, l.dst, l.serverName = tp, dst, host
	if tp != router.UDP && tp != router.TLS {
		ruri += ";transport=tcp"
	}
	if tp == router.TLS {
		ruri = "sips:" + strings.TrimPrefix(ruri, "sip:")
	}
	l.ruri, l.to = ruri, to
	l.peers = append(l.peers, dst.Addr())
	local, err := c.e.tp.Local(tp, dst.Addr())
	if err != nil {
		return fmt.Errorf("no %s listener towards %s: %w", tp, dst.Addr(), err)
	}
	l.local = local
	return nil
}

// sendInvite sends leg B's INVITE (a new transaction: after a 3xx too).
func (c *call) sendInvite(mf int, offer []byte) {
	req := c.a.invite
	c.b.branch = token()
	c.b.from = "From: " + displayName(req) + "<sip:" + fromUser(req) + "@" + c.e.cfg.FQDN + ">;tag=" + c.b.localTag
	var w wire
	w.line("INVITE ", c.b.ruri, " SIP/2.0")
	w.via(c.b.tp, c.b.local, c.b.branch)
	w.line("Max-Forwards: ", strconv.Itoa(mf))
	w.line(c.b.from)
	w.line("To: <", c.b.to, ">")
	w.line("Call-ID: ", c.b.callID)
	w.cseq(c.b.cseq, " INVITE")
	w.line(contactOf(c.b.tp, c.b.local))
	w.line(allow)
	for _, d := range diversions(c.target.Call, c.e.cfg.FQDN) {
		w.line(d)
	}
	for _, name := range copied {
		for h := range named(req, name) {
			if clean(h.Value()) {
				w.line(name, ": ", h.Value())
			}
		}
	}
	for _, h := range sessionTimer(req) {
		w.line(h)
	}
	c.b.offer = offer
	c.b.invite = w.end(offer)
	c.b.provisonal, c.b.refused = false, false
	c.sendB(c.b.invite)
	timeout := 64 * c.e.cfg.T1 // Timer B
	if len(c.target.Alternates) > 0 {
		timeout = min(timeout, c.e.cfg.FailoverTimeout)
	}
	c.b.inviteTx = c.transactionFor(c.b.tp, true, timeout, func() { c.sendB(c.b.invite) }, func() {
		if !c.failover("no answer from back end " + c.target.Backend.Name) {
			c.failA(408, "Request Timeout", "no answer from the back end")
		}
	})
}

// failover moves a call whose back end failed it before answering to the
// next back end of the pool, with the same offer; false when there is none
// left (or the call is past that point).
func (c *call) failover(why string) bool {
	if c.state != calling && c.state != early || c.cancelled {
		return false
	}
	for len(c.target.Alternates) > 0 {
		next := c.target.Alternates[0]
		c.target.Alternates = c.target.Alternates[1:]
		if !c.e.moveBackend(c, c.target.Backend, next) {
			continue // full
		}
		c.e.log.Info("back end failed the call, trying the next", "call_id", c.b.callID,
			"pool", c.target.Pool, "failed", c.target.Backend.Name, "next", next.Name, "why", why)
		c.target.Backend = next
		c.b.inviteTx.stop()
		if c.ring != nil {
			c.ring.Stop()
			c.ring = nil
		}
		c.state = calling
		c.b.remoteTag = ""
		if c.media == nil { // the first back end never got its INVITE
			c.resolve(next, c.first)
			return true
		}
		c.resolve(next, c.again)
		return true
	}
	return false
}

// routed points leg B at b (at addr, unless the lookup failed with err);
// when b cannot be used the call moves on to the next back end, or fails.
func (c *call) routed(b *router.Backend, addr netip.Addr, err error) bool {
	if err == nil {
		err = c.route(b, addr, c.target.User)
	}
	if err == nil {
		return true
	}
	c.e.log.Info("back end unavailable", "call_id", c.b.callID, "pool", c.target.Pool, "backend", b.Name, "err", err)
	if !c.failover("back end " + b.Name + " unavailable") {
		c.failA(503, "Service Unavailable", "back end unavailable")
	}
	return false
}

// again places leg B's INVITE, with the offer already made, at another
// back end.
func (c *call) again(b *router.Backend, addr netip.Addr, err error) {
	if !c.routed(b, addr, err) {
		return
	}
	c.b.cseq++
	c.b.inviteCSeq = c.b.cseq
	mf, _ := maxForwards(c.a.invite)
	c.sendInvite(mf, c.b.offer)
}

// unreachable fails over (or fails) a call still waiting for dst.
func (c *call) unreachable(tp router.Transport, dst netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != calling || c.b.tp != tp || c.b.dst != dst {
		return
	}
	if !c.failover("back end " + c.target.Backend.Name + " unreachable") {
		c.b.inviteTx.stop()
		c.failA(503, "Service Unavailable", "back end unreachable")
	}
}

func (c *call) sendB(msg []byte) { c.sendLeg(&c.b, msg) }

// sendLeg sends msg on a back-end side leg (leg B, or a transfer's new leg).
func (c *call) sendLeg(l *bLeg, msg []byte) {
	c.e.sendBack(c.target.Pool, l.tp, l.dst, l.serverName, l.callID, msg)
}

// sendBack sends msg on a back-end side leg, rewritten by pool's rules.
func (e *Engine) sendBack(pool string, tp router.Transport, dst netip.AddrPort, serverName, callID string, msg []byte) {
	if err := e.tp.Send(tp, dst, serverName, e.outbound(e.cfg.Peers[pool].Rules, msg)); err != nil {
		e.log.Debug("sending to back end", "call_id", callID, "dst", dst, "err", err)
	}
}

// reject answers the caller's INVITE with a final non-2xx answer and ends
// the call.
func (c *call) reject(code int, phrase, why string, extra ...string) {
	if why != "" {
		extra = append(extra, c.e.warning(why))
	}
	c.a.finalLocked(c, code, phrase, extra, nil)
	c.end(fmt.Sprintf("%d %s", code, phrase))
}

// failA is reject for a call whose leg B is gone or never came.
func (c *call) failA(code int, phrase, why string) {
	if c.state >= answered {
		return
	}
	c.e.Metrics.Failed.Add(1)
	if code == 503 {
		c.reject(code, phrase, why, c.retryAfter())
		return
	}
	c.reject(code, phrase, why)
}

// end marks the call ended: media stops, the admission slot is released,
// the CDR written; the call stays findable for 64×T1 so that late
// retransmissions are absorbed, not taken for new calls: whole until it
// has settled (its transactions done), then as a tombstone (tomb.go).
func (c *call) end(reason string) {
	if c.state == ended {
		return
	}
	c.state, c.endAt, c.reason = ended, time.Now(), reason
	if c.ring != nil {
		c.ring.Stop()
	}
	if c.keep != nil {
		c.keep.Stop()
	}
	c.keepTx.stop()
	c.b.inviteTx.stop()
	c.abandonTransfer()
	if c.finalCode >= 200 && c.finalCode < 300 {
		c.a.final.stop() // a 2xx retransmitted after the call ended would restart it for the caller
	}
	if c.media != nil {
		c.media.Close()
	}
	if !c.released {
		c.released = true
		c.e.release(c)
	}
	if c.e.cdr != nil {
		c.e.cdr.Write(c.record())
	}
	c.shed()
	c.e.forgetLater(c)
}

// shed drops what an ended call no longer reads during the 64×T1 it stays
// findable (it answers retransmissions from bytes it keeps): the closed
// media session, whose stats are in the CDR; of the caller's INVITE all
// but the headers an answer copies; the router's view of the call; the
// INVITE and offer towards leg B once no CANCEL needs them. At thousands
// of calls a second the ended calls outnumber the live ones ten to one;
// most become tombstones T1 later, and this is what the rest keep.
func (c *call) shed() {
	c.media = endedMedia{}
	c.a.invite = dialogOnly(c.a.invite)
	c.b.offer = nil
	c.target.Call, c.target.Alternates = nil, nil // the router's view, read only to place leg B
	if !c.cancelled || c.b.provisonal {
		c.b.invite = nil // else the CANCEL still waits for leg B's first provisional (sendCancel)
	}
}

// settle drops, once the caller's ACK confirmed the call, what only its
// setup read, as shed does for an ended call: of the caller's INVITE all
// but the headers an answer copies and our requests to the caller write
// (From and To; our 2xx, for a retransmitted INVITE, is kept in a.last),
// leg B's INVITE and offer (sent again only for a 3xx or a failover, and
// CANCELled only before its 2xx), and the router's view of the call (read
// only to place leg B); and a media session that is a Settler settles.
// A confirmed call is what the active calls are, so this is what each of
// them no longer keeps (PERFORMANCE.md).
func (c *call) settle() {
	c.a.invite = dialogOnly(c.a.invite)
	c.b.invite, c.b.offer = nil, nil
	c.target.Call, c.target.Alternates = nil, nil
	c.settleMedia()
}

// settleMedia tells a media session that is a Settler that its last offer
// and answer are over: at the call's confirmation and again at the ACK of
// each re-INVITE (hold, resume, a session refresh), whose negotiation the
// session would keep for the rest of the call otherwise.
func (c *call) settleMedia() {
	if s, ok := c.media.(Settler); ok {
		s.Settle()
	}
}

// endedMedia stands in for the media session of an ended call: no offer or
// answer is taken any more.
type endedMedia struct{}

func (endedMedia) Offer(Side, []byte) ([]byte, error)  { return nil, errCallEnded }
func (endedMedia) Answer(Side, []byte) ([]byte, error) { return nil, errCallEnded }
func (endedMedia) Reject(Side)                         {}
func (endedMedia) Close()                              {}
func (endedMedia) Stats() any                          { return nil }

var errCallEnded = fmt.Errorf("%w: the call has ended", ErrSDP)

// dialogOnly strips req, in place, to the headers an answer or a request
// in its dialog is built from (an ended call sends none but answers; the
// caller's Contact is in c.a.remoteURI) and drops its body. In place: a
// copy was two more objects (its Request alone 512 bytes) per ended call.
// Called with c.mu held; nothing else holds the INVITE.
func dialogOnly(req *sip.Request) *sip.Request {
	for _, h := range slices.Clone(req.Headers()) {
		switch strings.ToLower(h.Name()) {
		case "via", "from", "to", "call-id", "cseq":
		default:
			req.RemoveHeader(h.Name())
		}
	}
	req.SetBody(nil)
	req.RemoveHeader("Content-Length")
	return req
}

// byePending reports whether a BYE or CANCEL of the call still waits for
// its answer.
func (c *call) byePending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range []*retrans{c.a.out, c.b.byeTx, c.b.cancelTx} {
		if r != nil && !r.stopped {
			return true
		}
	}
	return false
}

// hangup ends the call from the core's side: BYE to both legs once
// answered; before that CANCEL to leg B and 503 (or 487) to the caller.
func (c *call) hangup(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case ended:
		return
	case calling, early:
		// The core goes away: CANCEL now, provisional answer or not, so
		// that the back end does not ring for a call nobody holds.
		c.cancelled = true
		c.sendCancel()
		c.a.finalLocked(c, 503, "Service Unavailable", []string{c.e.warning(reason), c.retryAfter()}, nil)
	default:
		c.byeA()
		c.byeB()
	}
	c.end(reason)
}

// cancelB cancels leg B's INVITE (RFC 3261 §9.1): at once when the back end
// answered provisionally, else once it does (a CANCEL before that may
// overtake the INVITE).
func (c *call) cancelB() {
	c.cancelled = true
	if c.b.provisonal {
		c.sendCancel()
	}
}

// sendCancel sends the CANCEL of leg B's INVITE.
func (c *call) sendCancel() {
	if c.b.invite == nil {
		return // no INVITE went out (its back end was still being looked up)
	}
	c.b.inviteTx.stop()
	var w wire
	w.line("CANCEL ", c.b.ruri, " SIP/2.0")
	w.via(c.b.tp, c.b.local, c.b.branch)
	w.line("Max-Forwards: 70")
	w.line(c.b.from)
	w.line("To: <", c.b.to, ">")
	w.line("Call-ID: ", c.b.callID)
	w.cseq(c.b.cseq, " CANCEL")
	msg := w.end(nil)
	c.sendB(msg)
	c.b.cancelTx = c.transaction(c.b.tp, false, func() { c.sendB(msg) }, nil)
	if c.state == ended {
		// shed kept the INVITE for this CANCEL only: the call can settle
		// now, and a further provisional answer sends no second CANCEL.
		c.b.invite = nil
	}
}

// inDialogB writes a request in leg B's dialog.
func (c *call) inDialogB(method string, cseq uint32, branch string, body []byte) []byte {
	return c.requestOn(SideB, method, cseq, branch, content{body: body})
}

// content is what a request carries beyond the dialog's own headers.
type content struct {
	headers []string // whole header lines
	ctype   string   // of body; "" = application/sdp
	body    []byte
}

// requestOn writes a request in one leg's dialog: on leg B ours as its
// UAC; on leg A From and To swapped, our tag on From.
func (c *call) requestOn(side Side, method string, cseq uint32, branch string, ct content) []byte {
	if side == SideB {
		return c.legRequest(&c.b, method, cseq, branch, ct)
	}
	if c.a.called != nil {
		return c.legRequest(c.a.called, method, cseq, branch, ct)
	}
	return c.aRequest(&c.a, method, cseq, branch, ct)
}

// aRequest writes a request in the caller's dialog a, ours as its UAS.
func (c *call) aRequest(a *aLeg, method string, cseq uint32, branch string, ct content) []byte {
	var w wire
	tp, local := a.in.Transport, a.in.Local
	w.line(method, " ", a.remoteURI, " SIP/2.0")
	w.via(tp, local, branch)
	w.line("Max-Forwards: 70")
	w.line("From: ", a.invite.To().Value(), ";tag=", a.localTag)
	w.line("To: ", a.invite.From().Value())
	w.line("Call-ID: ", a.callID)
	return c.requestEnd(&w, tp, local, method, cseq, ct)
}

// legRequest writes a request in a back-end side leg's dialog (leg B, or
// a transfer's new leg), ours as its UAC.
func (c *call) legRequest(l *bLeg, method string, cseq uint32, branch string, ct content) []byte {
	var w wire
	target := l.target
	if target == "" {
		target = l.ruri
	}
	w.line(method, " ", target, " SIP/2.0")
	w.via(l.tp, l.local, branch)
	w.line("Max-Forwards: 70")
	for _, r := range l.routeSet {
		w.line("Route: ", r)
	}
	w.line(l.from)
	w.line("To: <", l.to, ">;tag=", l.remoteTag)
	w.line("Call-ID: ", l.callID)
	return c.requestEnd(&w, l.tp, l.local, method, cseq, ct)
}

// requestEnd writes the rest of an in-dialog request.
func (c *call) requestEnd(w *wire, tp router.Transport, local netip.AddrPort, method string, cseq uint32, ct content) []byte {
	w.cseq(cseq, " ", method)
	if method == "INVITE" || method == "UPDATE" || method == "REFER" || method == "NOTIFY" {
		w.line(contactOf(tp, local)) // target refresh requests (RFC 3261 §12.2, RFC 3311, RFC 3515)
	}
	if method == "INVITE" {
		w.line(allow)
	}
	for _, h := range ct.headers {
		w.line(h)
	}
	if ct.ctype != "" {
		return w.endTyped(ct.ctype, ct.body)
	}
	return w.end(ct.body)
}

func (c *call) byeB() {
	if c.b.remoteTag == "" {
		return
	}
	c.b.cseq++
	msg := c.inDialogB("BYE", c.b.cseq, token(), nil)
	c.sendB(msg)
	c.b.byeTx = c.transaction(c.b.tp, false, func() { c.sendB(msg) }, nil)
}

// inDialogA writes a request in leg A's dialog.
func (c *call) inDialogA(method string, cseq uint32, branch string, body []byte) []byte {
	return c.requestOn(SideA, method, cseq, branch, content{body: body})
}

func (c *call) byeA() {
	c.a.cseq++
	msg := c.inDialogA("BYE", c.a.cseq, token(), nil)
	c.a.in.Requests.Send(msg)
	c.a.out = c.transaction(c.a.in.Transport, false, func() { c.a.in.Requests.Send(msg) }, nil)
}

// startKeepAlive arms the keep-alive of a UDP caller once its call is up.
func (c *call) startKeepAlive() {
	cfg := c.e.cfg
	if cfg.KeepAlive == KeepAliveOff || cfg.KeepAliveInterval <= 0 || c.a.in.Transport != router.UDP || c.keep != nil {
		return
	}
	c.keep = time.AfterFunc(cfg.KeepAliveInterval, c.keepAlive)
}

func (c *call) keepAlive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == ended || c.a.called != nil { // a caller's transfer replaced the caller (transfer_caller.go)
		return
	}
	defer c.keep.Reset(c.e.cfg.KeepAliveInterval)
	if c.e.cfg.KeepAlive == KeepAliveCRLF {
		c.a.in.Requests.Send([]byte("\r\n\r\n"))
		return
	}
	if c.keepTx != nil && !c.keepTx.stopped {
		return // the last one is still out
	}
	c.a.cseq++
	msg := c.requestOn(SideA, "OPTIONS", c.a.cseq, token(), content{})
	c.a.in.Requests.Send(msg)
	c.keepTx = c.transaction(router.UDP, false, func() { c.a.in.Requests.Send(msg) }, func() {
		c.byeB()
		c.end("caller unreachable (keep-alive)")
	})
}

// respondLocked answers the caller's INVITE provisionally.
func (a *aLeg) respondLocked(c *call, code int, phrase string, extra ...string) {
	tag := a.localTag
	if code == 100 {
		tag = ""
	}
	a.last = response(a.invite, a.in.Source, tag, code, phrase, extra, nil)
	a.in.Reply.Send(a.last)
}

// respond answers the caller's INVITE with a final answer before any call
// state exists (admission refused).
func (a *aLeg) respond(code int, phrase string, extra ...string) {
	a.in.Reply.Send(response(a.invite, a.in.Source, a.localTag, code, phrase, extra, nil))
}

// finalLocked sends the final answer to the caller's INVITE and, over UDP,
// retransmits it until the caller's ACK (Timer G; a 2xx per RFC 6026).
func (a *aLeg) finalLocked(c *call, code int, phrase string, extra []string, body []byte) {
	if code >= 200 && code < 300 {
		extra = append([]string{contactOf(a.in.Transport, a.in.Local), allow}, extra...)
	}
	c.finalCode = code
	a.last = response(a.invite, a.in.Source, a.localTag, code, phrase, extra, body)
	msg := a.last
	a.in.Reply.Send(msg)
	onTimeout := func() {}
	if code < 300 {
		onTimeout = func() { // Timer H for a 2xx: no ACK, the caller is gone
			if c.state == ended {
				return
			}
			c.byeA()
			c.byeB()
			c.end("no ACK from caller")
		}
	}
	a.final = c.transaction(a.in.Transport, false, func() { a.in.Reply.Send(msg) }, onTimeout)
}

// provisional relays a provisional answer of leg B to the caller.
func (c *call) provisional(res *sip.Response) {
	if res.StatusCode == 100 {
		return
	}
	var body []byte
	if sdp := sdpOf(res); sdp != nil && !c.lateOffer {
		var err error
		if body, err = c.media.Answer(SideB, sdp); err != nil {
			c.e.log.Info("early media answer refused", "call_id", c.b.callID, "err", err)
			body = nil
		}
	}
	extra := []string{contactOf(c.a.in.Transport, c.a.in.Local)}
	code, reason := res.StatusCode, res.Reason
	if body != nil && c.e.cfg.Peers[c.target.Gateway].Early183 && code != 183 {
		// A UCMA peer takes early media from a 183 only (R-SBC-9).
		c.a.in.Reply.Send(response(c.a.invite, c.a.in.Source, c.a.localTag, code, reason, extra, nil))
		code, reason = 183, "Session Progress"
	}
	c.a.last = response(c.a.invite, c.a.in.Source, c.a.localTag, code, reason, extra, body)
	c.a.in.Reply.Send(c.a.last)
}

// info is the call as /calls shows it.
func (c *call) info() (CallInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == ended {
		return CallInfo{}, false
	}
	ci := CallInfo{
		ID: c.b.callID, State: c.state.String(), Gateway: c.target.Gateway, Pool: c.target.Pool,
		Backend: c.target.Backend.Name, From: fromUser(c.a.invite), To: c.target.User,
		Started: c.started, Answered: c.answerAt,
		LegA: c.legAInfo(),
		LegB: LegInfo{Transport: c.b.tp, Peer: c.b.dst.String(), CallID: c.b.callID},
	}
	if c.media != nil {
		ci.Media = c.media.Stats()
	}
	return ci, true
}
