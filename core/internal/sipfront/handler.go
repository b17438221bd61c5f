package sipfront

import (
	"bytes"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/internal/sipheader"
	"github.com/umedge/umedge/core/sdk/router"
)

// peer is where a message came from.
type peer struct {
	transport router.Transport
	src       netip.AddrPort
	local     netip.AddrPort // the listener's address (UDP) or our end of the connection
	names     []string       // verified TLS client certificate names
	reply     replyPath      // how answers leave: the reader's UDP socket or stream connection
	scan      scan           // scratch space reused for each message from this peer
}

// handleMessage answers one parsed message into out (left empty when the
// message gets no answer) and returns where a UDP answer must go.
func (s *Server) handleMessage(msg sip.Message, p *peer, out *bytes.Buffer) netip.AddrPort {
	out.Reset()
	req, ok := msg.(*sip.Request)
	if !ok {
		// A response: to a request of the B2BUA's, or a stray one.
		if b := s.b2b.Load(); b != nil && b.Has(msg) {
			b.Handle(msg, s.inbound(p, nil))
		}
		return netip.AddrPort{}
	}
	st := s.state.Load()
	s.metrics.SIPRequests.WithLabelValues(methodLabel(req.Method), string(p.transport)).Inc()
	sc := &p.scan
	scanHeaders(req, sc)
	if br := validate(req, sc); br != nil {
		s.metrics.SIPBadRequests.WithLabelValues(string(p.transport)).Inc()
		s.refusedFrom(p.src.Addr())
		s.logInput("bad request", "transport", p.transport, "peer", p.src, "call_id", callID(req), "status", br.code, "detail", br.detail)
		if req.Method == sip.ACK || !answerable(req) {
			return netip.AddrPort{} // never answer an ACK; without these headers no response can be formed
		}
		writeResponse(out, req, p, sc.vias, br.code, br.phrase, append(br.extra, warning(st.fqdn, br.detail))...)
		return responseAddr(req, p)
	}
	if b := s.b2b.Load(); b != nil && b.Has(msg) && b.Handle(msg, s.inbound(p, req)) {
		return netip.AddrPort{} // a message of a proxy call: the B2BUA sent what it needs
	}
	switch req.Method {
	case sip.ACK:
		return netip.AddrPort{} // the ACK to our 302 (RFC 3261 §17.1.1.3): absorbed
	case sip.INVITE:
		if tag, _ := req.To().Params.Get("tag"); tag != "" {
			// A re-INVITE: the Call Router has no dialogs (RFC 3261 §12.2.2).
			writeResponse(out, req, p, sc.vias, 481, "Call/Transaction Does Not Exist")
		} else {
			s.invite(req, p, sc, st, out)
		}
	case sip.OPTIONS:
		// Keep-alive and capability query (um-spec R-HLTH-2, R-CR-6).
		writeResponse(out, req, p, sc.vias, 200, "OK", "Allow: "+allow, "Accept: application/sdp", "Supported: ")
	case sip.CANCEL:
		// An INVITE still with the router plugin is cancelled (RFC 3261
		// §9.2: 200 to the CANCEL, 487 to the INVITE); one answered from
		// the table already has its final response: nothing to cancel.
		if s.cancelAsk(req, p) {
			writeResponse(out, req, p, sc.vias, 200, "OK")
		} else {
			writeResponse(out, req, p, sc.vias, 481, "Call/Transaction Does Not Exist")
		}
	case sip.BYE:
		// The Call Router holds no dialogs.
		writeResponse(out, req, p, sc.vias, 481, "Call/Transaction Does Not Exist")
	default:
		writeResponse(out, req, p, sc.vias, 405, "Method Not Allowed", "Allow: "+allow)
	}
	return responseAddr(req, p)
}

// answerable reports whether a response to req can reach the client and
// be matched to its transaction: that takes the Via and the CSeq
// (RFC 3261 §17.1.3). Missing From, To or Call-ID are left out of it.
func answerable(req *sip.Request) bool {
	return req.Via() != nil && req.CSeq() != nil
}

const allow = "INVITE, ACK, CANCEL, OPTIONS"

// invite routes a new call and writes the 302 or the rejection. A call
// the routing table answers is answered here, on the reader, from memory;
// one it leaves to the router plugin is handed to a routing worker (ask).
// Over UDP a retransmitted INVITE gets the answer its first copy got: the
// answers of calls from known gateways are remembered for Timer B.
func (s *Server) invite(req *sip.Request, p *peer, sc *scan, st *state, out *bytes.Buffer) {
	start := time.Now()
	var key uint64
	if p.transport == router.UDP {
		key = s.answers.txKey(req, p.src)
		if ans, ok := s.answers.get(key, start); ok {
			s.metrics.Retransmissions.Inc()
			if !ans.pending { // still pending: the client retransmits until the answer is here
				s.writeAnswer(out, req, p, sc.vias, st, ans)
			}
			return
		}
	}
	s.metrics.Calls.WithLabelValues(string(p.transport)).Inc()
	call, err := callOf(req, p, sc)
	if err != nil {
		s.metrics.SIPBadRequests.WithLabelValues(string(p.transport)).Inc()
		rs := status{400, "Bad Request", "bad-request", false}
		s.event(req, p, nil, rs, err)
		writeResponse(out, req, p, sc.vias, 400, "Bad Request", warning(st.fqdn, err.Error()))
		return
	}
	if b := s.b2b.Load(); b != nil && b2bua.Marked(req) && b.Redirect(req, s.inbound(p, req), call) {
		return // the caller follows a 3xx the SBC rewrote onto itself (R-SBC-7)
	}
	target, err := s.router.Route(call)
	if errors.Is(err, router.ErrAskPlugin) {
		s.ask(req, p, sc, st, out, call, target, key, start)
		return
	}
	if err == nil && target.Action == router.Proxy {
		s.proxy(req, p, target, call)
		return
	}
	ans := s.answerOf(req, p, target, err)
	if key != 0 && target.Decision != nil {
		// Only answers to known gateways are kept: a flood of spoofed
		// sources must not push theirs out, and an unknown peer's 403 is
		// the same when decided again.
		s.answers.put(key, ans, start)
	}
	s.writeAnswer(out, req, p, sc.vias, st, ans)
	s.metrics.RouteLatency.WithLabelValues(string(p.transport)).Observe(time.Since(start).Seconds())
}

// ask hands a call the routing table leaves to the router plugin to a
// routing worker, whose answer goes out later through the peer's replier.
// Over a stream the caller gets 100 Trying at once. Over UDP it gets
// nothing until the answer: a client that has a provisional response stops
// retransmitting (RFC 3261 §17.1.1.2), and a stateless UAS does not
// retransmit its final response, so a lost final answer would leave the
// call hanging; without the 100 the client's retransmissions find the
// answer in memory. The ask deadline is well inside Timer B.
func (s *Server) ask(req *sip.Request, p *peer, sc *scan, st *state, out *bytes.Buffer,
	call *router.Call, target routing.Target, key uint64, start time.Time) {
	if key != 0 {
		s.answers.pend(key, start) // before Ask: a retransmission now finds it pending
	}
	pp := peer{transport: p.transport, src: p.src, local: p.local, names: p.names, reply: p.reply}
	rep := p.replierFor(req)
	tx := key // the same transaction key, already hashed over UDP
	if tx == 0 {
		tx = s.answers.txKey(req, p.src)
	}
	s.asking.add(tx, &pendingAsk{invite: req, peer: pp, rep: rep, memo: key})
	err := s.router.Ask(call, target, func(target routing.Target, err error) {
		if !s.asking.finish(tx) {
			return // cancelled meanwhile: the 487 went out
		}
		// On a routing worker: the reader has moved on, so work on copies.
		if err == nil && target.Action == router.Proxy {
			s.proxy(req, &pp, target, call)
			return
		}
		var vsc scan
		scanHeaders(req, &vsc)
		ans := s.answerOf(req, &pp, target, err)
		var buf bytes.Buffer
		s.writeAnswer(&buf, req, &pp, vsc.vias, s.state.Load(), ans)
		if key != 0 {
			s.answers.put(key, ans, time.Now())
		}
		rep.reply(buf.Bytes())
		s.metrics.RouteLatency.WithLabelValues(string(pp.transport)).Observe(time.Since(start).Seconds())
	})
	if err != nil { // the queue is full: 503 at once
		s.asking.finish(tx)
		ans := s.answerOf(req, p, target, err)
		if key != 0 {
			s.answers.put(key, ans, start)
		}
		s.writeAnswer(out, req, p, sc.vias, st, ans)
		return
	}
	if p.transport != router.UDP {
		s.writeAnswer(out, req, p, sc.vias, st, answer{pending: true})
	}
}

// proxy hands a call of a proxy pool to the B2BUA.
func (s *Server) proxy(req *sip.Request, p *peer, tg routing.Target, call *router.Call) {
	s.metrics.Proxied.WithLabelValues(tg.Decision.Pool, tg.Backend.Name).Inc()
	in := s.inbound(p, req)
	b := s.b2b.Load()
	if b == nil {
		st := s.state.Load()
		in.Reply.Send(responseBytes(req, p, 503, "Service Unavailable", st.retryAfter, warning(st.fqdn, "proxy pool "+tg.Decision.Pool+" but no SBC")))
		return
	}
	b.Invite(req, in, b2bua.Target{
		Gateway: tg.Decision.Gateway, DialPlan: tg.Decision.DialPlan, Pool: tg.Decision.Pool,
		Backend: tg.Backend, Security: tg.Security, User: targetUser(req), MaxGatewayCalls: tg.MaxCalls,
		Alternates: tg.Alternates, Call: call,
	})
}

func responseBytes(req *sip.Request, p *peer, code int, phrase string, extra ...string) []byte {
	var sc scan
	scanHeaders(req, &sc)
	var buf bytes.Buffer
	writeResponse(&buf, req, p, sc.vias, code, phrase, extra...)
	return buf.Bytes()
}

// answerOf turns a routing result into the answer to give, and counts and
// logs it.
func (s *Server) answerOf(req *sip.Request, p *peer, target routing.Target, err error) answer {
	if err != nil {
		rs := errStatus(err)
		s.event(req, p, &target, *rs, err)
		return answer{status: rs}
	}
	s.metrics.Redirects.WithLabelValues(target.Decision.Pool, target.Backend.Name).Inc()
	return answer{backend: target.Backend}
}

// writeAnswer writes the response an answer stands for; the same answer
// to the same request always gives the same bytes.
func (s *Server) writeAnswer(out *bytes.Buffer, req *sip.Request, p *peer, vias []sip.Header, st *state, ans answer) {
	switch {
	case ans.pending:
		writeResponse(out, req, p, vias, 100, "Trying")
	case ans.backend != nil:
		writeResponse(out, req, p, vias, 302, "Moved Temporarily", "Contact: "+contact(req, p.transport, ans.backend))
	default:
		rs := *ans.status
		extra := []string{warning(st.fqdn, rs.reason)}
		if rs.retryAfter {
			extra = append(extra, st.retryAfter)
		}
		writeResponse(out, req, p, vias, rs.code, rs.phrase, extra...)
	}
}

// event counts a rejection and logs it as a structured event with a stable
// reason code (um-spec R-ERR-7). Logging is rate-limited, so that a flood
// of refused calls costs counters, not disk: an event that follows
// suppressed ones says how many were not logged.
func (s *Server) event(req *sip.Request, p *peer, t *routing.Target, sc status, err error) {
	s.metrics.Rejections.WithLabelValues(sc.reason).Inc()
	if !sc.retryAfter { // our own overload is no fault of the peer's
		s.refusedFrom(p.src.Addr())
	}
	attrs := []any{
		"call_id", callID(req), "peer", p.src.Addr().String(), "transport", p.transport,
		"status", sc.code, "reason", sc.reason, "detail", err.Error(),
	}
	var rej *router.Rejection
	switch {
	case errors.As(err, &rej):
		attrs = append(attrs, "gateway", rej.Gateway, "dial_plan", rej.DialPlan)
	case t != nil && t.Decision != nil:
		attrs = append(attrs, "gateway", t.Decision.Gateway, "dial_plan", t.Decision.DialPlan)
	}
	if len(p.names) > 0 {
		attrs = append(attrs, "tls_names", strings.Join(p.names, ","))
	}
	if ok, n := s.rejectLog.allow(time.Now()); ok {
		if n > 0 {
			attrs = append(attrs, "not_logged_before", n)
		}
		s.log.Info("call rejected", attrs...)
	}
}

// callOf extracts what the router plugin decides on.
func callOf(req *sip.Request, p *peer, sc *scan) (*router.Call, error) {
	c := &router.Call{
		CallID:         callID(req),
		Transport:      p.transport,
		Source:         p.src.Addr().Unmap(),
		PeerNames:      p.names,
		RequestURIUser: uriUser(&req.Recipient),
		ToUser:         uriUser(&req.To().Address),
		FromUser:       uriUser(&req.From().Address),
	}
	var err error
	if c.Diversion, err = sipheader.Diversion(sc.diversion); err != nil {
		return nil, err
	}
	if c.HistoryInfo, err = sipheader.HistoryInfo(sc.history); err != nil {
		return nil, err
	}
	return c, nil
}

// uriUser returns the user of a SIP URI or the number of a tel URI,
// unescaped, without user parameters.
func uriUser(u *sip.Uri) string {
	user := u.User
	if strings.EqualFold(u.Scheme, "tel") {
		user = u.Raw()
	}
	if i := strings.IndexByte(user, ';'); i >= 0 {
		user = user[:i]
	}
	if strings.IndexByte(user, '%') >= 0 {
		if v, err := url.PathUnescape(user); err == nil {
			return v
		}
	}
	return user
}

func callID(req *sip.Request) string {
	if id := req.CallID(); id != nil {
		return string(*id)
	}
	return ""
}

// contact is the 302 Contact (um-spec R-CR-1, R-CR-4): the back end's host,
// the port matching the transport — a UDP call is moved to TCP since the UM
// side is stream-only (R-PORT-1) — an explicit transport parameter, the
// Request-URI's user part as received, and never maddr.
func contact(req *sip.Request, tp router.Transport, b *router.Backend) string {
	port, param := b.TCPPort, "tcp"
	if tp == router.TLS {
		port, param = b.TLSPort, "tls"
	}
	var sb strings.Builder
	sb.Grow(64)
	sb.WriteString("<sip:")
	if u := targetUser(req); u != "" {
		sb.WriteString(u)
		sb.WriteByte('@')
	}
	if strings.IndexByte(b.Host, ':') >= 0 && !strings.HasPrefix(b.Host, "[") {
		sb.WriteByte('[')
		sb.WriteString(b.Host)
		sb.WriteByte(']')
	} else {
		sb.WriteString(b.Host)
	}
	sb.WriteByte(':')
	writeInt(&sb, port)
	sb.WriteString(";transport=")
	sb.WriteString(param)
	sb.WriteByte('>')
	return sb.String()
}

// targetUser is the user part the back end must see, escaped: the
// Request-URI's as received, or, with none there, the To user's (the call
// was routed by it).
func targetUser(req *sip.Request) string {
	var sb strings.Builder
	switch {
	case req.Recipient.User != "" && !strings.EqualFold(req.Recipient.Scheme, "tel"):
		sipheader.WriteUser(&sb, req.Recipient.User)
	case uriUser(&req.Recipient) != "":
		sipheader.WriteUser(&sb, url.PathEscape(uriUser(&req.Recipient)))
	case req.To() != nil && uriUser(&req.To().Address) != "":
		sipheader.WriteUser(&sb, url.PathEscape(uriUser(&req.To().Address)))
	}
	return sb.String()
}

func writeInt(sb *strings.Builder, n int) {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			break
		}
	}
	sb.Write(b[i:])
}

// warning is a Warning header (RFC 3261 §20.43) with code 399 and text
// made safe for a quoted string.
func warning(host, text string) string {
	return `Warning: 399 ` + host + ` "` + sanitize(text) + `"`
}

func sanitize(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
}

// pendingAsk is an INVITE waiting for the router plugin, kept so that a
// CANCEL can end it.
type pendingAsk struct {
	invite *sip.Request
	peer   peer
	rep    replier
	memo   uint64 // its key in answers (UDP), or 0
}

// pendingAsks are the INVITEs waiting for the router plugin, by
// transaction key; no more than the routing engine's queue and workers.
type pendingAsks struct {
	mu sync.Mutex
	m  map[uint64]*pendingAsk
}

// add registers pa under key.
func (a *pendingAsks) add(key uint64, pa *pendingAsk) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[uint64]*pendingAsk)
	}
	a.m[key] = pa
}

// finish removes key and reports whether it was still there (not cancelled).
func (a *pendingAsks) finish(key uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.m[key]
	delete(a.m, key)
	return ok
}

// take removes and returns the pending INVITE under key, if any.
func (a *pendingAsks) take(key uint64) *pendingAsk {
	a.mu.Lock()
	defer a.mu.Unlock()
	pa := a.m[key]
	delete(a.m, key)
	return pa
}

// requestTerminated is the answer to a cancelled INVITE.
var requestTerminated = status{487, "Request Terminated", "cancelled", false}

// cancelAsk ends the INVITE that CANCEL req names, if it is still waiting
// for the router plugin: the INVITE gets 487 now, the plugin's answer is
// dropped when it comes. A CANCEL carries the INVITE's Call-ID, CSeq number
// and top Via, and so its transaction key (RFC 3261 §9.1).
func (s *Server) cancelAsk(req *sip.Request, p *peer) bool {
	pa := s.asking.take(s.answers.txKey(req, p.src))
	if pa == nil {
		return false
	}
	var vsc scan
	scanHeaders(pa.invite, &vsc)
	ans := answer{status: &requestTerminated}
	var buf bytes.Buffer
	s.writeAnswer(&buf, pa.invite, &pa.peer, vsc.vias, s.state.Load(), ans)
	if pa.memo != 0 {
		s.answers.put(pa.memo, ans, time.Now())
	}
	pa.rep.reply(buf.Bytes())
	return true
}
