package b2bua

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

var pbxAddr = netip.MustParseAddrPort("192.0.2.50:5070")

func transferHarness(t *testing.T) *harness {
	t.Helper()
	tbl := &router.Table{Gateways: []router.Gateway{{Name: "pbx", Addresses: []netip.Addr{pbxAddr.Addr()}}}}
	return newHarness(t, Config{Peers: map[string]Peer{"gw": {ReferMode: ReferLocal}}, Table: func() *router.Table { return tbl }})
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
	bInv, _ := confirmedCall(t, h)
	h.fromBackend(t, referFrom(t, bInv, 7, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	wantStatus(t, h.b.next(t), 202)
	wantSipfrag(t, h.b.next(t), "SIP/2.0 100", "active")
	cs := h.b.next(t)
	wantRequest(t, cs, sip.INVITE)
	return bInv, cs
}

// R-ID-8: UM transfers an answered call with REFER; the caller (CUCM)
// never sees it: the engine answers 202, calls the target itself, moves
// the caller's media there with a re-INVITE and reports in NOTIFYs; UM
// hangs up. Leg C is then the call's leg B.
func TestReferHandledLocally(t *testing.T) {
	h := transferHarness(t)
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
	wantSipfrag(t, h.b.next(t), "SIP/2.0 180", "active")
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
	h := transferHarness(t)
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
	tbl := &router.Table{Gateways: []router.Gateway{{Name: "pbx", Addresses: []netip.Addr{pbxAddr.Addr()}}}}
	h := newHarness(t, Config{T1: 5 * time.Millisecond, Peers: map[string]Peer{"gw": {ReferMode: ReferLocal}}, Table: func() *router.Table { return tbl }})
	bInv, cs := startTransfer(t, h)
	cInv := cs.msg.(*sip.Request)
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>",
		"v=0\no=pbx 1 1 IN IP4 192.0.2.50\ns=-\nc=IN IP4 192.0.2.50\nt=0 0\nm=audio 7000 RTP/AVP 0\n"), pbxAddr)
	reinv := wantRequest(t, h.a.next(t), sip.INVITE)
	h.fromCaller(t, answer(t, reinv, 200, "OK", "", "<sip:2001@10.1.1.1>", callerSDP))
	for {
		s := h.b.next(t)
		if req, ok := s.msg.(*sip.Request); ok && req.Method == sip.BYE {
			if s.dst != backendAddr || string(*req.CallID()) != string(*bInv.CallID()) {
				t.Fatalf("BYE to %s:\n%s", s.dst, req)
			}
			return
		}
	}
}

func TestReferLocalTargetBusy(t *testing.T) {
	h := transferHarness(t)
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
