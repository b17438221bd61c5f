package b2bua

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

var um2Addr = netip.MustParseAddrPort("203.0.113.9:5060")

// rewriteHarness is a harness whose peer (gw or um) has REFER in rewrite
// mode; the routing table knows the PBX at pbxAddr (a gateway, by
// pbx.example.net over TLS) and pool um2's back end at um2Addr.
func rewriteHarness(t testing.TB, peer string) *harness {
	t.Helper()
	tbl := &router.Table{
		Gateways: []router.Gateway{{Name: "pbx", Addresses: []netip.Addr{pbxAddr.Addr()}, FQDN: "pbx.example.net"}},
		Pools: []router.Pool{{Name: "um2", Backends: []router.Backend{
			{Name: "um2a", Host: um2Addr.Addr().String(), TCPPort: int(um2Addr.Port()), TLSPort: 5061}}}},
	}
	return newHarness(t, Config{Peers: map[string]Peer{peer: {ReferMode: ReferRewrite}}, Table: func() *router.Table { return tbl }})
}

// markedInvite is a new INVITE from the caller to a Refer-To we wrote.
func markedInvite(t *testing.T, referTo *sip.Uri, callID string) *sip.Request {
	t.Helper()
	req := invite(t, callID, "m"+callID, callerSDP)
	req.Recipient = *referTo.Clone()
	return reparse(t, req.String()).(*sip.Request)
}

// referToOf is the Refer-To of a relayed REFER.
func referToOf(t *testing.T, refer *sip.Request) *sip.Uri {
	t.Helper()
	hs := refer.GetHeaders("Refer-To")
	if len(hs) != 1 {
		t.Fatalf("%d Refer-To in the relayed REFER:\n%s", len(hs), refer)
	}
	var u sip.Uri
	if _, err := sip.ParseAddressValue(hs[0].Value(), &u, nil); err != nil {
		t.Fatalf("relayed Refer-To %q: %v", hs[0].Value(), err)
	}
	return &u
}

// R-SBC-7 "same for REFER": the back end's REFER reaches the caller with
// a Refer-To on our address and a marker; the caller's INVITE to it is
// proxied to the original target through us, each side seeing only us.
func TestReferRewrite(t *testing.T) {
	h := rewriteHarness(t, "gw")
	bInv, _ := confirmedCall(t, h)
	h.fromBackend(t, referFrom(t, bInv, 7, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	refer := wantRequest(t, h.a.next(t), sip.REFER)
	u := referToOf(t, refer)
	if u.Host != frontAddr.Addr().String() || u.Port != int(frontAddr.Port()) || !strings.HasPrefix(u.User, markerPrefix) {
		t.Fatalf("Refer-To to the caller is not ours with a marker: %s", u)
	}
	if l := leaks(refer, "192.0.2.50", "5070", "203.0.113.5", "be1", "umedge-"); len(l) > 0 {
		t.Fatalf("the rewritten REFER leaks %v:\n%s", l, refer)
	}
	if rb := headerValue(refer, "Referred-By"); rb != "<sip:um-aa@sbc.example.net>" {
		t.Errorf("Referred-By %q", rb)
	}
	h.fromCaller(t, answer(t, refer, 202, "Accepted", "", "", ""))
	wantStatus(t, h.b.next(t), 202)

	// The caller follows the REFER: a new call, proxied to the PBX.
	inv := markedInvite(t, u, "xfer-1@10.1.1.1")
	if !Marked(inv) || !h.e.Redirect(inv, h.inbound(), &router.Call{}) {
		t.Fatal("the INVITE to the Refer-To was not taken")
	}
	wantStatus(t, h.a.next(t), 100)
	cs := h.b.next(t)
	cInv := wantRequest(t, cs, sip.INVITE)
	if cs.dst != pbxAddr || cs.tp != router.UDP || cInv.Recipient.User != "2002" || cInv.Recipient.Host != "192.0.2.50" {
		t.Fatalf("INVITE after the REFER went to %s over %s:\n%s", cs.dst, cs.tp, cInv)
	}
	if l := leaks(cInv, "10.1.1.1", "caller1", "xfer-1", markerPrefix, "203.0.113.5"); len(l) > 0 {
		t.Errorf("the transferred INVITE leaks %v:\n%s", l, cInv)
	}
	h.fromBackend(t, answer(t, cInv, 200, "OK", "pbx1", "<sip:2002@192.0.2.50:5070>", targetSDP), pbxAddr)
	ok := wantStatus(t, h.a.next(t), 200)
	if l := leaks(ok, "192.0.2.50", "pbx1", "o=pbx"); len(l) > 0 {
		t.Errorf("the caller's 200 leaks the target's %v:\n%s", l, ok)
	}
	if h.e.Active() != 2 {
		t.Errorf("%d calls, want the old and the transferred", h.e.Active())
	}

	// The caller's NOTIFY reaches the back end in its dialog.
	h.fromCaller(t, fromCallerInDialog(t, "NOTIFY", tagOf(refer.From().Params), 2,
		"Event: refer\nSubscription-State: terminated;reason=noresource\n", sipfrag, "SIP/2.0 200 OK\r\n"))
	n := wantRequest(t, h.b.next(t), sip.NOTIFY)
	if string(*n.CallID()) != string(*bInv.CallID()) || string(n.Body()) != "SIP/2.0 200 OK\r\n" {
		t.Errorf("NOTIFY to the back end:\n%s", n)
	}
}

// The other way: the caller's REFER reaches the back end with a Refer-To
// on our back-end-side address; the back end's INVITE to it goes to the
// target (here a back end of another pool), and the marker is the back
// end's alone.
func TestCallerReferRewrite(t *testing.T) {
	h := rewriteHarness(t, "um")
	_, tag := confirmedCall(t, h)
	h.fromCaller(t, fromCallerInDialog(t, "REFER", tag, 2, "Refer-To: <sip:3003@203.0.113.9>\nReferred-By: <sip:2001@10.1.1.1>\n", "", ""))
	refer := wantRequest(t, h.b.next(t), sip.REFER)
	u := referToOf(t, refer)
	if u.Host != frontAddr.Addr().String() || !strings.HasPrefix(u.User, markerPrefix) {
		t.Fatalf("Refer-To to the back end: %s", u)
	}
	if tp, _ := u.UriParams.Get("transport"); tp != "tcp" {
		t.Errorf("Refer-To %s is not on leg B's transport (tcp)", u)
	}
	if l := leaks(refer, "10.1.1.1", "203.0.113.9", "caller1", "call-r"); len(l) > 0 {
		t.Fatalf("the rewritten REFER leaks %v:\n%s", l, refer)
	}
	if rb := headerValue(refer, "Referred-By"); rb != "<sip:2001@sbc.example.net>" {
		t.Errorf("Referred-By %q", rb)
	}

	inv := markedInvite(t, u, "be-xfer-1")
	// The caller cannot use the back end's marker.
	if !h.e.Redirect(inv, h.inbound(), &router.Call{}) {
		t.Fatal("not taken")
	}
	if res := wantStatus(t, h.a.next(t), 403); !strings.Contains(headerValue(res, "Warning"), "another caller") {
		t.Errorf("the caller used the back end's marker: %s", res)
	}
	h.b.none(t, 30*time.Millisecond)

	src := netip.AddrPortFrom(backendAddr.Addr(), 40001) // a new TCP connection of the back end
	bk := newRecorder()
	in := Inbound{Transport: router.TCP, Source: src, Local: frontAddr, Reply: senderTo{bk, src}, Requests: senderTo{bk, src}}
	if !h.e.Redirect(inv, in, &router.Call{}) {
		t.Fatal("the back end's INVITE to the Refer-To was not taken")
	}
	wantStatus(t, bk.next(t), 100)
	cs := h.b.next(t)
	cInv := wantRequest(t, cs, sip.INVITE)
	if cs.dst != um2Addr || cs.tp != router.TCP || cInv.Recipient.User != "3003" {
		t.Fatalf("INVITE after the caller's REFER went to %s over %s:\n%s", cs.dst, cs.tp, cInv)
	}
	if l := leaks(cInv, "10.1.1.1", "be-xfer-1", markerPrefix, "203.0.113.5"); len(l) > 0 {
		t.Errorf("the transferred INVITE leaks %v:\n%s", l, cInv)
	}
}

// A Refer-To the routing would not call, or one crafted to escape the
// rewrite, is refused before anything is relayed; what is rewritten names
// only the target the routing allows.
func TestReferRewriteRefused(t *testing.T) {
	h := rewriteHarness(t, "gw")
	bInv, _ := confirmedCall(t, h)
	cseq := 10
	refuse := func(referTo string, code int, why string) {
		t.Helper()
		cseq++
		h.fromBackend(t, referFrom(t, bInv, cseq, referTo), backendAddr)
		res := wantStatus(t, h.b.next(t), code)
		if w := headerValue(res, "Warning"); !strings.Contains(w, why) {
			t.Errorf("%.60s: Warning %q, want %q", referTo, w, why)
		}
		h.a.none(t, 20*time.Millisecond)
	}
	for _, target := range []string{
		"<sip:2002@192.0.2.99:5060>",  // no peer of the routing
		"<sip:2002@evil.example.net>", // a name: not looked up
		"<tel:+14255550100>",          // not SIP
		"<sip:2002@203.0.113.9:9999>", // a back end, on no port of its
		"<sip:2002@192.0.2.50%40192.0.2.99>",
	} {
		refuse(target, 403, "transfer target")
	}
	refuse("<sip:2002@192.0.2.50?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", 501, "attended transfer")
	refuse("<sip:2002@192.0.2.50?replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2>", 501, "attended transfer")
	refuse("<sip:2002@192.0.2.50?Subject=hi&Route=%3Csip:192.0.2.99%3E>", 501, "embedded headers")
	refuse("<sip:2002@192.0.2.50;method=BYE>", 501, "another method")
	refuse("<sip:"+strings.Repeat("9", 300)+"@192.0.2.50:5070>", 400, "longer than 255")
	refuse("<sip:"+strings.Repeat("9", 2000)+"@192.0.2.50:5070>", 400, "malformed Refer-To")

	// Two Refer-To: refused, not one of them picked.
	cseq++
	two := referFrom(t, bInv, cseq, "<sip:2002@192.0.2.50:5070>")
	two.AppendHeader(sip.NewHeader("Refer-To", "<sip:2002@192.0.2.99>"))
	h.fromBackend(t, reparse(t, two.String()), backendAddr)
	wantStatus(t, h.b.next(t), 400)
	h.a.none(t, 20*time.Millisecond)
	refuse("<sip:2002@192.0.2.50:5070>, <sip:2002@192.0.2.99>", 400, "exactly one Refer-To")
	refuse("\"x\\\"><sip:a@192.0.2.99>\" <sip:2002@192.0.2.50:5070>", 403, "transfer target") // the parser makes it <sip:>

	// Escapes and separators stay inside the user part; maddr does not
	// move the call.
	for _, c := range []struct{ referTo, user string }{
		{"<sip:20%3E02%40evil.example.net%3Bmaddr=192.0.2.99@192.0.2.50:5070>", "20%3E02%40evil.example.net%3Bmaddr=192.0.2.99"},
		{"<sip:2002@192.0.2.50:5070;maddr=192.0.2.99>", "2002"},
	} {
		cseq++
		h.fromBackend(t, referFrom(t, bInv, cseq, c.referTo), backendAddr)
		refer := wantRequest(t, h.a.next(t), sip.REFER)
		u := referToOf(t, refer)
		if u.Host != frontAddr.Addr().String() || strings.Contains(refer.String(), "192.0.2.99") || strings.Contains(refer.String(), "evil") {
			t.Fatalf("%s rewritten as:\n%s", c.referTo, refer)
		}
		h.fromCaller(t, answer(t, refer, 202, "Accepted", "", "", ""))
		wantStatus(t, h.b.next(t), 202)
		h.e.Redirect(markedInvite(t, u, "esc-"+c.user[:4]+string(rune('a'+cseq))), h.inbound(), &router.Call{})
		wantStatus(t, h.a.next(t), 100)
		cs := h.b.next(t)
		if inv := wantRequest(t, cs, sip.INVITE); cs.dst != pbxAddr || inv.Recipient.Host != "192.0.2.50" || escapedUser(&inv.Recipient) != c.user ||
			strings.Contains(strings.ReplaceAll(inv.String(), c.user, ""), "192.0.2.99") {
			t.Fatalf("%s: INVITE to %s:\n%s", c.referTo, cs.dst, inv)
		}
	}
}

// A marker of a rewritten REFER is no open relay: forged, expired, from
// another source, or of another boot, it is refused and nothing is
// called.
func TestReferRewriteMarkerRefused(t *testing.T) {
	h := rewriteHarness(t, "gw")
	bInv, _ := confirmedCall(t, h)
	h.fromBackend(t, referFrom(t, bInv, 7, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	u := referToOf(t, wantRequest(t, h.a.next(t), sip.REFER))
	m, err := h.e.markers.open(u.User, callerAddr.Addr(), time.Now())
	if err != nil || m.kind != markRefer || m.addr != pbxAddr.Addr() || m.port != pbxAddr.Port() {
		t.Fatalf("marker %+v, %v", m, err)
	}
	with := func(user string) *sip.Uri {
		v := *u.Clone()
		v.User = user
		return &v
	}
	n := 0
	refused := func(name string, uri *sip.Uri, in Inbound, r *recorder, code int, why string) {
		t.Helper()
		n++
		if !h.e.Redirect(markedInvite(t, uri, "bad-"+string(rune('a'+n))), in, &router.Call{}) {
			t.Fatalf("%s: not taken", name)
		}
		res := wantStatus(t, r.next(t), code)
		if w := headerValue(res, "Warning"); !strings.Contains(w, why) {
			t.Errorf("%s: Warning %q, want %q", name, w, why)
		}
		h.b.none(t, 20*time.Millisecond)
	}
	payload, mac, _ := strings.Cut(strings.TrimPrefix(u.User, markerPrefix), ".")
	flip := []byte(payload)
	flip[len(flip)-3] ^= 1
	refused("tampered", with(markerPrefix+string(flip)+"."+mac), h.inbound(), h.a, 403, "forged")
	other := New(Config{}, fakeTransport{h.b}, h.media, nil, nil)
	foreign, _ := other.markers.mint(m)
	refused("another boot", with(foreign), h.inbound(), h.a, 403, "forged")
	// The back end, which sent the REFER, cannot call its own target
	// through the caller's marker.
	bk := newRecorder()
	refused("the transferor", u, Inbound{Transport: router.TCP, Source: backendAddr, Local: frontAddr, Reply: senderTo{bk, backendAddr}, Requests: senderTo{bk, backendAddr}},
		bk, 403, "another caller")
	m.expires = time.Now().Add(-time.Second)
	old, _ := h.e.markers.mint(m)
	refused("expired", with(old), h.inbound(), h.a, 404, "expired")
}

// On a secured dial plan the Refer-To must name the target over TLS, and
// the call goes to the address the routing named, by the gateway's TLS
// name, never looked up.
func TestReferRewriteSecured(t *testing.T) {
	h := rewriteHarness(t, "gw")
	h.target.Security = router.Secured
	h.target.Backend.TLSPort = int(backendAddr.Port())
	bInv, _ := confirmedCall(t, h)
	h.fromBackend(t, referFrom(t, bInv, 7, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	wantStatus(t, h.b.next(t), 403)
	h.a.none(t, 20*time.Millisecond)
	h.fromBackend(t, referFrom(t, bInv, 8, "<sips:2002@192.0.2.50>"), backendAddr)
	u := referToOf(t, wantRequest(t, h.a.next(t), sip.REFER))
	m, err := h.e.markers.open(u.User, callerAddr.Addr(), time.Now())
	if err != nil || m.host != "pbx.example.net" || m.tp != router.TLS {
		t.Fatalf("marker %+v, %v", m, err)
	}
	// fakeTransport resolves no names: only the pinned address reaches the PBX.
	h.e.Redirect(markedInvite(t, u, "sec-1"), h.inbound(), &router.Call{})
	wantStatus(t, h.a.next(t), 100)
	cs := h.b.next(t)
	if inv := wantRequest(t, cs, sip.INVITE); cs.dst != netip.AddrPortFrom(pbxAddr.Addr(), 5061) || cs.tp != router.TLS || inv.Recipient.Scheme != "sips" {
		t.Fatalf("secured transfer went to %s over %s:\n%s", cs.dst, cs.tp, inv)
	}
}

// Transparent (the default) still passes the Refer-To as it is.
func TestReferTransparentUnchanged(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, _ := confirmedCall(t, h)
	h.fromBackend(t, referFrom(t, bInv, 7, "<sip:2002@192.0.2.50:5070>"), backendAddr)
	if u := referToOf(t, wantRequest(t, h.a.next(t), sip.REFER)); u.String() != "sip:2002@192.0.2.50:5070" {
		t.Errorf("transparent Refer-To became %s", u)
	}
}

// FuzzReferRewrite: whatever Refer-To a peer sends, the rewrite never
// panics, and what it relays is only ever our address with a marker that
// opens, for the transferee, to a target the routing table names.
func FuzzReferRewrite(f *testing.F) {
	for _, s := range []string{"<sip:2002@192.0.2.50:5070>", "<sips:2002@192.0.2.50>", "<sip:3003@203.0.113.9;transport=udp>",
		"<sip:20%3E02@192.0.2.50?Replaces=a%3Bto-tag%3D1>", "\"a\" <sip:2002@[::ffff:192.0.2.50]:5070;maddr=192.0.2.99>", "<sip:2002@192.0.2.99>"} {
		f.Add(s)
	}
	h := rewriteHarness(f, "gw")
	f.Fuzz(func(t *testing.T, referTo string) {
		if strings.ContainsAny(referTo, "\r\n") {
			return // no header value
		}
		msg := "REFER sip:2001@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/TCP 203.0.113.5:5062;branch=z9hG4bKf\r\nFrom: <sip:um@203.0.113.5>;tag=b\r\n" +
			"To: <sip:2001@sbc.example.net>;tag=a\r\nCall-ID: f\r\nCSeq: 9 REFER\r\nRefer-To: " + referTo + "\r\nContent-Length: 0\r\n\r\n"
		m, err := sip.NewParser().ParseSIP([]byte(msg))
		if err != nil {
			return
		}
		c := newCall(h.e, invite(t, "fz", "fz1", callerSDP), h.inbound(), h.target)
		c.b.tp, c.b.local, c.b.dst = router.TCP, frontAddr, backendAddr
		c.mu.Lock()
		v, st := c.rewriteReferTo(SideB, m.(*sip.Request))
		c.mu.Unlock()
		if st != nil {
			if st.code < 400 || len(st.extra) != 1 {
				t.Fatalf("refusal %+v", st)
			}
			return
		}
		var u sip.Uri
		if _, err := sip.ParseAddressValue(v, &u, nil); err != nil || u.Host != frontAddr.Addr().String() || u.Headers.Length() > 0 {
			t.Fatalf("%q rewritten to %q (%v)", referTo, v, err)
		}
		mk, err := h.e.markers.open(u.User, callerAddr.Addr(), time.Now())
		if err != nil || mk.kind != markRefer || mk.addr != pbxAddr.Addr() && mk.addr != um2Addr.Addr() {
			t.Fatalf("%q: marker %+v, %v", referTo, mk, err)
		}
	})
}
