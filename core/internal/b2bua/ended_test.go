package b2bua

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An ended call is kept 64×T1 to absorb retransmissions, but only with
// what that needs: after the BYE, the caller's retransmitted BYE and the
// back end's retransmitted 2xx are still answered from the small record,
// and the INVITE's body, its other headers and the media session are gone.
func TestEndedCallKeepsOnlyWhatRetransmissionsNeed(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, tag := confirmedCall(t, h)
	bye := fromCallerInDialog(t, "BYE", tag, 2, "", "", "")
	h.fromCaller(t, bye)
	wantStatus(t, h.a.next(t), 200)
	bBye := wantRequest(t, h.b.next(t), sip.BYE)
	h.fromBackend(t, answer(t, bBye, 200, "OK", "", "", ""), backendAddr)

	h.e.mu.RLock()
	c := h.e.byA["call-r"]
	h.e.mu.RUnlock()
	if c == nil {
		t.Fatal("the ended call is no longer findable: late retransmissions would be taken for new calls")
	}
	c.mu.Lock()
	inv, media, offer := c.a.invite, c.media, c.b.offer
	c.mu.Unlock()
	if _, ok := media.(endedMedia); !ok {
		t.Errorf("an ended call still holds its media session %T", media)
	}
	if len(inv.Body()) != 0 || inv.GetHeader("Content-Type") != nil || inv.GetHeader("Diversion") != nil || offer != nil {
		t.Errorf("an ended call still holds its INVITE's body or headers no answer copies:\n%s", inv)
	}
	if inv.From() == nil || inv.To() == nil || inv.CallID() == nil || inv.CSeq() == nil || inv.Via() == nil {
		t.Fatalf("an ended call lost the INVITE's dialog headers:\n%s", inv)
	}

	// The caller did not get our 200 and sends its BYE again.
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 2, "", "", ""))
	if res := wantStatus(t, h.a.next(t), 200); res.CSeq().MethodName != sip.BYE {
		t.Fatalf("the retransmitted BYE got:\n%s", res)
	}
	h.b.none(t, 50*time.Millisecond) // and no second BYE to the back end

	// The back end's 2xx to the INVITE comes again (it lost our ACK).
	h.fromBackend(t, answer(t, bInv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\n"), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	h.a.none(t, 50*time.Millisecond)

	if recs := h.records(t); len(recs) != 1 || recs[0].Reason != "caller hung up" {
		t.Fatalf("CDRs = %+v", recs)
	}
}
