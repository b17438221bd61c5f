package b2bua

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// redirected runs a call whose back end answers 302 to its worker and
// returns the caller's answer.
func redirected(t *testing.T, h *harness) *sip.Response {
	t.Helper()
	h.e.Invite(invite(t, "call-3xx", "x1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, req, 302, "Moved Temporarily", "um-svc", "<sip:1001@203.0.113.5:5065;transport=tcp>", ""), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	return wantStatus(t, h.a.next(t), 302)
}

// Transparent: the 3xx reaches the caller with the back end's Contact as
// it is — the operator's choice, and the one leak of topology it allows.
func TestRedirectTransparent(t *testing.T) {
	h := newHarness(t, Config{Peers: map[string]Peer{"gw": {RedirectMode: RedirectTransparent}}})
	res := redirected(t, h)
	if ct := res.Contact(); ct == nil || ct.Address.String() != "sip:1001@203.0.113.5:5065;transport=tcp" {
		t.Fatalf("302 to the caller:\n%s", res)
	}
	if l := leaks(res, "um-svc", "umedge-"); len(l) > 0 {
		t.Errorf("the relayed 302 leaks %v beyond its Contact:\n%s", l, res)
	}
	h.b.none(t, 50*time.Millisecond) // not followed
	if n := h.e.Active(); n != 0 {
		t.Errorf("%d calls active after a relayed 3xx", n)
	}
}

// Rewrite: the caller gets a Contact on our address with a marker; its
// INVITE to the marker is proxied to the original target, and only from
// that caller, only while it is fresh, and only as signed.
func TestRedirectRewrite(t *testing.T) {
	h := newHarness(t, Config{Peers: map[string]Peer{"gw": {RedirectMode: RedirectRewrite}}})
	res := redirected(t, h)
	ct := res.Contact()
	if ct == nil || ct.Address.Host != frontAddr.Addr().String() || !strings.HasPrefix(ct.Address.User, markerPrefix) {
		t.Fatalf("302 to the caller:\n%s", res)
	}
	if l := leaks(res, "203.0.113.5", "5065", "um-svc"); len(l) > 0 {
		t.Fatalf("the rewritten 302 leaks the back end's %v:\n%s", l, res)
	}
	marked := func(user, callID string) *sip.Request {
		req := invite(t, callID, "m"+callID, callerSDP)
		req.Recipient.User = user
		return reparse(t, req.String()).(*sip.Request)
	}
	user := ct.Address.User

	// The caller follows it: leg B goes to the worker the back end named.
	if !h.e.Redirect(marked(user, "follow-1"), h.inbound(), &router.Call{}) {
		t.Fatal("the marker INVITE was not taken")
	}
	wantStatus(t, h.a.next(t), 100)
	inv := h.b.next(t)
	req := wantRequest(t, inv, sip.INVITE)
	if inv.dst != workerAddr || inv.tp != router.TCP || req.Recipient.User != "1001" {
		t.Fatalf("INVITE after the marker went to %s over %s:\n%s", inv.dst, inv.tp, req)
	}

	// Not a marker: the front routes it.
	if h.e.Redirect(marked("1001", "plain"), h.inbound(), &router.Call{}) {
		t.Fatal("an ordinary INVITE was taken as a marker")
	}

	refused := func(name string, req *sip.Request, in Inbound, r *recorder, code int, why string) {
		t.Helper()
		if !h.e.Redirect(req, in, &router.Call{}) {
			t.Fatalf("%s: not taken", name)
		}
		res := wantStatus(t, r.next(t), code)
		if w := headerValue(res, "Warning"); !strings.Contains(w, why) {
			t.Errorf("%s: Warning %q, want %q", name, w, why)
		}
		h.b.none(t, 30*time.Millisecond)
	}
	// Forged: one character of the payload changed, the MAC kept.
	payload, mac, _ := strings.Cut(strings.TrimPrefix(user, markerPrefix), ".")
	flip := []byte(payload)
	flip[len(flip)/2] ^= 1
	refused("tampered payload", marked(markerPrefix+string(flip)+"."+mac, "forged-1"), h.inbound(), h.a, 403, "forged")
	refused("no MAC", marked(markerPrefix+payload, "forged-2"), h.inbound(), h.a, 403, "forged")
	refused("garbage", marked(markerPrefix+"%%%.!!", "forged-3"), h.inbound(), h.a, 403, "forged")
	// Minted by another boot (another key) for the same target.
	other := New(Config{}, fakeTransport{h.b}, h.media, nil, nil)
	m, err := h.e.markers.open(user, callerAddr.Addr(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.markers.mint(m)
	if err != nil {
		t.Fatal(err)
	}
	refused("another boot's key", marked(foreign, "forged-4"), h.inbound(), h.a, 403, "forged")
	// Another caller.
	stranger := netip.MustParseAddrPort("192.0.2.77:5060")
	s := newRecorder()
	refused("another caller", marked(user, "stranger-1"),
		Inbound{Transport: router.UDP, Source: stranger, Local: frontAddr, Reply: senderTo{s, stranger}, Requests: senderTo{s, stranger}}, s, 403, "another caller")
	// Expired: minted as the engine would, an hour ago.
	m.expires = time.Now().Add(-time.Second)
	old, err := h.e.markers.mint(m)
	if err != nil {
		t.Fatal(err)
	}
	refused("expired", marked(old, "expired-1"), h.inbound(), h.a, 404, "expired")
}

// A rewrite never makes a Contact the engine would not call itself: a
// redirect elsewhere is refused as in handle_locally.
func TestRedirectRewriteElsewhereRefused(t *testing.T) {
	h := newHarness(t, Config{Peers: map[string]Peer{"gw": {RedirectMode: RedirectRewrite}}})
	h.e.Invite(invite(t, "c-else", "e1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, req, 302, "Moved", "x", "<sip:1001@192.0.2.99:5060>", ""), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	if res := wantStatus(t, h.a.next(t), 502); res.Contact() != nil {
		t.Errorf("a refused redirect was rewritten:\n%s", res)
	}
}

// The marker survives a round trip and refuses every truncation.
func TestMarkerRoundTrip(t *testing.T) {
	var k markerKey
	k[0] = 7
	caller := netip.MustParseAddr("2001:db8::1")
	m := marker{kind: markRefer, expires: time.Now().Add(time.Minute).Truncate(time.Second), caller: caller, tp: router.TLS,
		addr: netip.MustParseAddr("203.0.113.7"), port: 5063,
		host: "um1.example.net", user: "1001", gateway: "gw", dialPlan: "dp", pool: "um", backend: "um1",
		security: router.Secured, maxGW: 30}
	s, err := k.mint(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.open(s, caller, time.Now())
	if err != nil || got != m {
		t.Fatalf("open = %+v, %v; want %+v", got, err, m)
	}
	for i := len(markerPrefix); i < len(s); i++ {
		if _, err := k.open(s[:i], caller, time.Now()); err == nil {
			t.Fatalf("a marker cut at %d opened", i)
		}
	}
	if _, err := k.mint(marker{host: strings.Repeat("h", 256)}); err == nil {
		t.Error("a 256-byte host was signed")
	}
}

// FuzzMarkerOpen: whatever user part a caller sends, opening it never
// panics, and nothing but a minted marker opens.
func FuzzMarkerOpen(f *testing.F) {
	var k markerKey
	good, _ := k.mint(marker{expires: time.Now().Add(time.Hour), caller: netip.MustParseAddr("192.0.2.10"), host: "h"})
	f.Add(good)
	f.Add(good[:20] + "\r" + good[20:]) // the base64 decoder skips CR and LF: found by this target
	f.Add(markerPrefix + "AAAA.BBBB")
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := k.open(s, netip.MustParseAddr("192.0.2.10"), time.Now()); err == nil && s != good {
			t.Fatalf("%q opened", s)
		}
	})
}
