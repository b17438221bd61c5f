package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/hdrrules"
)

func rules(t *testing.T, rs ...hdrrules.Rule) *hdrrules.Set {
	t.Helper()
	s, err := hdrrules.Compile(rs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The caller's inbound rules shape what leg B carries (its Diversion is
// written from the rewritten headers); the pool's outbound rules rewrite
// every message to the back end; the caller's outbound rules every
// message to the caller. From keeps our tag.
func TestHeaderRulesBothLegs(t *testing.T) {
	h := newHarness(t, Config{Peers: map[string]Peer{
		"gw": {Rules: rules(t,
			hdrrules.Rule{Direction: hdrrules.In, Header: "Diversion", Part: hdrrules.PartUser, Match: `^1001$`, Action: hdrrules.ActionReplace, Value: "4001"},
			hdrrules.Rule{Direction: hdrrules.Out, Header: "X-Edge", Action: hdrrules.ActionAdd, Value: "umedge"},
		)},
		"um": {Rules: rules(t,
			hdrrules.Rule{Direction: hdrrules.Out, Header: "From", Part: hdrrules.PartUser, Match: `^(\d+)$`, Action: hdrrules.ActionReplace, Value: "9$1"},
			hdrrules.Rule{Direction: hdrrules.In, Header: "X-Secret", Action: hdrrules.ActionRemove},
		)},
	}})
	h.e.Invite(invite(t, "call-hr", "h1", callerSDP), h.inbound(), h.target)
	if res := wantStatus(t, h.a.next(t), 100); headerValue(res, "X-Edge") != "umedge" {
		t.Errorf("the caller's 100 lacks the outbound header:\n%s", res)
	}
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	if d := headerValue(req, "Diversion"); d != "<sip:4001@sbc.example.net>;reason=no-answer" {
		t.Errorf("leg B's Diversion %q: the caller's inbound rule did not reach it", d)
	}
	if f := req.From(); f.Address.User != "92001" || tagOf(f.Params) == "" || headerValue(req, "X-Edge") != "" {
		t.Errorf("leg B's INVITE:\n%s", req)
	}
	res := answer(t, req, 180, "Ringing", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "")
	res.AppendHeader(sip.NewHeader("X-Secret", "internal"))
	h.fromBackend(t, reparse(t, res.String()), backendAddr)
	ring := wantStatus(t, h.a.next(t), 180)
	if headerValue(ring, "X-Edge") != "umedge" || strings.Contains(ring.String(), "internal") {
		t.Errorf("180 to the caller:\n%s", ring)
	}
	// The CANCEL to leg B is rewritten too: one place for every message.
	h.fromCaller(t, parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKh1;rport\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-hr\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"))
	wantStatus(t, h.a.next(t), 200)
	if c := wantRequest(t, h.b.next(t), sip.CANCEL); c.From().Address.User != "92001" {
		t.Errorf("CANCEL not rewritten:\n%s", c)
	}
	if n := h.e.Metrics.RulesRefused.Load(); n != 0 {
		t.Errorf("%d rule results refused", n)
	}
}

// A rule result that would break the message is refused and counted;
// the message goes out as it was.
func TestHeaderRulesRefusedCounted(t *testing.T) {
	h := newHarness(t, Config{Peers: map[string]Peer{"um": {Rules: rules(t,
		hdrrules.Rule{Direction: hdrrules.Out, Header: "Subject", Match: `(?s)^(.*)$`, Action: hdrrules.ActionReplace, Value: "$1 $1"},
	)}}})
	h.e.Invite(invite(t, "call-hx", "x1", callerSDP, "Subject: "+strings.Repeat("s", 1500)+"\n"), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	if len(headerValue(req, "Subject")) != 1500 || h.e.Metrics.RulesRefused.Load() == 0 {
		t.Errorf("Subject of %d bytes, %d refused", len(headerValue(req, "Subject")), h.e.Metrics.RulesRefused.Load())
	}
}
