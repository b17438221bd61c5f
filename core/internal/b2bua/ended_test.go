package b2bua

import (
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

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
	for name, r := range map[string]*retrans{"INVITE to the back end": c.b.inviteTx, "2xx to the caller": c.a.final, "BYE to the back end": c.b.byeTx} {
		if r == nil || !r.stopped || r.t != nil {
			t.Errorf("the %s transaction of an ended call still holds its timer and callbacks: %+v", name, r)
		}
	}
	if c.target.Call != nil {
		t.Error("an ended call still holds the router's view of it")
	}
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

// Ended calls are forgotten 64×T1 after each ended, not before and not
// all at once: one timer serves them in the order they ended.
func TestEndedCallsForgottenInTurn(t *testing.T) {
	e := New(Config{T1: time.Millisecond}, nil, nil, nil, nil) // 64 ms
	ended := func(id string) (*call, time.Time) {
		c := &call{e: e, a: aLeg{callID: id + "-a"}, b: bLeg{callID: id + "-b"}, keyA: id + "-a", keyB: id + "-b"}
		e.mu.Lock()
		e.byA[c.a.callID], e.byB[c.b.callID] = c, c
		e.mu.Unlock()
		at := time.Now()
		e.forgetLater(c)
		return c, at
	}
	known := func(c *call) bool {
		e.mu.RLock()
		defer e.mu.RUnlock()
		return e.byA[c.a.callID] == c || e.byB[c.b.callID] == c
	}
	gone := func(c *call) time.Time {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if !known(c) {
				return time.Now()
			}
		}
		t.Fatalf("call %s never forgotten", c.a.callID)
		return time.Time{}
	}
	c1, at1 := ended("one")
	time.Sleep(40 * time.Millisecond)
	c2, at2 := ended("two")
	c3, at3 := ended("three")
	if g := gone(c1); g.Sub(at1) < 64*time.Millisecond {
		t.Fatalf("forgotten %v after it ended, before 64×T1", g.Sub(at1))
	}
	if time.Since(at2) < 64*time.Millisecond && !known(c2) {
		t.Fatal("the later call was forgotten with the first, before its time")
	}
	for _, x := range []struct {
		c  *call
		at time.Time
	}{{c2, at2}, {c3, at3}} {
		if g := gone(x.c); g.Sub(x.at) < 64*time.Millisecond {
			t.Fatalf("forgotten %v after it ended, before 64×T1", g.Sub(x.at))
		}
	}
	// The queue works again once empty.
	c4, at4 := ended("four")
	if g := gone(c4); g.Sub(at4) < 64*time.Millisecond {
		t.Fatalf("forgotten %v after it ended, before 64×T1", g.Sub(at4))
	}
}

// Shutdown keeps to its timeout even when the time is up before the calls
// have ended: BYEs nobody answers do not hold it for their 64×T1.
func TestShutdownKeepsItsTimeout(t *testing.T) {
	for range 20 { // the first wait sees the calls ended or the time up, either
		h := newHarness(t, Config{})
		confirmedCall(t, h)
		start := time.Now()
		h.e.Shutdown(0)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Shutdown(0) took %v with a BYE unanswered", d)
		}
	}
}

// A firing of the ended calls' timer costs what it looks at, not what
// waits: calls that have not settled go back in the queue without a copy
// of the whole queue. (At 4,500 calls/s ~144,000 ended calls wait; a
// flood of calls whose callers never ACK our refusal keeps every one of
// them unsettled, and each firing, every 10 ms, copied them all: ~8 MB
// a firing.)
func TestForgetDueCostsWhatItLooksAt(t *testing.T) {
	e := New(Config{T1: time.Minute}, nil, nil, nil, nil) // the setup, slow under -race, must not reach the looks
	now := time.Now()
	q := &e.ended
	q.mu.Lock()
	unsettled := func(look time.Time) endedCall {
		return endedCall{due: now.Add(64 * time.Minute), look: look, c: &call{e: e, state: confirmed}}
	}
	q.calls = append(q.calls, unsettled(now.Add(-time.Millisecond)))
	for range 100_000 {
		q.calls = append(q.calls, unsettled(now.Add(30*time.Second)))
	}
	q.mu.Unlock()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	e.forgetDue()
	runtime.ReadMemStats(&after)
	q.mu.Lock()
	defer q.mu.Unlock()
	defer func() { // no firing later, in other tests' time
		q.calls, q.head = nil, 0
		q.t.Stop()
	}()
	if n := len(q.calls) - q.head; n != 100_001 {
		t.Fatalf("%d calls wait after the firing, want all 100,001", n)
	}
	for i := q.head + 1; i < len(q.calls); i++ {
		if q.calls[i].look.Before(q.calls[i-1].look) {
			t.Fatalf("the queue is out of order at %d", i-q.head)
		}
	}
	if b := after.TotalAlloc - before.TotalAlloc; b > 1<<20 { // a copy of the queue is 5.5 MB; the rest of the process allocates meanwhile too
		t.Fatalf("a firing that looked at one call allocated %d KiB", b>>10)
	}
}

// A confirmed call — what every active call is — keeps of its setup only
// what the dialog needs (settle): the caller's INVITE without its body
// and the headers no answer copies, no INVITE or offer towards leg B and
// no router's view; a retransmitted INVITE still gets our 200, the back
// end's retransmitted 2xx our ACK, and our BYE to the caller its dialog's
// From and To; the CDR still names the caller.
func TestConfirmedCallKeepsOnlyTheDialog(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, tag := confirmedCall(t, h)
	h.e.mu.RLock()
	c := h.e.byA["call-r"]
	h.e.mu.RUnlock()
	c.mu.Lock()
	inv, bInvite, offer, view := c.a.invite, c.b.invite, c.b.offer, c.target.Call
	c.mu.Unlock()
	h.media.mu.Lock()
	settled := h.media.settled
	h.media.mu.Unlock()
	if settled != 1 {
		t.Errorf("the media session was settled %d times at the call's confirmation, want once", settled)
	}
	if len(inv.Body()) != 0 || inv.GetHeader("Content-Type") != nil || inv.GetHeader("Contact") != nil || bInvite != nil || offer != nil || view != nil {
		t.Errorf("a confirmed call still holds its setup: leg B's INVITE %d B, offer %d B, router's view %v, the caller's INVITE:\n%s",
			len(bInvite), len(offer), view != nil, inv)
	}

	h.fromCaller(t, invite(t, "call-r", "r1", callerSDP))
	if res := wantStatus(t, h.a.next(t), 200); tagOf(res.To().Params) != tag || len(res.Body()) == 0 {
		t.Fatalf("the retransmitted INVITE got:\n%s", res)
	}
	h.fromBackend(t, answer(t, bInv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\n"), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)

	c.hangup("test")
	bye := wantRequest(t, h.a.next(t), sip.BYE)
	if from, to := bye.From(), bye.To(); from == nil || to == nil || tagOf(from.Params) != tag || from.Address.User != "1001" ||
		to.Address.User != "2001" || tagOf(to.Params) != "caller1" || to.DisplayName != "Alice" {
		t.Errorf("our BYE to the caller is not in its dialog:\n%s", bye)
	}
	h.fromCaller(t, answer(t, bye, 200, "OK", "", "", ""))
	bBye := wantRequest(t, h.b.next(t), sip.BYE)
	h.fromBackend(t, answer(t, bBye, 200, "OK", "", "", ""), backendAddr)
	if recs := h.records(t); len(recs) != 1 || recs[0].From != "2001" || recs[0].To == "" {
		t.Fatalf("CDRs = %+v, want the call from 2001", recs)
	}
}

// Every active call holds its call struct: with the 8-byte header of an
// object of pointers above 512 B it stays in the 1,152-byte size class
// (1,280 with the transfer's notifier inline).
func TestCallSize(t *testing.T) {
	if got := unsafe.Sizeof(call{}); got+8 > 1152 {
		t.Errorf("a call is %d bytes, past the 1,152-byte size class", got)
	}
}

// A settled call (the caller's ACK taken) meets the setup's late
// messages and the dialog's next ones: a CANCEL of the answered INVITE
// gets its 200 and changes nothing (no CANCEL to leg B), a re-INVITE
// (hold) from the caller goes through the media session to leg B and its
// answer back, and leg B's BYE ends the call with the CDR it had before
// settling: the caller, the gateway, the back end, the 200. The
// re-INVITE's ACK settles the media session again.
func TestSettledCallLateCancelReinviteBye(t *testing.T) {
	h := newHarness(t, Config{})
	inv, tag := confirmedCall(t, h)
	h.fromCaller(t, parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKr1;rport\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-r\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"))
	wantStatus(t, h.a.next(t), 200)
	h.b.none(t, 50*time.Millisecond)
	h.a.none(t, 10*time.Millisecond)

	hold := strings.Replace(callerSDP, "m=audio", "a=sendonly\nm=audio", 1)
	h.fromCaller(t, fromCallerInDialog(t, "INVITE", tag, 2, "", "application/sdp", strings.ReplaceAll(hold, "\n", "\r\n")))
	wantStatus(t, h.a.next(t), 100)
	re := wantRequest(t, h.b.next(t), sip.INVITE)
	if len(re.Body()) == 0 {
		t.Fatalf("the re-INVITE reached leg B without its offer:\n%s", re)
	}
	h.fromBackend(t, answer(t, re, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\n"), backendAddr)
	if res := wantStatus(t, h.a.next(t), 200); len(res.Body()) == 0 || res.CSeq().SeqNo != 2 {
		t.Fatalf("the caller's re-INVITE got:\n%s", res)
	}
	h.fromCaller(t, fromCallerInDialog(t, "ACK", tag, 2, "", "", ""))
	wantRequest(t, h.b.next(t), sip.ACK)
	// The re-INVITE's negotiation is over too: the session settles again,
	// else it would keep it for the rest of the call.
	h.media.mu.Lock()
	settled := h.media.settled
	h.media.mu.Unlock()
	if settled != 2 {
		t.Errorf("the media session settled %d times, want 2: at the call's ACK and at the re-INVITE's", settled)
	}

	h.fromBackend(t, inDialog(t, "BYE", inv, 1, "203.0.113.5:5062", ""), backendAddr)
	wantStatus(t, h.b.next(t), 200)
	wantRequest(t, h.a.next(t), sip.BYE)
	recs := h.records(t)
	if len(recs) != 1 || recs[0].From != "2001" || recs[0].To == "" || recs[0].Backend == "" || recs[0].Status != 200 ||
		recs[0].Reason != "callee hung up" || recs[0].Answer.IsZero() {
		t.Fatalf("CDRs = %+v", recs)
	}
}
