package b2bua

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// Attacks on the engine: each test shows one way a peer breaks it.

// rawTransport is fakeTransport that also keeps the bytes sent, for what a
// parsed message no longer shows (bare line feeds).
type rawTransport struct {
	fakeTransport
	mu  sync.Mutex
	raw [][]byte
}

func (r *rawTransport) Send(tp router.Transport, dst netip.AddrPort, name string, msg []byte) error {
	r.mu.Lock()
	r.raw = append(r.raw, bytes.Clone(msg))
	r.mu.Unlock()
	return r.fakeTransport.Send(tp, dst, name, msg)
}

// slowDNS is fakeTransport whose resolver takes delay for a name (an IP
// literal resolves at once), as a resolver whose server does not answer.
type slowDNS struct {
	fakeTransport
	delay time.Duration
}

func (s slowDNS) Resolve(host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, nil
	}
	time.Sleep(s.delay)
	return backendAddr.Addr(), nil
}

// noPanic runs f and fails the test, instead of killing the test binary,
// when f panics: a panic on the front's reader kills edged.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panics: %v", what, r)
		}
	}()
	f()
}

// callerRequest is a request of the caller in the dialog of confirmedCall
// with a branch of its own.
func callerRequest(t *testing.T, method, tag string, cseq int, branch, ctype, body string) *sip.Request {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "Content-Type: " + ctype + "\n"
	}
	return parseWithBody(t, method+" sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK"+branch+"\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		fmt.Sprintf("Call-ID: call-r\nCSeq: %d %s\n", cseq, method)+ct+
		fmt.Sprintf("Content-Length: %d\n\n", len(body)), body).(*sip.Request)
}

// drain empties a recorder in the background until the test ends, for
// floods that would fill its channel; it returns how many messages it took.
func drain(t *testing.T, r *recorder) func() int {
	t.Helper()
	stop := make(chan struct{})
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-r.ch:
				r.mu.Lock()
				r.msgs = r.msgs[1:]
				r.mu.Unlock()
				mu.Lock()
				n++
				mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// Found by attack: a response without a To header (sipfront validates requests
// only, handler.go:36) reaches success(), which dereferences res.To()
// (handle.go:273): a nil-pointer panic on the front's reader, no recover
// there — one datagram from the back end's address with leg B's Call-ID
// kills edged.
func TestAttackResponseWithoutTo(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c-noto", "n1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	res := parse(t, "SIP/2.0 200 OK\nVia: "+inv.Via().Value()+"\nCall-ID: "+string(*inv.CallID())+
		"\nCSeq: 1 INVITE\nContact: <sip:um@203.0.113.5:5062;transport=tcp>\nContent-Length: 0\n\n")
	in := Inbound{Transport: router.TCP, Source: backendAddr, Local: frontAddr, Reply: senderTo{h.b, backendAddr}, Requests: senderTo{h.b, backendAddr}}
	noPanic(t, "a 200 without To", func() { h.e.Handle(res, in) })
	h.a.none(t, 50*time.Millisecond) // nothing of it reached the caller
}

// Found by attack: start() resolves a back end named by DNS with the call's mutex
// held (call.go:151-163 → routeTo's Resolve, call.go:242); sipfront's
// Resolve waits up to 2 s (client.go:248). Meanwhile the caller's
// retransmitted INVITE (500 ms later: it got no 100 Trying, which is sent
// only after the lookup) or its CANCEL reaches Handle on the front's
// reader, which blocks on that mutex (handle.go:18): the whole UDP
// listener stalls — every other call and gateway — for as long as DNS
// hangs. follow() and failover() resolve with the mutex held too
// (handle.go:340, call.go:314), on the reader and on timers.
func TestAttackSlowDNSBlocksReader(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.tp = slowDNS{fakeTransport{h.b}, 2 * time.Second}
	h.target.Backend.Host = "um.example.net"
	inv := invite(t, "c-dns", "d1", callerSDP)
	h.e.Invite(inv, h.inbound(), h.target)
	time.Sleep(20 * time.Millisecond) // start() is now in Resolve
	done := make(chan time.Duration, 1)
	go func() {
		t0 := time.Now()
		h.e.Handle(inv, h.inbound()) // the caller's retransmission
		done <- time.Since(t0)
	}()
	select {
	case d := <-done:
		if d > 200*time.Millisecond {
			t.Fatalf("Handle of a retransmitted INVITE took %v: the front's reader waited for DNS", d)
		}
	case <-time.After(300 * time.Millisecond):
		d := <-done
		t.Fatalf("Handle of a retransmitted INVITE took %v: the front's reader waited for DNS", d)
	}
}

// Found by attack: a relayed re-INVITE whose answerer sends 100 Trying and then
// nothing (a back end that restarts mid-transaction) stays c.reinvite
// forever: reinviteAnswer stops the only timer on a 1xx (handle.go:451-453)
// and nothing else ends it. The caller never gets a final answer, and
// every later re-INVITE of either side — session refreshes, hold, re-key
// — gets 491 Request Pending for the rest of the call (handle.go:417).
func TestAttackReinviteStuckAfterTrying(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond})
	_, tag := confirmedCall(t, h)
	h.fromCaller(t, callerRequest(t, "INVITE", tag, 2, "re1", "application/sdp", callerSDP))
	wantStatus(t, h.a.next(t), 100)
	re := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, re, 100, "Trying", "", "", ""), backendAddr)

	// Well past 64×T1 (640 ms): the first re-INVITE is over, one way or
	// another. The caller sends the next one.
	final := false
	deadline := time.After(1500 * time.Millisecond)
wait:
	for {
		select {
		case <-h.a.ch:
			h.a.ch <- struct{}{}
			if res, ok := h.a.next(t).msg.(*sip.Response); ok && res.StatusCode >= 200 && res.CSeq().SeqNo == 2 {
				final = true
			}
		case <-deadline:
			break wait
		}
	}
	if !final {
		t.Errorf("the caller's re-INVITE never got a final answer")
	}
	h.fromCaller(t, callerRequest(t, "INVITE", tag, 3, "re2", "application/sdp", callerSDP))
	if s, ok := h.a.next(t).msg.(*sip.Response); ok && s.StatusCode == 491 {
		t.Fatalf("a re-INVITE long after the first one got 491 Request Pending: the first never ended")
	}
}

// Found by attack: in-dialog requests relayed to a leg that does not answer pile up
// in c.relays without bound (relay.go:100-103), each with its own timer
// for 64×T1, and relay() scans them all for every new one
// (relay.go:61): a peer flooding INFO (DTMF) or MESSAGE in one dialog
// grows the call's memory and goroutines with its rate × 32 s, in
// quadratic time under the call's mutex.
func TestAttackRelayFloodUnbounded(t *testing.T) {
	h := newHarness(t, Config{})
	_, tag := confirmedCall(t, h)
	drain(t, h.a)
	drain(t, h.b)
	const flood = 1000
	t0 := time.Now()
	for i := range flood {
		h.fromCaller(t, callerRequest(t, "INFO", tag, 10+i, fmt.Sprintf("info%d", i), "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"))
	}
	took := time.Since(t0)
	h.e.mu.Lock()
	c := h.e.byA["call-r"]
	h.e.mu.Unlock()
	c.mu.Lock()
	pending := len(c.relays)
	c.mu.Unlock()
	if pending > 64 {
		t.Fatalf("%d INFOs pending in one call after a flood of %d (in %v): no bound per dialog", pending, flood, took)
	}
}

// Found by attack: end() stops neither the 2xx retransmission to the caller
// (a.final) nor its Timer H (call.go:375-395). A back end that hangs up
// before the caller's ACK: the engine sends BYE to the caller, keeps
// retransmitting the 200 after it, and at Timer H (finalLocked's
// onTimeout, call.go:543-546) sends a second BYE to the caller and a BYE
// to the back end, whose dialog its own BYE already ended.
func TestAttackTimerHAfterEnd(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond})
	h.e.Invite(invite(t, "c-h", "h1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, inv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>",
		"v=0\no=umback 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), backendAddr)
	wantStatus(t, h.a.next(t), 200)
	bye := inDialog(t, "BYE", inv, 1, "203.0.113.5:5062", "")
	bye.To().Params.Add("tag", tagOf(inv.From().Params))
	h.fromBackend(t, reparse(t, bye.String()), backendAddr)
	wantStatus(t, h.b.next(t), 200)

	// 64×T1 = 640 ms and some.
	byeCSeqs := map[uint32]bool{}
	oksAfterBye := 0
	var toBackend []string
	deadline := time.After(1500 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-h.a.ch:
			h.a.ch <- struct{}{}
			switch m := h.a.next(t).msg.(type) {
			case *sip.Request:
				if m.Method == sip.BYE {
					byeCSeqs[m.CSeq().SeqNo] = true
				}
			case *sip.Response:
				if m.StatusCode == 200 && len(byeCSeqs) > 0 {
					oksAfterBye++
				}
			}
		case <-h.b.ch:
			h.b.ch <- struct{}{}
			toBackend = append(toBackend, short(h.b.next(t).msg))
		case <-deadline:
			done = true
		}
	}
	if len(byeCSeqs) != 1 {
		t.Errorf("the caller got %d BYEs (CSeqs %v), want one", len(byeCSeqs), byeCSeqs)
	}
	if oksAfterBye > 0 {
		t.Errorf("the caller got our 200 %d times after our BYE", oksAfterBye)
	}
	if len(toBackend) > 0 {
		t.Errorf("after the back end's BYE it got %q", toBackend)
	}
}

// Found by attack: a rejection the engine makes itself tells the caller, in its
// Warning, the back end's host name and the resolver's error
// (call.go:163-164 with routeTo's "back end %s: %w", call.go:244) — the
// topology R-SBC-1 hides. The failover texts name the back end too
// (call.go:292-293, 340).
func TestAttackWarningLeaksBackendHost(t *testing.T) {
	h := newHarness(t, Config{})
	h.target.Backend.Host = "um-mbx07.corp.internal"
	h.e.Invite(invite(t, "c-leak", "l1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	res := wantStatus(t, h.a.next(t), 503)
	if l := leaks(res, "um-mbx07", "corp.internal"); len(l) > 0 {
		t.Fatalf("the caller's 503 names the back end's %v:\n%s", l, res)
	}
}

// Found by attack: a header value with a bare LF (sipgo keeps it inside the value;
// the front does not refuse it) is copied to leg B as it is
// (call.go:278-282; relayed headers and Content-Type likewise,
// relay.go:71-87): a back end whose parser ends lines at LF, as many
// do, reads a header the caller wrote — header injection across the SBC
// (X-/P- headers, a second Contact, Route…). A NUL passes too.
func TestAttackBareLFInCopiedHeader(t *testing.T) {
	h := newHarness(t, Config{})
	rt := &rawTransport{fakeTransport: fakeTransport{h.b}}
	h.e.tp = rt
	head := "INVITE sip:1001@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKf1;rport\r\n" +
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\r\nTo: <sip:1001@198.51.100.1>\r\nCall-ID: c-lf\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:2001@10.1.1.1:5060>\r\n" +
		"Subject: hello\nP-Asserted-Identity: <sip:ceo@corp.example>\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.NewParser().ParseSIP([]byte(head))
	if err != nil {
		t.Fatal(err)
	}
	inv := m.(*sip.Request)
	if v := headerValue(inv, "Subject"); !strings.Contains(v, "\n") {
		t.Fatalf("sipgo no longer keeps the LF in the value (%q): the test is void", v)
	}
	h.e.Invite(inv, h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	wantRequest(t, h.b.next(t), sip.INVITE)
	rt.mu.Lock()
	raw := rt.raw[0]
	rt.mu.Unlock()
	for i, c := range raw {
		if c == '\n' && (i == 0 || raw[i-1] != '\r') || c == '\r' && (i+1 == len(raw) || raw[i+1] != '\n') || c == 0 {
			end := min(i+40, len(raw))
			t.Fatalf("leg B's INVITE holds a bare %q at byte %d: %q", c, i, raw[max(i-20, 0):end])
		}
	}
}

// Found by attack: a re-INVITE without SDP (RFC 3261 §14.1: the 2xx then offers,
// the ACK answers) is broken: the engine ACKs the answerer's 2xx at once
// and without a body (handle.go:461 → ackIn), feeds the 2xx's offer to
// MediaSession.Answer as if it were an answer (handle.go:465), and drops
// the SDP of the sender's ACK (ackFrom, handle.go:368-371). Leg B's
// session is left with an offer never answered (RFC 3264 §5).
func TestAttackLateOfferReinvite(t *testing.T) {
	h := newHarness(t, Config{})
	_, tag := confirmedCall(t, h)
	h.fromCaller(t, callerRequest(t, "INVITE", tag, 2, "lo1", "", ""))
	wantStatus(t, h.a.next(t), 100)
	re := wantRequest(t, h.b.next(t), sip.INVITE)
	if len(re.Body()) != 0 {
		t.Fatalf("offerless re-INVITE reached leg B with a body")
	}
	h.fromBackend(t, answer(t, re, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>",
		"v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30002 RTP/AVP 0\n"), backendAddr)
	// Either order is fine as long as leg B's ACK carries the answer.
	for range 2 {
		select {
		case <-h.b.ch:
			h.b.ch <- struct{}{}
			ack := wantRequest(t, h.b.next(t), sip.ACK)
			if sdpOf(ack) == nil {
				t.Fatalf("leg B's 2xx offered SDP; its ACK carries no answer:\n%s", ack)
			}
			return
		case <-h.a.ch:
			h.a.ch <- struct{}{}
			res := wantStatus(t, h.a.next(t), 200)
			if !strings.Contains(string(res.Body()), "offer-from-1") {
				t.Errorf("the caller's 200 carries %q, want the back end's offer rewritten as an offer", res.Body())
			}
			h.fromCaller(t, parseWithBody(t, "ACK sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack2\n"+
				"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
				"Call-ID: call-r\nCSeq: 2 ACK\nContent-Type: application/sdp\n"+
				fmt.Sprintf("Content-Length: %d\n\n", len(strings.ReplaceAll(callerSDP, "\n", "\r\n"))), strings.ReplaceAll(callerSDP, "\n", "\r\n")))
		case <-time.After(2 * time.Second):
			t.Fatal("no ACK on leg B")
		}
	}
	t.Fatal("no ACK on leg B")
}

// Found by attack: a secured dial plan's leg B goes over TLS (call.go:218-219) —
// until the back end redirects: follow() takes the transport from the
// 3xx's Contact and defaults to TCP (handle.go:324-330), so a Contact
// without ";transport=tls" (or with ";transport=tcp|udp") moves the call
// to cleartext, SDES keys of a Secured plan's SRTP included, and with
// them the media keys on the wire. The redirect should keep TLS (or be
// refused) on a secured plan.
func TestAttackRedirectDowngradesTLS(t *testing.T) {
	for _, contact := range []string{
		"<sip:1001@203.0.113.5:5065;transport=tcp>",
		"<sip:1001@203.0.113.5:5065;transport=udp>",
		"<sip:1001@203.0.113.5:5065>",
	} {
		t.Run(contact, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.target.Security = router.Secured
			h.target.Backend.TLSPort = int(backendAddr.Port())
			h.e.Invite(invite(t, "c-tls", "t1", callerSDP), h.inbound(), h.target)
			wantStatus(t, h.a.next(t), 100)
			s := h.b.next(t)
			req := wantRequest(t, s, sip.INVITE)
			if s.tp != router.TLS {
				t.Fatalf("a Secured plan's INVITE went over %s", s.tp)
			}
			h.fromBackend(t, answer(t, req, 302, "Moved Temporarily", "um-svc", contact, ""), backendAddr)
			wantRequest(t, h.b.next(t), sip.ACK)
			select {
			case <-h.b.ch:
				h.b.ch <- struct{}{}
				s := h.b.next(t)
				if _, ok := s.msg.(*sip.Request); ok && s.tp != router.TLS {
					t.Fatalf("after a 302 to %s the Secured plan's INVITE went over %s to %s", contact, s.tp, s.dst)
				}
			case <-h.a.ch: // refused: the caller got an answer instead
				h.a.ch <- struct{}{}
			case <-time.After(time.Second):
				t.Fatal("neither followed nor refused")
			}
		})
	}
}

// Found by attack: the caller may end an early dialog with BYE (RFC 3261 §15); the
// engine answers the BYE, cancels leg B and ends the call (byeFrom,
// handle.go:89-96), but never answers the INVITE: §15.1.2 wants the
// pending INVITE answered (487 recommended). The gateway's INVITE
// transaction is left to its own Timer C.
func TestAttackEarlyByeLeavesInviteUnanswered(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c-early", "e1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, inv, 180, "Ringing", "be1", "", ""), backendAddr)
	tag := tagOf(wantStatus(t, h.a.next(t), 180).To().Params)
	h.fromCaller(t, parse(t, "BYE sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKeb1\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		"Call-ID: c-early\nCSeq: 2 BYE\nContent-Length: 0\n\n"))
	wantStatus(t, h.a.next(t), 200) // the BYE's
	select {
	case <-h.a.ch:
		h.a.ch <- struct{}{}
		if res, ok := h.a.next(t).msg.(*sip.Response); !ok || res.CSeq().MethodName != sip.INVITE || res.StatusCode < 300 {
			t.Fatalf("after an early BYE the caller got %s, want a final answer to its INVITE", short(res))
		}
	case <-time.After(500 * time.Millisecond):
		t.Fatal("after an early BYE the caller's INVITE got no final answer")
	}
}

// Found by attack: the 2xx of the caller to a re-INVITE the back end sent is ACKed
// once (ackIn, handle.go:493) and not remembered: leg B has reAck for its
// retransmitted 2xx (handle.go:176-177), leg A nothing. Over UDP one lost
// ACK makes the gateway retransmit its 200, which the engine drops
// (responseA, handle.go:113-116, once c.reinvite is cleared), and after
// 64×T1 the gateway gives up and hangs up the call (RFC 3261 §13.3.1.4).
func TestAttackLostAckOnLegA(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, _ := confirmedCall(t, h)
	re := inDialog(t, "INVITE", bInv, 2, "203.0.113.5:5062", "v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\na=sendonly\n")
	re.To().Params.Add("tag", tagOf(bInv.From().Params))
	re = reparse(t, re.String()).(*sip.Request)
	h.fromBackend(t, re, backendAddr)
	wantStatus(t, h.b.next(t), 100)
	aRe := wantRequest(t, h.a.next(t), sip.INVITE)
	ok := answer(t, aRe, 200, "OK", "", "<sip:2001@10.1.1.1:5060>", callerSDP)
	in := h.inbound()
	h.e.Handle(ok, in)
	wantRequest(t, h.a.next(t), sip.ACK)
	wantStatus(t, h.b.next(t), 200)
	h.fromBackend(t, reparse(t, strings.Replace(strings.Replace(re.String(), "INVITE sip:", "ACK sip:", 1), "2 INVITE", "2 ACK", 1)), backendAddr)
	// Our ACK was lost: the caller sends its 200 again.
	h.e.Handle(ok, in)
	select {
	case <-h.a.ch:
		h.a.ch <- struct{}{}
		wantRequest(t, h.a.next(t), sip.ACK)
	case <-time.After(500 * time.Millisecond):
		t.Fatal("the caller's retransmitted 200 to the back end's re-INVITE got no ACK: the caller will hang up")
	}
}

// Found by attack: a redirect to an IPv6 literal is never followed: follow() checks
// the host without its brackets (handle.go:338) but hands routeTo the
// bracketed u.Host (handle.go:355), whose Resolve (call.go:242; sipfront's
// client.go:245 likewise) is no IP literal and fails, so the caller gets
// the back end's 302 itself — the UM service's redirect to its worker
// fails on an IPv6 back end (R-CR-5).
func TestAttackRedirectToIPv6Literal(t *testing.T) {
	h := newHarness(t, Config{})
	be6 := netip.MustParseAddrPort("[2001:db8::5]:5062")
	h.target.Backend.Host = be6.Addr().String()
	h.e.Invite(invite(t, "c-v6", "v1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, req, 302, "Moved Temporarily", "um-svc", "<sip:1001@[2001:db8::5]:5065;transport=tcp>", ""), be6)
	wantRequest(t, h.b.next(t), sip.ACK)
	select {
	case <-h.b.ch:
		h.b.ch <- struct{}{}
		s := h.b.next(t)
		if r := wantRequest(t, s, sip.INVITE); s.dst.Port() != 5065 {
			t.Fatalf("redirected INVITE to %s: %s", s.dst, short(r))
		}
	case <-h.a.ch:
		h.a.ch <- struct{}{}
		t.Fatalf("a 302 to an IPv6 literal of the same back end was not followed: the caller got %s", short(h.a.next(t).msg))
	case <-time.After(time.Second):
		t.Fatal("nothing after the 302")
	}
}

// Found by attack: a REFER of the back end (a UM transfer) reaches the caller with
// its Referred-By as it is (relay.go:19, copied verbatim by relay()): the
// UM server's internal name and address, which R-SBC-1 says never leak
// outside.
func TestAttackReferLeaksBackendIdentity(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, _ := confirmedCall(t, h)
	refer := inDialog(t, "REFER", bInv, 7, "203.0.113.5:5062", "")
	refer.To().Params.Add("tag", tagOf(bInv.From().Params))
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sip:2002@pbx.example.net>"))
	refer.AppendHeader(sip.NewHeader("Referred-By", "<sip:um@exch01.corp.internal:5065>"))
	h.fromBackend(t, reparse(t, refer.String()), backendAddr)
	ar := wantRequest(t, h.a.next(t), sip.REFER)
	if l := leaks(ar, "exch01", "corp.internal", "203.0.113.5"); len(l) > 0 {
		t.Fatalf("the caller's REFER names the back end's %v:\n%s", l, ar)
	}
}

// Found by attack: leg B has one slot for our request in progress (b.out) and its
// answers are matched by method only (responseB, handle.go:179-182). When
// the caller cancels and the back end answers 200 anyway, the CANCEL's
// transaction is overwritten by the BYE's (call.go:434 then 500): the
// back end's 200 to the CANCEL then stops the BYE's retransmissions, while
// the orphaned CANCEL keeps being retransmitted after its own 200. Over
// UDP one lost BYE leaves the back end's call up (and its UM port busy).
func TestAttackCancelAnswerStopsBye(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond})
	h.target.Backend.TCPPort, h.target.Backend.UDPPort = 0, int(backendAddr.Port())
	h.e.Invite(invite(t, "c-cb", "cb1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, inv, 180, "Ringing", "be1", "", ""), backendAddr)
	wantStatus(t, h.a.next(t), 180)
	h.fromCaller(t, parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKcb1;rport\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: c-cb\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"))
	cancel := wantRequest(t, h.b.next(t), sip.CANCEL)
	h.fromBackend(t, answer(t, inv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062>", "v=0\n"), backendAddr)
	h.fromBackend(t, answer(t, cancel, 200, "OK", "be1", "", ""), backendAddr) // the CANCEL's 200, not the BYE's
	// Leave the transactions 300 ms (30×T1) and see what leg B gets.
	byes, cancels := 0, 0
	deadline := time.After(300 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-h.b.ch:
			h.b.ch <- struct{}{}
			if r, ok := h.b.next(t).msg.(*sip.Request); ok {
				switch r.Method {
				case sip.BYE:
					byes++
				case sip.CANCEL:
					cancels++
				}
			}
		case <-deadline:
			done = true
		}
	}
	if byes < 2 {
		t.Errorf("the unanswered BYE was sent %d times in 30×T1 over UDP: the CANCEL's 200 stopped its retransmissions", byes)
	}
	if cancels > 0 {
		t.Errorf("the answered CANCEL was sent %d more times", cancels)
	}
}

// Found by attack: a retransmitted 2xx of leg B before the caller's ACK is
// recognised only when the first carried a Contact (handle.go:270-271).
// Without one, each copy runs success() again: Answered counted again and
// a second 2xx transaction towards the caller (finalLocked) replaces the
// first, which nobody stops — the caller's ACK stops only the last
// (handle.go:383) — so the first's Timer H hangs up the confirmed call
// 64×T1 later (call.go:543-546).
func TestAttackRetransmitted2xxWithoutContact(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond})
	h.e.Invite(invite(t, "c-2x", "x1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	ok := answer(t, inv, 200, "OK", "be1", "", "v=0\no=umback 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n")
	h.fromBackend(t, ok, backendAddr)
	h.fromBackend(t, ok, backendAddr) // its retransmission
	tag := tagOf(wantStatus(t, h.a.next(t), 200).To().Params)
	h.fromCaller(t, parse(t, "ACK sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		"Call-ID: c-2x\nCSeq: 1 ACK\nContent-Length: 0\n\n"))
	if n := h.e.Metrics.Answered.Load(); n != 1 {
		t.Errorf("one call answered, Answered = %d", n)
	}
	byes := 0
	deadline := time.After(1200 * time.Millisecond) // 64×T1 = 640 ms
	for done := false; !done; {
		select {
		case <-h.a.ch:
			h.a.ch <- struct{}{}
			if r, ok := h.a.next(t).msg.(*sip.Request); ok && r.Method == sip.BYE {
				byes++
			}
		case <-h.b.ch:
			h.b.ch <- struct{}{}
			h.b.next(t)
		case <-deadline:
			done = true
		}
	}
	if byes > 0 {
		t.Fatalf("the confirmed call was hung up (%d BYEs to the caller) by a 2xx transaction its ACK did not stop", byes)
	}
}
