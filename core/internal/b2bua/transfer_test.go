package b2bua

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

var pbxAddr = netip.MustParseAddrPort("192.0.2.50:5070")

// transferHarness is a harness whose peer (gw, the caller's gateway, or
// um, the back end's pool) has REFER handled locally, with timer T1 t1
// (0 = the default); the PBX at pbxAddr is a gateway of the routing
// table.
func transferHarness(t *testing.T, peer string, t1 time.Duration) *harness {
	t.Helper()
	tbl := &router.Table{Gateways: []router.Gateway{{Name: "pbx", Addresses: []netip.Addr{pbxAddr.Addr()}}}}
	return newHarness(t, Config{T1: t1, Peers: map[string]Peer{peer: {ReferMode: ReferLocal}}, Table: func() *router.Table { return tbl }})
}

func referFrom(t *testing.T, bInv *sip.Request, cseq int, referTo string) *sip.Request {
	t.Helper()
	refer := inDialog(t, "REFER", bInv, cseq, "203.0.113.5:5062", "")
	refer.To().Params.Add("tag", tagOf(bInv.From().Params))
	refer.AppendHeader(sip.NewHeader("Refer-To", referTo))
	refer.AppendHeader(sip.NewHeader("Referred-By", "<sip:um-aa@203.0.113.5>"))
	return reparse(t, refer.String()).(*sip.Request)
}

func wantSipfrag(t *testing.T, s sent, status, state string) {
	t.Helper()
	n := wantRequest(t, s, sip.NOTIFY)
	if !strings.HasPrefix(string(n.Body()), status) || !strings.HasPrefix(headerValue(n, "Subscription-State"), state) ||
		!strings.HasPrefix(headerValue(n, "Event"), "refer") || headerValue(n, "Content-Type") != sipfrag {
		t.Fatalf("NOTIFY, want %q %s:\n%s", status, state, n)
	}
}

// startTransfer confirms a call and has the back end REFER it to the
// PBX; it returns leg B's INVITE and where leg C's INVITE went.
func startTransfer(t *testing.T, h *harness) (*sip.Request, sent) {
	t.Helper()
	bInv, trying, cs := referred(t, h)
	h.fromBackend(t, answer(t, trying.msg, 200, "OK", "", "", ""), backendAddr)
	return bInv, cs
}

// referred is startTransfer that leaves the NOTIFY with 100 Trying
// unanswered and returns it too.
func referred(t *testing.T, h *harness) (bInv *sip.Request, trying, cs sent) {
	t.Helper()
	bInv, _ = confirmedCall(t, h)
	h.fromBackend(t, referFrom(t, bInv, 7, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	wantStatus(t, h.b.next(t), 202)
	trying = h.b.next(t)
	wantSipfrag(t, trying, "SIP/2.0 100", "active")
	cs = h.b.next(t)
	wantRequest(t, cs, sip.INVITE)
	return bInv, trying, cs
}

// R-ID-8: UM transfers an answered call with REFER; the caller (CUCM)
// never sees it: the engine answers 202, calls the target itself, moves
// the caller's media there with a re-INVITE and reports in NOTIFYs; UM
// hangs up. Leg C is then the call's leg B.
func TestReferHandledLocally(t *testing.T) {
	h := transferHarness(t, "gw", 0)
	bInv, cs := startTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	if cs.dst != pbxAddr || cs.tp != router.UDP || cInv.Recipient.User != "2002" || len(cInv.Body()) != 0 ||
		string(*cInv.CallID()) == string(*bInv.CallID()) || !strings.Contains(headerValue(cInv, "Referred-By"), "um-aa@sbc.example.net") {
		t.Fatalf("INVITE to the target (%s over %s):\n%s", cs.dst, cs.tp, cInv)
	}
	if l := leaks(cInv, "203.0.113.5", "10.1.1.1", "caller1", "call-r"); len(l) > 0 {
		t.Errorf("leg C's INVITE leaks %v:\n%s", l, cInv)
	}
	h.a.none(t, 30*time.Millisecond) // no REFER for the caller

	h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
	ringing := h.b.next(t)
	wantSipfrag(t, ringing, "SIP/2.0 180", "active")
	h.fromBackend(t, answer(t, ringing.msg, 200, "OK", "", "", ""), backendAddr)
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>",
		"v=0\no=pbx 1 1 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\nm=audio 7000 RTP/AVP 0\n"), pbxAddr)
	reinv := wantRequest(t, h.a.next(t), sip.INVITE)
	if !strings.Contains(string(reinv.Body()), "offer-from-1") || string(*reinv.CallID()) != "call-r" {
		t.Fatalf("re-INVITE to the caller:\n%s", reinv)
	}
	h.fromCaller(t, answer(t, reinv, 200, "OK", "", "<sip:2001@10.1.1.1>", callerSDP))
	wantRequest(t, h.a.next(t), sip.ACK)
	ackC := h.b.next(t)
	if ack := wantRequest(t, ackC, sip.ACK); ackC.dst != pbxAddr || !strings.Contains(string(ack.Body()), "answer-from-0") {
		t.Fatalf("ACK to leg C (%s):\n%s", ackC.dst, ack)
	}
	final := h.b.next(t)
	wantSipfrag(t, final, "SIP/2.0 200", "terminated")
	// UM hangs up, told; its BYE is answered, the call goes on.
	h.fromBackend(t, answer(t, final.msg, 200, "OK", "", "", ""), backendAddr)
	umBye := inDialog(t, "BYE", bInv, 8, "203.0.113.5:5062", "")
	umBye.To().Params.Add("tag", tagOf(bInv.From().Params))
	h.fromBackend(t, reparse(t, umBye.String()), backendAddr)
	wantStatus(t, h.b.next(t), 200)
	if n := h.e.Active(); n != 1 {
		t.Fatalf("%d calls after UM's BYE, want the transferred call", n)
	}

	// The caller hangs up: leg C gets the BYE.
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tagOf(reinv.From().Params), 3, "", "", ""))
	wantStatus(t, h.a.next(t), 200)
	cb := h.b.next(t)
	if b := wantRequest(t, cb, sip.BYE); cb.dst != pbxAddr || string(*b.CallID()) != string(*cInv.CallID()) {
		t.Fatalf("the caller's BYE went to %s:\n%s", cb.dst, b)
	}
}

// Only targets the routing knows: anything else gets 403 and no call;
// an attended transfer (Refer-To with Replaces) is not done locally.
func TestReferLocalTargetsRefused(t *testing.T) {
	h := transferHarness(t, "gw", 0)
	bInv, _ := confirmedCall(t, h)
	for i, target := range []string{"<sip:2002@192.0.2.99:5060>", "<sip:2002@evil.example.net>", "<tel:+14255550100>"} {
		h.fromBackend(t, referFrom(t, bInv, 10+i, target), backendAddr)
		if res := wantStatus(t, h.b.next(t), 403); !strings.Contains(headerValue(res, "Warning"), "transfer target") {
			t.Errorf("%s: %s", target, res)
		}
	}
	h.fromBackend(t, referFrom(t, bInv, 20, "<sip:2002@192.0.2.50?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>"), backendAddr)
	wantStatus(t, h.b.next(t), 501)
	h.b.none(t, 30*time.Millisecond)
	h.a.none(t, 30*time.Millisecond)
}

// A target that refuses: the back end hears it in the final NOTIFY and
// the call goes on with it.
// A transferor that does not hang up once told is hung up after 64×T1.
func TestReferLocalTransferorHungUp(t *testing.T) {
	h := transferHarness(t, "gw", 5*time.Millisecond)
	bInv, cs := startTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>",
		"v=0\no=pbx 1 1 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\nm=audio 7000 RTP/AVP 0\n"), pbxAddr)
	reinv := wantRequest(t, h.a.next(t), sip.INVITE)
	h.fromCaller(t, answer(t, reinv, 200, "OK", "", "<sip:2001@10.1.1.1>", callerSDP))
	if s := nextRequest(t, h.b, sip.BYE); s.dst != backendAddr || string(*s.msg.CallID()) != string(*bInv.CallID()) {
		t.Fatalf("BYE to %s:\n%s", s.dst, s.msg)
	}
}

// The NOTIFYs go out one at a time: a transferor that has not answered
// the 100 Trying gets nothing more, however the transfer goes on; an
// answer to another NOTIFY or a provisional one releases nothing; its 200
// releases the latest state only (the final, the 180 it replaced is
// never told), in the next CSeq. The CI run that found this: SIPp as UM
// got the final NOTIFY in the same TCP read as the 100 Trying, before it
// had answered that, and aborted the call.
func TestReferNotifiesOneAtATime(t *testing.T) {
	h := transferHarness(t, "gw", 0)
	_, trying, cs := referred(t, h)
	cInv := cs.msg.(*sip.Request)

	h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
	reinv := wantRequest(t, h.a.next(t), sip.INVITE)
	h.fromCaller(t, answer(t, reinv, 200, "OK", "", "<sip:2001@10.1.1.1>", callerSDP))
	wantRequest(t, h.a.next(t), sip.ACK)
	wantRequest(t, h.b.next(t), sip.ACK) // to leg C
	h.b.none(t, 50*time.Millisecond)     // the 100 Trying is not answered: no NOTIFY

	seq := trying.msg.(*sip.Request).CSeq().SeqNo
	other := answer(t, trying.msg, 200, "OK", "", "", "")
	other.CSeq().SeqNo = seq - 1
	h.fromBackend(t, reparse(t, other.String()), backendAddr)
	h.fromBackend(t, answer(t, trying.msg, 100, "Trying", "", "", ""), backendAddr)
	h.b.none(t, 50*time.Millisecond)

	h.fromBackend(t, answer(t, trying.msg, 200, "OK", "", "", ""), backendAddr)
	final := h.b.next(t)
	wantSipfrag(t, final, "SIP/2.0 200", "terminated")
	if got := final.msg.(*sip.Request).CSeq().SeqNo; got != seq+1 {
		t.Errorf("final NOTIFY in CSeq %d, want %d", got, seq+1)
	}
	h.fromBackend(t, answer(t, trying.msg, 200, "OK", "", "", ""), backendAddr) // a retransmitted answer
	h.fromBackend(t, answer(t, final.msg, 200, "OK", "", "", ""), backendAddr)
	h.b.none(t, 50*time.Millisecond)
}

// A transferor that leaves a NOTIFY unanswered for 64×T1 is gone (RFC
// 6665 §4.2.2): the state reached meanwhile is not sent, nor anything
// later, not even when the answer comes after all.
func TestReferNotifyUnanswered(t *testing.T) {
	h := transferHarness(t, "gw", 2*time.Millisecond)
	_, trying, cs := referred(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
	time.Sleep(64*2*time.Millisecond + 100*time.Millisecond)
	h.fromBackend(t, answer(t, trying.msg, 200, "OK", "", "", ""), backendAddr)
	time.Sleep(50 * time.Millisecond)
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	for _, s := range h.b.msgs {
		if req, ok := s.msg.(*sip.Request); ok && req.Method == sip.NOTIFY && req.CSeq().SeqNo != trying.msg.(*sip.Request).CSeq().SeqNo {
			t.Fatalf("a NOTIFY after the transferor went silent:\n%s", req)
		}
	}
}

// nextRequest waits for the next request of method on r, skipping
// whatever comes before it (retransmissions, NOTIFYs).
func nextRequest(t *testing.T, r *recorder, method sip.RequestMethod) sent {
	t.Helper()
	for {
		s := r.next(t)
		if req, ok := s.msg.(*sip.Request); ok && req.Method == method {
			return s
		}
	}
}

func TestReferLocalTargetBusy(t *testing.T) {
	h := transferHarness(t, "gw", 0)
	_, cs := startTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 486, "Busy Here", "pbx1", "", ""), pbxAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	wantSipfrag(t, h.b.next(t), "SIP/2.0 486", "terminated")
	if n := h.e.Active(); n != 1 {
		t.Fatalf("%d calls after a failed transfer, want the call kept", n)
	}
	h.a.none(t, 30*time.Millisecond)
}

const targetSDP = "v=0\no=pbx 1 1 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\nm=audio 7000 RTP/AVP 0\n"

// startCallerTransfer confirms a call and has the caller REFER it to the
// PBX; it returns leg B's INVITE, our tag towards the caller and leg C's
// INVITE as sent.
func startCallerTransfer(t *testing.T, h *harness) (*sip.Request, string, sent) {
	t.Helper()
	bInv, tag := confirmedCall(t, h)
	h.fromCaller(t, fromCallerInDialog(t, "REFER", tag, 2, "Refer-To: <sip:2002@192.0.2.50:5070>\nReferred-By: <sip:2001@10.1.1.1>\n", "", ""))
	if res := wantStatus(t, h.a.next(t), 202); res.CSeq().MethodName != sip.REFER {
		t.Fatalf("202 for %s", res.CSeq())
	}
	n := h.a.next(t)
	wantSipfrag(t, n, "SIP/2.0 100", "active")
	if req := n.msg.(*sip.Request); string(*req.CallID()) != "call-r" || tagOf(req.To().Params) != "caller1" || tagOf(req.From().Params) != tag {
		t.Fatalf("NOTIFY outside the caller's dialog:\n%s", req)
	}
	h.fromCaller(t, answer(t, n.msg, 200, "OK", "", "", ""))
	cs := h.b.next(t)
	wantRequest(t, cs, sip.INVITE)
	return bInv, tag, cs
}

// R-ID-8 the other way: the caller transfers the back end with REFER; the
// back end never sees it. The engine answers 202, calls the target
// itself, moves the back end's media there with a re-INVITE and tells
// the caller in NOTIFYs; the caller hangs up and the call goes on between
// the back end and the target, which is side A from then on.
func TestCallerReferHandledLocally(t *testing.T) {
	h := transferHarness(t, "um", 0)
	bInv, _, cs := startCallerTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	if cs.dst != pbxAddr || cs.tp != router.UDP || cInv.Recipient.User != "2002" || len(cInv.Body()) != 0 ||
		string(*cInv.CallID()) == string(*bInv.CallID()) || !strings.Contains(headerValue(cInv, "Referred-By"), "2001@sbc.example.net") ||
		cInv.From().Address.User != "1001" {
		t.Fatalf("INVITE to the target (%s over %s):\n%s", cs.dst, cs.tp, cInv)
	}
	if l := leaks(cInv, "10.1.1.1", "caller1", "call-r", "203.0.113.5", "be1"); len(l) > 0 {
		t.Errorf("leg C's INVITE leaks %v:\n%s", l, cInv)
	}

	h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
	ringing := h.a.next(t)
	wantSipfrag(t, ringing, "SIP/2.0 180", "active")
	h.fromCaller(t, answer(t, ringing.msg, 200, "OK", "", "", ""))
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
	rs := h.b.next(t)
	reinv := wantRequest(t, rs, sip.INVITE)
	if rs.dst != backendAddr || !strings.Contains(string(reinv.Body()), "offer-from-0") || string(*reinv.CallID()) != string(*bInv.CallID()) {
		t.Fatalf("re-INVITE to the back end (%s):\n%s", rs.dst, reinv)
	}
	h.fromBackend(t, answer(t, reinv, 200, "OK", "", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), backendAddr)
	if ab := h.b.next(t); ab.dst != backendAddr || wantRequest(t, ab, sip.ACK).CSeq().SeqNo != reinv.CSeq().SeqNo {
		t.Fatalf("ACK of the re-INVITE went to %s", ab.dst)
	}
	ackC := h.b.next(t)
	if ack := wantRequest(t, ackC, sip.ACK); ackC.dst != pbxAddr || !strings.Contains(string(ack.Body()), "answer-from-1") {
		t.Fatalf("ACK to leg C (%s):\n%s", ackC.dst, ack)
	}
	final := h.a.next(t)
	wantSipfrag(t, final, "SIP/2.0 200", "terminated")
	h.b.none(t, 30*time.Millisecond) // no REFER for the back end, ever

	// The caller hangs up, told: its BYE is answered and ends nothing.
	h.fromCaller(t, answer(t, final.msg, 200, "OK", "", "", ""))
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tagOf(final.msg.(*sip.Request).From().Params), 3, "", "", ""))
	wantStatus(t, h.a.next(t), 200)
	h.b.none(t, 30*time.Millisecond)
	if n := h.e.Active(); n != 1 {
		t.Fatalf("%d calls after the caller's BYE, want the transferred call", n)
	}

	// The back end re-INVITEs (hold): the offer goes to leg C, in its
	// dialog, the answer comes back.
	hold := inDialog(t, "INVITE", bInv, 10, "203.0.113.5:5062", "v=0\no=umback 1 3 IN IP4 203.0.113.5\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 30000 RTP/AVP 0\n")
	hold.To().Params.Add("tag", tagOf(bInv.From().Params))
	h.fromBackend(t, reparse(t, hold.String()), backendAddr)
	hs := h.b.next(t)
	if res, ok := hs.msg.(*sip.Response); ok && res.StatusCode == 100 {
		hs = h.b.next(t)
	}
	if hc := wantRequest(t, hs, sip.INVITE); hs.dst != pbxAddr || string(*hc.CallID()) != string(*cInv.CallID()) ||
		tagOf(hc.To().Params) != "pbx1" || hc.Recipient.User != "2002" {
		t.Fatalf("the back end's re-INVITE went to %s:\n%s", hs.dst, hc)
	} else {
		h.fromBackend(t, answer(t, hc, 200, "OK", "", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
	}
	wantRequest(t, h.b.next(t), sip.ACK) // to leg C
	wantStatus(t, h.b.next(t), 200)      // to the back end

	// The back end hangs up: leg C gets the BYE, the caller nothing.
	bye := inDialog(t, "BYE", bInv, 11, "203.0.113.5:5062", "")
	bye.To().Params.Add("tag", tagOf(bInv.From().Params))
	h.fromBackend(t, reparse(t, bye.String()), backendAddr)
	wantStatus(t, h.b.next(t), 200)
	cb := h.b.next(t)
	if b := wantRequest(t, cb, sip.BYE); cb.dst != pbxAddr || string(*b.CallID()) != string(*cInv.CallID()) {
		t.Fatalf("the back end's BYE went to %s:\n%s", cb.dst, b)
	}
	h.a.none(t, 30*time.Millisecond)
	if recs := h.records(t); len(recs) != 1 || recs[0].Reason != "callee hung up" || recs[0].From != "2001" ||
		recs[0].LegA.CallID != string(*cInv.CallID()) || recs[0].LegA.Peer != pbxAddr.String() {
		t.Errorf("CDRs %+v: want the caller's From, leg C as leg A", recs)
	}
}

// A caller that does not hang up once told is hung up after 64×T1; leg
// C hanging up then ends the call towards the back end.
func TestCallerReferTransferorHungUp(t *testing.T) {
	h := transferHarness(t, "um", 5*time.Millisecond)
	bInv, tag, cs := startCallerTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
	reinv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, reinv, 200, "OK", "", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), backendAddr)
	if req := nextRequest(t, h.a, sip.BYE).msg.(*sip.Request); string(*req.CallID()) != "call-r" || tagOf(req.From().Params) != tag || tagOf(req.To().Params) != "caller1" {
		t.Fatalf("BYE to the caller:\n%s", req)
	}
	// Leg C, now side A, hangs up: the back end gets the BYE.
	cBye := inDialog(t, "BYE", cInv, 2, "192.0.2.50:5070", "")
	cBye.From().Params.Add("tag", "pbx1") // the target's tag, not the harness's
	cBye.To().Params.Add("tag", tagOf(cInv.From().Params))
	h.fromBackend(t, reparse(t, cBye.String()), pbxAddr)
	if s := nextRequest(t, h.b, sip.BYE); s.dst != backendAddr || string(*s.msg.CallID()) != string(*bInv.CallID()) {
		t.Fatalf("leg C's BYE went to %s:\n%s", s.dst, s.msg)
	}
}

// A target that refuses: the caller hears it in the final NOTIFY and the
// call goes on with it; the caller's BYE then ends it as ever.
func TestCallerReferTargetBusy(t *testing.T) {
	h := transferHarness(t, "um", 0)
	_, tag, cs := startCallerTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 486, "Busy Here", "pbx1", "", ""), pbxAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	wantSipfrag(t, h.a.next(t), "SIP/2.0 486", "terminated")
	if n := h.e.Active(); n != 1 {
		t.Fatalf("%d calls after a failed transfer, want the call kept", n)
	}
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 5, "", "", ""))
	wantStatus(t, h.a.next(t), 200)
	if s := h.b.next(t); s.dst != backendAddr {
		t.Fatalf("BYE went to %s", s.dst)
	} else {
		wantRequest(t, s, sip.BYE)
	}
}

// A caller that hangs up during the transfer does not end the call; when
// the transfer then fails, the call ends towards the back end.
func TestCallerReferFailsAfterCallerLeft(t *testing.T) {
	h := transferHarness(t, "um", 0)
	_, tag, cs := startCallerTransfer(t, h)
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 3, "", "", ""))
	wantStatus(t, h.a.next(t), 200)
	h.b.none(t, 30*time.Millisecond)
	h.fromBackend(t, answer(t, cs.msg, 603, "Decline", "pbx1", "", ""), pbxAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	if s := h.b.next(t); s.dst != backendAddr {
		t.Fatalf("BYE went to %s", s.dst)
	} else {
		wantRequest(t, s, sip.BYE)
	}
	if recs := h.records(t); len(recs) != 1 || recs[0].Reason != "transfer failed after the caller hung up" {
		t.Errorf("CDRs %+v", recs)
	}
}

// Only targets the routing knows; a second REFER while one is in progress
// is 491; with the pool's REFER mode transparent (the default) the
// caller's REFER reaches the back end.
func TestCallerReferRefusedAndTransparent(t *testing.T) {
	h := transferHarness(t, "um", 0)
	_, tag := confirmedCall(t, h)
	for i, target := range []string{"<sip:2002@192.0.2.99:5060>", "<sip:2002@evil.example.net>", "<tel:+14255550100>"} {
		h.fromCaller(t, fromCallerInDialog(t, "REFER", tag, 10+i, "Refer-To: "+target+"\n", "", ""))
		if res := wantStatus(t, h.a.next(t), 403); !strings.Contains(headerValue(res, "Warning"), "transfer target") {
			t.Errorf("%s: %s", target, res)
		}
	}
	h.fromCaller(t, fromCallerInDialog(t, "REFER", tag, 20, "Refer-To: <sip:2002@192.0.2.50:5070>\n", "", ""))
	wantStatus(t, h.a.next(t), 202)
	wantSipfrag(t, h.a.next(t), "SIP/2.0 100", "active")
	wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromCaller(t, fromCallerInDialog(t, "REFER", tag, 21, "Refer-To: <sip:2002@192.0.2.50:5070>\n", "", ""))
	wantStatus(t, h.a.next(t), 491)

	plain := newHarness(t, Config{})
	_, ptag := confirmedCall(t, plain)
	plain.fromCaller(t, fromCallerInDialog(t, "REFER", ptag, 2, "Refer-To: <sip:2002@192.0.2.50:5070>\n", "", ""))
	if r := wantRequest(t, plain.b.next(t), sip.REFER); r.Recipient.User != "um" {
		t.Errorf("REFER relayed to %s", r.Recipient.String())
	}
	plain.a.none(t, 30*time.Millisecond)
}

// A transferor that answers a NOTIFY with an error has ended the
// subscription (RFC 6665 §4.2.2: a 481, or a failure with no Retry-After,
// removes it): the state reached meanwhile is not sent, nor the final one.
func TestReferNotifyRefused(t *testing.T) {
	for _, code := range []int{481, 500, 603} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			h := transferHarness(t, "gw", 0)
			_, trying, cs := referred(t, h)
			cInv := cs.msg.(*sip.Request)
			h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
			h.fromBackend(t, answer(t, trying.msg, code, "No", "", "", ""), backendAddr)
			h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
			time.Sleep(50 * time.Millisecond)
			h.b.mu.Lock()
			defer h.b.mu.Unlock()
			for _, s := range h.b.msgs {
				if req, ok := s.msg.(*sip.Request); ok && req.Method == sip.NOTIFY && req.CSeq().SeqNo != trying.msg.(*sip.Request).CSeq().SeqNo {
					t.Fatalf("a NOTIFY after the transferor's %d to the last one:\n%s", code, req)
				}
			}
		})
	}
}

// A call transferred by either side is forgotten 64×T1 after its end
// like any other: nothing of it stays findable by any of its Call-IDs,
// the transferor's included (leg C took its side's Call-ID in the call).
func TestTransferredCallForgotten(t *testing.T) {
	beSDP := "v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"
	t.Run("by the caller", func(t *testing.T) {
		h := transferHarness(t, "um", 5*time.Millisecond)
		bInv, _, cs := startCallerTransfer(t, h)
		cInv := cs.msg.(*sip.Request)
		h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
		reinv := nextRequest(t, h.b, sip.INVITE).msg
		h.fromBackend(t, answer(t, reinv, 200, "OK", "", "<sip:um@203.0.113.5:5062;transport=tcp>", beSDP), backendAddr)
		nextRequest(t, h.a, sip.BYE) // the silent caller hung up after 64×T1
		cBye := inDialog(t, "BYE", cInv, 2, "192.0.2.50:5070", "")
		cBye.From().Params.Add("tag", "pbx1")
		cBye.To().Params.Add("tag", tagOf(cInv.From().Params))
		h.fromBackend(t, reparse(t, cBye.String()), pbxAddr)
		h.fromBackend(t, answer(t, nextRequest(t, h.b, sip.BYE).msg, 200, "OK", "", "", ""), backendAddr)
		wantForgotten(t, h, "call-r", string(*bInv.CallID()), string(*cInv.CallID()))
	})
	t.Run("by the back end", func(t *testing.T) {
		h := transferHarness(t, "gw", 5*time.Millisecond)
		bInv, cs := startTransfer(t, h)
		cInv := cs.msg.(*sip.Request)
		h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
		reinv := nextRequest(t, h.a, sip.INVITE).msg
		h.fromCaller(t, answer(t, reinv, 200, "OK", "", "<sip:2001@10.1.1.1>", callerSDP))
		nextRequest(t, h.b, sip.BYE) // the silent back end hung up after 64×T1
		h.fromCaller(t, fromCallerInDialog(t, "BYE", tagOf(reinv.(*sip.Request).From().Params), 3, "", "", ""))
		h.fromBackend(t, answer(t, nextRequest(t, h.b, sip.BYE).msg, 200, "OK", "", "", ""), pbxAddr)
		wantForgotten(t, h, "call-r", string(*bInv.CallID()), string(*cInv.CallID()))
	})
}

// wantForgotten waits until the engine finds nothing by any of ids.
func wantForgotten(t *testing.T, h *harness, ids ...string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.e.mu.RLock()
		var left []string
		for _, id := range ids {
			if h.e.byA[id] != nil || h.e.byB[id] != nil || h.e.tombs.has(id) {
				left = append(left, id)
			}
		}
		h.e.mu.RUnlock()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) { // 64×T1 is 320 ms
			t.Fatalf("the ended call is still found by %q long after 64×T1", left)
		}
	}
}

// A transfer that failed while its 100 Trying NOTIFY is unanswered still
// gets its final NOTIFY once that is answered: a second REFER meanwhile
// waits (491), it does not take over the subscription and drop the
// final NOTIFY the first transfer owes (RFC 3515 §2.4.7: the
// subscription ends with a terminated NOTIFY). Once that is out, a REFER
// is taken even before it is answered.
func TestReferAgainWhileNotifyUnanswered(t *testing.T) {
	h := transferHarness(t, "gw", 0)
	bInv, trying, cs := referred(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 486, "Busy Here", "pbx1", "", ""), pbxAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	h.b.none(t, 30*time.Millisecond) // the 486 waits for the answer to the 100 Trying

	h.fromBackend(t, referFrom(t, bInv, 8, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	wantStatus(t, h.b.next(t), 491)
	h.fromBackend(t, answer(t, trying.msg, 200, "OK", "", "", ""), backendAddr)
	final := h.b.next(t)
	wantSipfrag(t, final, "SIP/2.0 486", "terminated")
	if ev := headerValue(final.msg.(*sip.Request), "Event"); ev != "refer;id=7" {
		t.Fatalf("final NOTIFY of Event %q, want the first REFER's", ev)
	}
	// The final NOTIFY is out, unanswered: a REFER now is taken.
	h.fromBackend(t, referFrom(t, bInv, 9, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	wantStatus(t, h.b.next(t), 202)
}

// The transferor's answer to a NOTIFY we relayed to it (the caller's own,
// CSeq between two of the transfer's NOTIFYs on that leg) is relayed back,
// not taken for an answer to one of ours; so is leg C's once it has
// replaced the transferor.
func TestReferNotifyAnswerOfARelayedNotify(t *testing.T) {
	h := transferHarness(t, "gw", 0)
	_, trying, cs := referred(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, trying.msg, 200, "OK", "", "", ""), backendAddr)
	c := whole(h, "call-r")
	c.mu.Lock()
	tag := c.a.localTag
	c.mu.Unlock()

	h.fromCaller(t, fromCallerInDialog(t, "NOTIFY", tag, 5, "Event: message-summary\nSubscription-State: active\n", "", ""))
	relayed := nextRequest(t, h.b, sip.NOTIFY)
	if ev := headerValue(relayed.msg.(*sip.Request), "Event"); ev != "message-summary" {
		t.Fatalf("relayed NOTIFY of Event %q", ev)
	}
	h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
	ringing := nextRequest(t, h.b, sip.NOTIFY)
	wantSipfrag(t, ringing, "SIP/2.0 180", "active")

	h.fromBackend(t, answer(t, relayed.msg, 200, "OK", "", "", ""), backendAddr)
	wantNotifyAnswer(t, h, 5)

	// Once leg C has replaced the transferor, the caller's NOTIFY goes
	// to leg C, and its answer comes back likewise.
	h.fromBackend(t, answer(t, ringing.msg, 200, "OK", "", "", ""), backendAddr)
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
	reinv := nextRequest(t, h.a, sip.INVITE)
	h.fromCaller(t, answer(t, reinv.msg, 200, "OK", "", "<sip:2001@10.1.1.1>", callerSDP))
	final := nextRequest(t, h.b, sip.NOTIFY)
	wantSipfrag(t, final, "SIP/2.0 200", "terminated")
	h.fromBackend(t, answer(t, final.msg, 200, "OK", "", "", ""), backendAddr)
	h.fromCaller(t, fromCallerInDialog(t, "NOTIFY", tag, 6, "Event: message-summary\nSubscription-State: active\n", "", ""))
	toC := nextRequest(t, h.b, sip.NOTIFY)
	if toC.dst != pbxAddr {
		t.Fatalf("the caller's NOTIFY went to %s after the transfer", toC.dst)
	}
	h.fromBackend(t, answer(t, toC.msg, 200, "OK", "", "", ""), pbxAddr)
	wantNotifyAnswer(t, h, 6)
}

// wantNotifyAnswer waits for the caller's answer to its NOTIFY of CSeq
// cseq, a 200.
func wantNotifyAnswer(t *testing.T, h *harness, cseq uint32) {
	t.Helper()
	for {
		res, ok := h.a.next(t).msg.(*sip.Response)
		if ok && res.CSeq().MethodName == sip.NOTIFY {
			if res.StatusCode != 200 || res.CSeq().SeqNo != cseq {
				t.Fatalf("the caller's NOTIFY got %d for CSeq %d, want 200 for %d", res.StatusCode, res.CSeq().SeqNo, cseq)
			}
			return
		}
	}
}

// The same the other way: the caller, transferring, answers a NOTIFY the
// back end sent it mid-transfer; the answer goes back to the back end.
func TestCallerReferNotifyAnswerOfARelayedNotify(t *testing.T) {
	h := transferHarness(t, "um", 0)
	bInv, _, cs := startCallerTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	n := inDialog(t, "NOTIFY", bInv, 10, "203.0.113.5:5062", "")
	n.To().Params.Add("tag", tagOf(bInv.From().Params))
	n.AppendHeader(sip.NewHeader("Event", "message-summary"))
	n.AppendHeader(sip.NewHeader("Subscription-State", "active"))
	h.fromBackend(t, reparse(t, n.String()), backendAddr)
	relayed := nextRequest(t, h.a, sip.NOTIFY)
	if ev := headerValue(relayed.msg.(*sip.Request), "Event"); ev != "message-summary" {
		t.Fatalf("relayed NOTIFY of Event %q", ev)
	}
	h.fromBackend(t, answer(t, cInv, 180, "Ringing", "pbx1", "", ""), pbxAddr)
	wantSipfrag(t, nextRequest(t, h.a, sip.NOTIFY), "SIP/2.0 180", "active")
	h.fromCaller(t, answer(t, relayed.msg, 200, "OK", "", "", ""))
	for {
		res, ok := h.b.next(t).msg.(*sip.Response)
		if ok && res.CSeq().MethodName == sip.NOTIFY {
			if res.StatusCode != 200 || res.CSeq().SeqNo != 10 {
				t.Fatalf("the back end's NOTIFY got %d for CSeq %d", res.StatusCode, res.CSeq().SeqNo)
			}
			return
		}
	}
}
