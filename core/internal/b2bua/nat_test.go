package b2bua

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// A UDP caller whose NAT mapping moved mid-call (a new source port for the
// same address) gets the back end's BYE at the new port once one of its
// in-dialog requests came from there; a stray request from yet another
// port without our To tag moves nothing.
func TestCallerMappingMoves(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, tag := confirmedCall(t, h)
	moved := netip.AddrPortFrom(callerAddr.Addr(), callerAddr.Port()+1000)
	from := func(src netip.AddrPort, m sip.Message) {
		t.Helper()
		in := Inbound{Transport: router.UDP, Source: src, Local: frontAddr, Reply: senderTo{h.a, src}, Requests: senderTo{h.a, src}}
		if !h.e.Handle(m, in) {
			t.Fatalf("engine did not take %s", short(m))
		}
	}
	from(moved, fromCallerInDialog(t, "OPTIONS", tag, 2, "", "", ""))
	if s := h.a.next(t); s.dst != moved {
		t.Fatalf("the OPTIONS' answer went to %s, want %s", s.dst, moved)
	}
	stray := netip.AddrPortFrom(callerAddr.Addr(), callerAddr.Port()+2000)
	from(stray, fromCallerInDialog(t, "OPTIONS", "not-ours", 3, "", "", ""))
	h.a.next(t) // its answer, to where it came from

	bye := inDialog(t, "BYE", bInv, 9, "203.0.113.5:5062", "")
	bye.To().Params.Add("tag", tagOf(bInv.From().Params))
	h.fromBackend(t, reparse(t, bye.String()), backendAddr)
	wantStatus(t, h.b.next(t), 200)
	s := h.a.next(t)
	wantRequest(t, s, sip.BYE)
	if s.dst != moved {
		t.Fatalf("the BYE went to %s, want the moved mapping %s", s.dst, moved)
	}
}
