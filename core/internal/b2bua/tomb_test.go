package b2bua

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// taken collects what the engine sent to a recorder since the last call,
// without waiting: the harness's senders record synchronously.
func taken(r *recorder) []string {
	var out []string
	for {
		select {
		case <-r.ch:
			r.mu.Lock()
			out = append(out, r.msgs[0].msg.String())
			r.msgs = r.msgs[1:]
			r.mu.Unlock()
		default:
			return out
		}
	}
}

// whole returns the call struct the engine finds by leg A's Call-ID id,
// nil once it is a tombstone or forgotten.
func whole(h *harness, id string) *call {
	h.e.mu.RLock()
	defer h.e.mu.RUnlock()
	return h.e.byA[id]
}

// buried waits until the call of Call-ID id is a tombstone.
func buried(t *testing.T, h *harness, id string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		h.e.mu.RLock()
		n := h.e.tombs.len()
		h.e.mu.RUnlock()
		if whole(h, id) == nil && n == 1 {
			return
		}
	}
	t.Fatalf("the ended call %s never became a tombstone", id)
}

// A tombstone answers every retransmission and stray request of its
// ended call exactly as the whole ended call did: the same messages, byte
// for byte, to the same side. The probes run once against the ended call
// while it is still whole (the first T1 after its end), then again once
// it is a tombstone, and the two transcripts must be equal; what the
// ended call answers is checked too, so that the comparison compares
// something.
func TestTombstoneAnswersAsTheEndedCall(t *testing.T) {
	h := newHarness(t, Config{}) // T1 500 ms: the first pass runs well within it
	bInv, tag := confirmedCall(t, h)
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 2, "", "", ""))
	wantStatus(t, h.a.next(t), 200)
	bBye := wantRequest(t, h.b.next(t), sip.BYE)
	h.fromBackend(t, answer(t, bBye, 200, "OK", "", "", ""), backendAddr)
	taken(h.a)
	taken(h.b)

	// What the caller got to its INVITE, and the back end as our ACK: a
	// retransmission gets them again.
	c := whole(h, "call-r")
	if c == nil {
		t.Fatal("the ended call is not whole right after its end")
	}
	c.mu.Lock()
	last, ack := reparse(t, string(c.a.last)).String(), reparse(t, string(c.b.ack)).String()
	c.mu.Unlock()

	bCall := func(method string, cseq int, toTag string) sip.Message {
		req := inDialog(t, method, bInv, cseq, "203.0.113.5:5062", "")
		req.To().Params.Add("tag", toTag)
		return reparse(t, req.String())
	}
	ourB := tagOf(bInv.From().Params)
	probes := []probe{
		{"BYE again", true, func() sip.Message { return fromCallerInDialog(t, "BYE", tag, 2, "", "", "") }, true, "SIP/2.0 200 OK", "a"},
		{"INVITE again", true, func() sip.Message { return invite(t, "call-r", "r1", callerSDP) }, true, "=last", "a"},
		{"ACK again", true, func() sip.Message {
			return parse(t, "ACK sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack\n"+
				"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
				"Call-ID: call-r\nCSeq: 1 ACK\nContent-Length: 0\n\n")
		}, true, "", ""},
		{"re-INVITE", true, func() sip.Message { return callerRequest(t, "INVITE", tag, 3, "re9", "application/sdp", callerSDP) }, true, "SIP/2.0 500 Server Internal Error", "a"},
		{"OPTIONS", true, func() sip.Message { return fromCallerInDialog(t, "OPTIONS", tag, 4, "", "", "") }, true, "SIP/2.0 200 OK", "a"},
		{"INFO", true, func() sip.Message { return fromCallerInDialog(t, "INFO", tag, 5, "", "", "") }, true, "SIP/2.0 481 Call/Transaction Does Not Exist", "a"},
		{"INFO, other tag", true, func() sip.Message { return fromCallerInDialog(t, "INFO", "other", 5, "", "", "") }, true, "SIP/2.0 501 Not Implemented", "a"},
		{"REFER", true, func() sip.Message {
			return fromCallerInDialog(t, "REFER", tag, 6, "Refer-To: <sip:2002@192.0.2.50>\n", "", "")
		}, true, "SIP/2.0 481 Call/Transaction Does Not Exist", "a"},
		{"CANCEL", true, func() sip.Message {
			return parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKr1;rport\n"+
				"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-r\nCSeq: 1 CANCEL\nContent-Length: 0\n\n")
		}, true, "SIP/2.0 200 OK", "a"},
		{"CANCEL, other branch", true, func() sip.Message {
			return parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKzz;rport\n"+
				"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-r\nCSeq: 1 CANCEL\nContent-Length: 0\n\n")
		}, false, "", ""},
		{"BYE, other tag", true, func() sip.Message { return fromCallerInDialog(t, "BYE", "other", 2, "", "", "") }, false, "", ""},
		{"caller's 481 to an OPTIONS", true, func() sip.Message {
			return answer(t, fromCallerInDialog(t, "OPTIONS", tag, 9, "", "", ""), 481, "Call/Transaction Does Not Exist", "", "", "")
		}, true, "", ""},
		{"2xx again", false, func() sip.Message {
			return answer(t, bInv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\n")
		}, true, "=ack", "b"},
		{"486 to the INVITE", false, func() sip.Message { return answer(t, bInv, 486, "Busy Here", "be2", "", "") }, true, "ACK sip:", "b"},
		{"180 to the INVITE", false, func() sip.Message { return answer(t, bInv, 180, "Ringing", "be1", "", "") }, true, "", ""},
		{"200 to our BYE again", false, func() sip.Message { return answer(t, bBye, 200, "OK", "", "", "") }, true, "", ""},
		{"back end's BYE", false, func() sip.Message { return bCall("BYE", 7, ourB) }, true, "SIP/2.0 200 OK", "b"},
		{"back end's BYE, other tag", false, func() sip.Message { return bCall("BYE", 7, "other") }, true, "SIP/2.0 481 Call/Transaction Does Not Exist", "b"},
		{"back end's re-INVITE", false, func() sip.Message { return bCall("INVITE", 8, ourB) }, true, "SIP/2.0 500 Server Internal Error", "b"},
		{"back end's REFER", false, func() sip.Message { return bCall("REFER", 9, ourB) }, true, "SIP/2.0 481 Call/Transaction Does Not Exist", "b"},
		{"back end's NOTIFY", false, func() sip.Message { return bCall("NOTIFY", 10, ourB) }, true, "SIP/2.0 481 Call/Transaction Does Not Exist", "b"},
		{"back end's SUBSCRIBE", false, func() sip.Message { return bCall("SUBSCRIBE", 11, ourB) }, true, "SIP/2.0 501 Not Implemented", "b"},
		{"back end's OPTIONS", false, func() sip.Message { return bCall("OPTIONS", 12, ourB) }, true, "SIP/2.0 200 OK", "b"},
		{"back end's ACK", false, func() sip.Message { return bCall("ACK", 1, ourB) }, true, "", ""},
		{"BYE from elsewhere", true, func() sip.Message { return fromCallerInDialog(t, "BYE", tag, 2, "", "", "") }, false, "", ""},
		{"2xx from elsewhere", false, func() sip.Message {
			return answer(t, bInv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\n")
		}, false, "", ""},
	}
	run := func(pass string) []string {
		out := runProbes(t, h, pass, probes, map[string]string{"=last": last, "=ack": ack})
		// The caller's INVITE placed again as a new call (the front does
		// so for a Call-ID Has does not know): its retransmission is
		// dropped, another transaction with the Call-ID gets 482.
		h.e.Invite(invite(t, "call-r", "r1", callerSDP), h.inbound(), h.target)
		h.e.Invite(invite(t, "call-r", "r7", callerSDP), h.inbound(), h.target)
		a, b := taken(h.a), taken(h.b)
		if len(a) != 1 || !strings.HasPrefix(a[0], "SIP/2.0 482 ") || len(b) > 0 {
			t.Errorf("%s: the INVITE placed again sent the caller %q, the back end %q; want one 482 to the caller", pass, a, b)
		}
		return out // the 482's To tag is the new call's own: not compared
	}
	compareWholeAndTomb(t, h, run)

	// A new INVITE with the ended call's Call-ID (another branch) is a new
	// call: the tombstone gives it up.
	if h.e.Handle(invite(t, "call-r", "r2", callerSDP), h.inbound()) {
		t.Fatal("a new INVITE with an ended call's Call-ID was taken by its tombstone")
	}
	if h.e.Has(invite(t, "call-r", "r3", callerSDP)) {
		t.Fatal("the tombstone is still found after a new call took its Call-ID")
	}
}

// buriedCall is a harness (T1 5 ms) whose call call-r was answered and
// hung up by the caller and is a tombstone now; it returns leg B's INVITE
// and our tag towards the caller.
func buriedCall(t *testing.T) (*harness, *sip.Request, string) {
	t.Helper()
	h := newHarness(t, Config{T1: 5 * time.Millisecond})
	bInv, tag := confirmedCall(t, h)
	bye := callerHangsUp(t, h, tag)
	h.fromBackend(t, answer(t, bye, 200, "OK", "", "", ""), backendAddr)
	buried(t, h, "call-r")
	return h, bInv, tag
}

// A message with an ended call's Call-ID from an address that is none of
// its peers' costs the tombstone nothing: the record is checked in place,
// not copied or decoded.
func TestTombstoneIgnoresStrangersForFree(t *testing.T) {
	h, bInv, tag := buriedCall(t)
	h.e.mu.RLock()
	rec, _ := h.e.tombs.lookup("call-r", time.Now(), nil)
	h.e.mu.RUnlock()
	bID := string(*bInv.CallID())
	for _, c := range []struct {
		id   string
		src  netip.AddrPort
		want bool
	}{{"call-r", callerAddr, true}, {bID, backendAddr, true}, {"call-r", backendAddr, false}, {bID, callerAddr, false}, {"other", callerAddr, false}} {
		if got := tombFrom(rec, c.id, c.src.Addr()); got != c.want {
			t.Errorf("tombFrom(%s, %s) = %v, want %v", c.id, c.src, got, c.want)
		}
	}
	stranger := netip.MustParseAddrPort("198.18.0.7:5060")
	in := Inbound{Transport: "udp", Source: stranger, Local: frontAddr, Reply: senderTo{h.a, stranger}, Requests: senderTo{h.a, stranger}}
	msg := fromCallerInDialog(t, "BYE", tag, 2, "", "", "")
	if allocs := testing.AllocsPerRun(100, func() {
		if h.e.Handle(msg, in) {
			t.Fatal("a stranger's BYE was taken")
		}
	}); allocs != 0 {
		t.Errorf("a stranger's message to a tombstone cost %v allocations, want 0", allocs)
	}
}

// probe is one message to an ended call and what it must get.
type probe struct {
	name   string
	caller bool // from the caller, else from the back end; "… from elsewhere" from neither
	msg    func() sip.Message
	taken  bool   // Handle reports it the call's
	want   string // the start of the one answer, "" none; a key of runProbes's bytes: those
	to     string // "a" or "b": where the answer goes
}

// runProbes sends each probe and checks what it got; it returns the
// transcript. bytes names whole messages a want may stand for.
func runProbes(t *testing.T, h *harness, pass string, probes []probe, bytes map[string]string) []string {
	t.Helper()
	elsewhere := netip.MustParseAddrPort("198.18.0.7:5060")
	var out []string
	for _, p := range probes {
		var ok bool
		switch {
		case strings.HasSuffix(p.name, "from elsewhere"):
			ok = h.e.Handle(p.msg(), Inbound{Transport: "udp", Source: elsewhere, Local: frontAddr,
				Reply: senderTo{h.a, elsewhere}, Requests: senderTo{h.a, elsewhere}})
		case p.caller:
			ok = h.e.Handle(p.msg(), h.inbound())
		default:
			ok = h.e.Handle(p.msg(), Inbound{Transport: "tcp", Source: backendAddr, Local: frontAddr,
				Reply: senderTo{h.b, backendAddr}, Requests: senderTo{h.b, backendAddr}})
		}
		a, b := taken(h.a), taken(h.b)
		out = append(out, fmt.Sprintf("%s: taken %v\nto caller %q\nto back end %q", p.name, ok, a, b))
		if ok != p.taken {
			t.Errorf("%s, %s: taken %v, want %v", pass, p.name, ok, p.taken)
		}
		got, other := a, b
		if p.to == "b" {
			got, other = b, a
		}
		want := p.want
		if w, ok := bytes[want]; ok {
			want = w
		}
		switch {
		case len(other) > 0 || len(got) > 1 || want == "" && len(got) > 0:
			t.Errorf("%s, %s: sent %q to the %s, %q to the other side; want %q", pass, p.name, got, p.to, other, want)
		case want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], want)):
			t.Errorf("%s, %s: sent %q, want %q", pass, p.name, got, want)
		}
	}
	return out
}

// compareWholeAndTomb runs the probes of run against the ended call
// "call-r" while it is whole, then once it is a tombstone, and compares.
func compareWholeAndTomb(t *testing.T, h *harness, run func(pass string) []string) {
	t.Helper()
	first := run("whole")
	if whole(h, "call-r") == nil {
		t.Fatal("the ended call became a tombstone during the first pass (the machine took T1 for it): nothing compared")
	}
	buried(t, h, "call-r")
	second := run("tombstone")
	for i := range first {
		if first[i] != second[i] {
			t.Errorf("the tombstone answered otherwise than the ended call:\nwhole:     %s\ntombstone: %s", first[i], second[i])
		}
	}
}

// A call that had a re-INVITE each way: the 2xx of either, retransmitted
// after the end, gets our ACK again, from the whole call and from its
// tombstone alike.
func TestTombstoneAnswersReinvitesAsTheEndedCall(t *testing.T) {
	h := newHarness(t, Config{})
	reB, reA, bAck, aAck := reinvitedCall(t, h)
	probes := []probe{
		{"the back end's 2xx to the caller's re-INVITE again", false, func() sip.Message {
			return answer(t, reB, 200, "OK", "", "<sip:um@203.0.113.5:5062;transport=tcp>", beReSDP)
		}, true, "=bAck", "b"},
		{"the caller's 2xx to the back end's re-INVITE again", true, func() sip.Message {
			return answer(t, reA, 200, "OK", "", "<sip:2001@10.1.1.1:5060>", callerSDP)
		}, true, "=aAck", "a"},
		{"a 2xx to a re-INVITE never sent", false, func() sip.Message {
			r := answer(t, reB, 200, "OK", "", "", "")
			r.CSeq().SeqNo = 9
			return reparse(t, r.String())
		}, true, "", ""},
	}
	compareWholeAndTomb(t, h, func(pass string) []string {
		return runProbes(t, h, pass, probes, map[string]string{"=bAck": bAck, "=aAck": aAck})
	})
}

// beReSDP is the back end's SDP in reinvitedCall.
const beReSDP = "v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30002 RTP/AVP 0\n"

// reinvitedCall makes call-r a call that had a re-INVITE each way, then
// ended: it returns our re-INVITE to the back end and to the caller, and
// our ACKs of their 2xx.
func reinvitedCall(t *testing.T, h *harness) (reB, reA *sip.Request, bAck, aAck string) {
	t.Helper()
	bInv, tag := confirmedCall(t, h)

	// The caller's re-INVITE, answered by the back end.
	h.fromCaller(t, callerRequest(t, "INVITE", tag, 2, "re1", "application/sdp", callerSDP))
	wantStatus(t, h.a.next(t), 100)
	reB = wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, reB, 200, "OK", "", "<sip:um@203.0.113.5:5062;transport=tcp>", beReSDP), backendAddr)
	bAck = wantRequest(t, h.b.next(t), sip.ACK).String()
	wantStatus(t, h.a.next(t), 200)
	h.fromCaller(t, parse(t, "ACK sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack2\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		"Call-ID: call-r\nCSeq: 2 ACK\nContent-Length: 0\n\n"))

	// The back end's re-INVITE, answered by the caller.
	ourB := tagOf(bInv.From().Params)
	re := inDialog(t, "INVITE", bInv, 10, "203.0.113.5:5062", beReSDP)
	re.To().Params.Add("tag", ourB)
	h.fromBackend(t, reparse(t, re.String()), backendAddr)
	wantStatus(t, h.b.next(t), 100)
	reA = wantRequest(t, h.a.next(t), sip.INVITE)
	h.fromCaller(t, answer(t, reA, 200, "OK", "", "<sip:2001@10.1.1.1:5060>", callerSDP))
	aAck = wantRequest(t, h.a.next(t), sip.ACK).String()
	wantStatus(t, h.b.next(t), 200)
	ack := inDialog(t, "ACK", bInv, 10, "203.0.113.5:5062", "")
	ack.To().Params.Add("tag", ourB)
	h.fromBackend(t, reparse(t, ack.String()), backendAddr)

	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 3, "", "", ""))
	wantStatus(t, h.a.next(t), 200)
	h.fromBackend(t, answer(t, wantRequest(t, h.b.next(t), sip.BYE), 200, "OK", "", "", ""), backendAddr)
	taken(h.a)
	taken(h.b)

	return reB, reA, bAck, aAck
}

// callerHangsUp sends the caller's BYE of the call with our To tag tag
// and returns our BYE to the back end, not answered yet (with a short T1
// the 200 to the INVITE may come again first: skipped).
func callerHangsUp(t *testing.T, h *harness, tag string) *sip.Request {
	t.Helper()
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 2, "", "", ""))
	for {
		if req, ok := h.b.next(t).msg.(*sip.Request); ok && req.Method == sip.BYE {
			return req
		}
	}
}

// A call that has not settled — its BYE to the back end unanswered —
// stays whole past T1, the BYE still retransmitted and taken; once the
// 200 comes it becomes a tombstone.
func TestUnsettledCallStaysWhole(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond, T2: 40 * time.Millisecond})
	_, tag := confirmedCall(t, h)
	bye := callerHangsUp(t, h, tag)
	time.Sleep(100 * time.Millisecond) // 10×T1
	if whole(h, "call-r") == nil {
		t.Fatal("a call whose BYE is unanswered became a tombstone: its BYE's 200 would find no transaction")
	}
	h.fromBackend(t, answer(t, bye, 200, "OK", "", "", ""), backendAddr)
	buried(t, h, "call-r")
}

// A tombstone is gone 64×T1 after its call ended, not before, and with it
// the arena's chunks: the engine holds nothing of it.
func TestTombstoneExpires(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond}) // 64×T1 = 640 ms
	_, tag := confirmedCall(t, h)
	bye := callerHangsUp(t, h, tag)
	ended := time.Now() // after the end: the check below errs on the strict side
	h.fromBackend(t, answer(t, bye, 200, "OK", "", "", ""), backendAddr)
	buried(t, h, "call-r")
	probe := fromCallerInDialog(t, "BYE", tag, 2, "", "", "")
	for h.e.Has(probe) {
		time.Sleep(2 * time.Millisecond)
		if time.Since(ended) > 5*time.Second {
			t.Fatal("the tombstone never expired")
		}
	}
	if d := time.Since(ended); d < 640*time.Millisecond {
		t.Fatalf("the tombstone expired %v after the call ended, before 64×T1", d)
	}
	if h.e.Handle(probe, h.inbound()) {
		t.Fatal("an expired tombstone still answered")
	}
	h.e.mu.RLock()
	defer h.e.mu.RUnlock()
	if n, idx := h.e.tombs.len(), len(h.e.tombs.idx); n != 0 || idx != 0 {
		t.Fatalf("%d tombstones, %d index entries left", n, idx)
	}
	for _, c := range h.e.tombs.chunks {
		if len(c) != 0 {
			t.Fatalf("an arena chunk still holds %d bytes", len(c))
		}
	}
}

// The arena frees its chunks in the order the tombstones expire, keeps
// the ones still used whole, and finds every live record by either Call-ID.
func TestTombsArena(t *testing.T) {
	var ts tombs
	base := time.Unix(1000, 0)
	const n = 2000
	rec := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("%04d", i), 100)) } // 400 B: several chunks
	for i := range n {
		if !ts.insert(rec(i), fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), base.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("insert %d refused", i)
		}
	}
	if ts.insert(rec(0), "a7", "bx", base) || ts.insert(rec(0), "ax", "b7", base) {
		t.Fatal("a second tombstone for a Call-ID that has one was taken")
	}
	chunks := len(ts.chunks)
	if chunks < 3 {
		t.Fatalf("%d chunks for %d KiB: the test does not span chunks", chunks, n*400>>10)
	}
	next := ts.expire(base.Add(n / 2 * time.Millisecond)) // 0…1000 due
	if want := base.Add((n/2 + 1) * time.Millisecond); !next.Equal(want) {
		t.Fatalf("next due %v, want %v", next, want)
	}
	for i := range n {
		for _, id := range []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)} {
			got, _ := ts.lookup(id, base.Add(n/2*time.Millisecond), nil)
			switch {
			case i <= n/2 && got != nil:
				t.Fatalf("expired %s still found", id)
			case i > n/2 && string(got) != string(rec(i)):
				t.Fatalf("%s: record %.20q, want %.20q", id, got, rec(i))
			}
		}
	}
	if len(ts.chunks) >= chunks || len(ts.spare) == 0 {
		t.Fatalf("chunks %d → %d, %d spare: none freed", chunks, len(ts.chunks), len(ts.spare))
	}
	if !ts.expire(base.Add(time.Hour)).IsZero() || ts.len() != 0 || len(ts.idx) != 0 || len(ts.chunks) != 1 || len(ts.chunks[0]) != 0 {
		t.Fatalf("after all expired: %d tombstones, %d index entries, chunks %d", ts.len(), len(ts.idx), len(ts.chunks))
	}
}

// At its cap the arena forgets the oldest tombstone for each new one,
// counted, and holds no more than the cap's records: a flood of ended
// calls costs bounded memory however long it lasts.
func TestTombsCap(t *testing.T) {
	ts := tombs{max: 100}
	far := time.Now().Add(time.Hour)                                                        // nothing expires: only the cap frees
	rec := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("%05d", i), 80)) } // 400 B
	const n = 10_000
	for i := range n {
		if !ts.insert(rec(i), fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), far) {
			t.Fatalf("insert %d refused", i)
		}
		if ts.len() > ts.max {
			t.Fatalf("after insert %d: %d tombstones, cap %d", i, ts.len(), ts.max)
		}
	}
	if ts.evicted != n-100 {
		t.Fatalf("evicted %d, want %d", ts.evicted, n-100)
	}
	for i := range n {
		got, _ := ts.lookup(fmt.Sprintf("b%d", i), time.Now(), nil)
		switch {
		case i < n-100 && got != nil:
			t.Fatalf("evicted tombstone %d still found", i)
		case i >= n-100 && string(got) != string(rec(i)):
			t.Fatalf("tombstone %d: %.20q", i, got)
		}
	}
	if len(ts.idx) != 2*100 || len(ts.ring) > 2*ts.max+1 {
		t.Fatalf("index %d entries, ring %d slots for %d tombstones", len(ts.idx), len(ts.ring), ts.len())
	}
	held := 0
	for _, c := range ts.chunks {
		held += cap(c)
	}
	if limit := (100*400/tombChunk + 2) * tombChunk; held > limit {
		t.Fatalf("chunks hold %d KiB for 100 records of 400 B", held>>10)
	}
}

// The engine takes its cap from Config.MaxEnded, DefaultMaxEnded when 0.
func TestMaxEndedConfig(t *testing.T) {
	if h := newHarness(t, Config{}); h.e.tombs.max != DefaultMaxEnded {
		t.Errorf("default cap %d, want %d", h.e.tombs.max, DefaultMaxEnded)
	}
	h := newHarness(t, Config{MaxEnded: 7})
	if h.e.tombs.max != 7 {
		t.Errorf("cap %d, want 7", h.e.tombs.max)
	}
	if kept, evicted := h.e.Ended(); kept != 0 || evicted != 0 {
		t.Errorf("a new engine keeps %d ended calls, evicted %d", kept, evicted)
	}
}

// A caller's late 481 to a keep-alive OPTIONS of a call that has ended
// sends nothing: no BYE to the back end, whose dialog is over.
func TestLateKeepAlive481AfterEnd(t *testing.T) {
	h := newHarness(t, Config{KeepAlive: KeepAliveOptions, KeepAliveInterval: 30 * time.Millisecond})
	_, tag := confirmedCall(t, h)
	var opt *sip.Request
	for opt == nil {
		if req, ok := h.a.next(t).msg.(*sip.Request); ok && req.Method == sip.OPTIONS {
			opt = req
		}
	}
	h.fromCaller(t, fromCallerInDialog(t, "BYE", tag, 2, "", "", ""))
	bye := wantRequest(t, h.b.next(t), sip.BYE)
	h.fromBackend(t, answer(t, bye, 200, "OK", "", "", ""), backendAddr)
	taken(h.b)
	h.fromCaller(t, answer(t, opt, 481, "Call/Transaction Does Not Exist", "", "", ""))
	if got := taken(h.b); len(got) > 0 {
		t.Fatalf("a late 481 to a keep-alive of the ended call sent the back end %q", got)
	}
}

// Our last answer to the INVITE, and our ACK of the caller's 2xx to our
// re-INVITE, go, when the INVITE or the 2xx comes again, where the whole
// call sends them: to the caller as its messages came, never on another
// connection or to another port of the same host, which would hand the
// dialog (our tag, Contact and SDP) to whoever sent a copy from there.
func TestTombstoneAnswersOnlyTheCaller(t *testing.T) {
	h := newHarness(t, Config{})
	_, reA, _, aAck := reinvitedCall(t, h)
	again := []struct {
		name string
		msg  func() sip.Message
		want string
	}{
		{"INVITE", func() sip.Message { return invite(t, "call-r", "r1", callerSDP) }, "SIP/2.0 200 "},
		{"2xx to our re-INVITE", func() sip.Message {
			return answer(t, reA, 200, "OK", "", "<sip:2001@10.1.1.1:5060>", callerSDP)
		}, aAck},
	}
	other := newRecorder()
	otherPort := netip.AddrPortFrom(callerAddr.Addr(), callerAddr.Port()+1)
	froms := []Inbound{
		{Transport: "udp", Source: otherPort, Local: frontAddr, Reply: senderTo{other, otherPort}, Requests: senderTo{other, otherPort}},
		{Transport: "tcp", Source: callerAddr, Local: frontAddr, Reply: senderTo{other, callerAddr}, Requests: senderTo{other, callerAddr}},
	}
	probe := func(pass string) {
		for _, m := range again {
			for _, in := range froms {
				if !h.e.Handle(m.msg(), in) {
					t.Errorf("%s: the %s again over %s from %s was not taken", pass, m.name, in.Transport, in.Source)
				}
				if got := taken(other); len(got) > 0 {
					t.Errorf("%s: the %s again over %s from %s got %q there", pass, m.name, in.Transport, in.Source, got)
				}
			}
			taken(h.a)
			if !h.e.Handle(m.msg(), h.inbound()) {
				t.Errorf("%s: the caller's %s again was not taken", pass, m.name)
			}
			if got := taken(h.a); len(got) != 1 || !strings.HasPrefix(got[0], m.want) {
				t.Errorf("%s: the caller's %s again got %q, want %.40q", pass, m.name, got, m.want)
			}
		}
	}
	probe("whole")
	if whole(h, "call-r") == nil {
		t.Fatal("the ended call became a tombstone during the first pass: nothing compared")
	}
	buried(t, h, "call-r")
	probe("tombstone")
}

// A tombstone is unfindable once its time is up even when one made
// before it is due later: calls settle in another order than they end
// (one whose BYE took a few T1 to be answered is buried after calls that
// ended after it), and expire frees the ring from its head only.
func TestTombstoneDueOutOfOrder(t *testing.T) {
	var ts tombs
	base := time.Unix(1000, 0)
	if !ts.insert([]byte("late"), "a1", "b1", base.Add(2*time.Second)) || !ts.insert([]byte("early"), "a2", "b2", base.Add(time.Second)) {
		t.Fatal("insert refused")
	}
	now := base.Add(1500 * time.Millisecond)
	ts.expire(now)
	for _, id := range []string{"a2", "b2"} {
		if rec, _ := ts.lookup(id, now, nil); rec != nil {
			t.Errorf("%s: the tombstone due %v is still found at %v", id, time.Second, 1500*time.Millisecond)
		}
	}
	if rec, _ := ts.lookup("a1", now, nil); string(rec) != "late" {
		t.Errorf("a1: record %q, want the one not due yet", rec)
	}
}

// countSender counts what it is given: answers that start with want in
// ok, others in bad.
type countSender struct {
	ok, bad *atomic.Int64
	want    string
}

func (s countSender) Send(b []byte) {
	if strings.HasPrefix(string(b), s.want) {
		s.ok.Add(1)
	} else {
		s.bad.Add(1)
	}
}

// Retransmissions racing the call's change into a tombstone (T1 of 2 ms,
// eight senders at once, under -race): each one taken gets exactly one
// answer, the right one, whole or tombstone, none is left to the front,
// and the call ends up one.
func TestTombstoneConversionRace(t *testing.T) {
	for round := range 5 {
		h := newHarness(t, Config{T1: 2 * time.Millisecond})
		_, tag := confirmedCall(t, h)
		bye := callerHangsUp(t, h, tag)
		h.fromBackend(t, answer(t, bye, 200, "OK", "", "", ""), backendAddr)
		var ok, bad, took, missed atomic.Int64
		var wg sync.WaitGroup
		stop := time.Now().Add(30 * time.Millisecond) // the call converts after 2 ms, retried every 2 ms
		for g := range 8 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					in := h.inbound()
					in.Reply = countSender{&ok, &bad, "SIP/2.0 200 "}
					m := fromCallerInDialog(t, "BYE", tag, 2, "", "", "")
					if g%2 == 1 {
						m = fromCallerInDialog(t, "OPTIONS", tag, 9, "", "", "")
					}
					if h.e.Handle(m, in) {
						took.Add(1)
					} else {
						missed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if took.Load() == 0 || missed.Load() != 0 || took.Load() != ok.Load() || bad.Load() != 0 {
			t.Fatalf("round %d: %d taken, %d not, %d answered 200, %d otherwise", round, took.Load(), missed.Load(), ok.Load(), bad.Load())
		}
		buried(t, h, "call-r")
	}
}

// A call the back end refused (and we ACKed the refusal) settles as an
// answered one does once the caller has ACKed our refusal: it becomes a
// tombstone, which answers as it did. Else a flood of calls that fail —
// the cheapest an attacker can make: any number the back end refuses —
// kept every one whole for 64×T1, the heap the tombstones are to spare.
func TestRefusedCallBecomesTombstone(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "call-r", "r1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	bInv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, bInv, 486, "Busy Here", "be1", "", ""), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	res := wantStatus(t, h.a.next(t), 486)
	tag := tagOf(res.To().Params)
	callerAck := func() sip.Message { return refusalAck(t, tag) }
	h.fromCaller(t, callerAck())
	last := res.String()

	probes := []probe{
		{"INVITE again", true, func() sip.Message { return invite(t, "call-r", "r1", callerSDP) }, true, "=last", "a"},
		{"ACK again", true, callerAck, true, "", ""},
		{"CANCEL", true, func() sip.Message {
			return parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKr1;rport\n"+
				"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-r\nCSeq: 1 CANCEL\nContent-Length: 0\n\n")
		}, true, "SIP/2.0 200 OK", "a"},
		{"OPTIONS", true, func() sip.Message { return fromCallerInDialog(t, "OPTIONS", tag, 4, "", "", "") }, true, "SIP/2.0 200 OK", "a"},
		{"486 again", false, func() sip.Message { return answer(t, bInv, 486, "Busy Here", "be1", "", "") }, true, "ACK sip:", "b"},
		{"180 to the INVITE", false, func() sip.Message { return answer(t, bInv, 180, "Ringing", "be1", "", "") }, true, "", ""},
		{"INVITE from elsewhere", true, func() sip.Message { return invite(t, "call-r", "r1", callerSDP) }, false, "", ""},
	}
	compareWholeAndTomb(t, h, func(pass string) []string {
		return runProbes(t, h, pass, probes, map[string]string{"=last": last})
	})
}

// A caller that cancels before the back end has answered at all: our
// CANCEL waits for the back end's first provisional answer, and once it
// has gone and the 487 is ACKed each way the call becomes a tombstone —
// cancelled calls are the other cheap flood. Its CANCEL goes out once.
func TestEarlyCancelledCallBecomesTombstone(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "call-r", "r1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	bInv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromCaller(t, parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKr1;rport\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-r\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"))
	wantStatus(t, h.a.next(t), 200)
	res := wantStatus(t, h.a.next(t), 487)
	h.fromCaller(t, refusalAck(t, tagOf(res.To().Params)))
	h.fromBackend(t, answer(t, bInv, 180, "Ringing", "be1", "", ""), backendAddr)
	cancel := wantRequest(t, h.b.next(t), sip.CANCEL)
	h.fromBackend(t, answer(t, bInv, 183, "Session Progress", "be1", "", ""), backendAddr)
	h.b.none(t, 30*time.Millisecond) // one CANCEL, not one for each provisional answer
	h.fromBackend(t, answer(t, cancel, 200, "OK", "", "", ""), backendAddr)
	h.fromBackend(t, answer(t, bInv, 487, "Request Terminated", "be1", "", ""), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	buried(t, h, "call-r")
}

// A record larger than a chunk gets a chunk of its own, between chunks
// of small ones, is found whole, and goes with its tombstone; the chunk
// is not kept as a spare (a flood of huge records would pin them).
func TestTombsRecordLargerThanAChunk(t *testing.T) {
	var ts tombs
	base := time.Unix(1000, 0)
	huge := []byte(strings.Repeat("x", tombChunk+1000))
	for i, rec := range [][]byte{[]byte("small0"), huge, []byte("small2")} {
		if !ts.insert(rec, fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), base.Add(time.Duration(i+1)*time.Second)) {
			t.Fatalf("insert %d refused", i)
		}
	}
	if got, _ := ts.lookup("b1", base, nil); len(got) != len(huge) {
		t.Fatalf("huge record: %d bytes found, want %d", len(got), len(huge))
	}
	if got, _ := ts.lookup("a2", base, nil); string(got) != "small2" {
		t.Fatalf("the record after the huge one: %q", got)
	}
	ts.expire(base.Add(2 * time.Second)) // 0 and 1 due
	for _, c := range append(ts.chunks, ts.spare...) {
		if cap(c) > tombChunk {
			t.Fatalf("a chunk of %d bytes is kept after its record expired", cap(c))
		}
	}
	if got, _ := ts.lookup("a2", base.Add(2*time.Second), nil); string(got) != "small2" {
		t.Fatalf("after the huge one expired: %q", got)
	}
}

// Another Call-ID whose hash is a tombstone's (forced here: the seed is
// random) finds no tombstone: the INVITE of another call with the ended
// call's branch gets nothing of it and is placed as a new call, not
// answered with the ended call's 200 nor refused as a loop.
func TestTombstoneHashCollision(t *testing.T) {
	h, _, _ := buriedCall(t)
	taken(h.a)
	h.e.mu.Lock()
	h.e.tombs.idx[maphash.String(h.e.tombs.seed, "other")] = h.e.tombs.idx[maphash.String(h.e.tombs.seed, "call-r")]
	h.e.mu.Unlock()
	if !h.e.Has(invite(t, "other", "r1", callerSDP)) {
		t.Fatal("the forced collision did not take")
	}
	if h.e.Handle(invite(t, "other", "r1", callerSDP), h.inbound()) {
		t.Fatal("another call's INVITE was taken by a tombstone whose Call-ID hashes as its")
	}
	if got := taken(h.a); len(got) > 0 {
		t.Fatalf("another call's INVITE got %q from the tombstone", got)
	}
	h.e.Invite(invite(t, "other", "r1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
}

// refusalAck is the caller's ACK of our final failure to call-r's INVITE,
// whose To tag was tag: in the INVITE's transaction (branch r1).
func refusalAck(t *testing.T, tag string) sip.Message {
	t.Helper()
	return parse(t, "ACK sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKr1;rport\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		"Call-ID: call-r\nCSeq: 1 ACK\nContent-Length: 0\n\n")
}

// A call the engine refused itself before leg B (here 420 for an
// extension it does not do; 483, no media ports, a back end that does
// not resolve alike) owes leg B nothing: once the caller has ACKed the
// refusal it is a tombstone. Such INVITEs cost an attacker the least of
// all — no back end ever sees them.
func TestCallRefusedBeforeLegBBecomesTombstone(t *testing.T) {
	h := newHarness(t, Config{})
	req := func() sip.Message { return invite(t, "call-r", "r1", callerSDP, "Require: frobnication\n") }
	h.e.Invite(req().(*sip.Request), h.inbound(), h.target)
	res := wantStatus(t, h.a.next(t), 420)
	tag := tagOf(res.To().Params)
	ack := func() sip.Message { return refusalAck(t, tag) }
	h.fromCaller(t, ack())
	probes := []probe{
		{"INVITE again", true, req, true, "=last", "a"},
		{"ACK again", true, ack, true, "", ""},
		{"INVITE from elsewhere", true, req, false, "", ""},
	}
	compareWholeAndTomb(t, h, func(pass string) []string {
		return runProbes(t, h, pass, probes, map[string]string{"=last": res.String()})
	})
	if got := taken(h.b); len(got) > 0 {
		t.Fatalf("the back end got %q", got)
	}
}
