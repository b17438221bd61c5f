package media

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// TestICEOfferCrafted: an ICE offer of four streams, its ICE at session
// level (with every RFC 8839 session attribute) and on each stream — an
// audio and a video line, a fax line and a declined audio line — is passed
// to the plain leg with nothing of its ICE (offerICE checks), and answered
// with ICE-lite on the two RTP lines alone, each its own credentials.
func TestICEOfferCrafted(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, av, af := newPeer(t), newPeer(t), newPeer(t)
	b, bv, bf := newPeer(t), newPeer(t), newPeer(t)
	ice := "a=ice-ufrag:%s\r\na=ice-pwd:offerersecretpassword%s\r\na=candidate:1 1 UDP 2130706431 127.0.0.1 %d typ host\r\n"
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"a=ice-lite\r\na=ice-options:trickle ice2\r\na=ice-pacing:50\r\na=ice-ufrag:sess\r\na=ice-pwd:offerersecretpasswordSS\r\n" +
		fmt.Sprintf("m=audio %d RTP/AVP 0\r\n"+ice, a.addr().Port(), "aud1", "A1", a.addr().Port()) +
		fmt.Sprintf("m=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"+ice, av.addr().Port(), "vid1", "V1", av.addr().Port()) +
		fmt.Sprintf("m=image %d udptl t38\r\n"+ice, af.addr().Port(), "fax1", "F1", af.addr().Port()) +
		fmt.Sprintf("m=audio 0 RTP/AVP 0\r\n"+ice, "dec1", "D1", 9)
	s := offerICE(t, e, offer)
	answerB := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=image %d udptl t38\r\nm=audio 0 RTP/AVP 0\r\n",
		b.addr().Port(), bv.addr().Port(), bf.addr().Port())
	answer, err := s.Answer(SideB, []byte(answerB))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(answer), "\r\nm=")
	if len(parts) != 5 {
		t.Fatalf("want a session part and four streams:\n%s", answer)
	}
	if strings.Count(parts[0], "a=ice-lite") != 1 || strings.Contains(parts[0], "ice-pacing") || strings.Contains(parts[0], "ice-options") {
		t.Errorf("session part: want our a=ice-lite alone:\n%s", parts[0])
	}
	ufrags := map[string]bool{}
	for i, p := range parts[1:] {
		u, _, _ := strings.Cut(strings.SplitAfter(p, "a=ice-ufrag:")[len(strings.SplitAfter(p, "a=ice-ufrag:"))-1], "\r\n")
		hasICE := strings.Contains(p, "a=ice-ufrag:")
		switch want := i < 2; {
		case hasICE != want:
			t.Errorf("stream %d (%s): ICE %v, want %v", i, strings.Fields(p)[0], hasICE, want)
		case want && ufrags[u]:
			t.Errorf("stream %d shares ufrag %s", i, u)
		case !want && strings.Contains(p, "a=candidate"):
			t.Errorf("stream %d has a candidate:\n%s", i, p)
		}
		ufrags[u] = true
		if strings.Contains(p, "offerersecret") || strings.Contains(p, "aud1") || strings.Contains(p, "sess") {
			t.Errorf("stream %d echoes the offerer's ICE:\n%s", i, p)
		}
	}
}

// TestICENonPrimaryForgedCheck: on the video line of an audio+video ICE
// offer, a nominating check signed with the audio line's password (or a
// wrong one) is not answered and does not latch its source: B's video
// still goes to the SDP's address. One signed with the video line's own
// credentials is answered and latches (the attack's control).
func TestICENonPrimaryForgedCheck(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, av, b, bv := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"a=ice-ufrag:offr\r\na=ice-pwd:offererpasswordofferer0\r\n"+
		"m=audio %d RTP/AVP 0\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", a.addr().Port(), av.addr().Port())
	s := offerICE(t, e, offer)
	answer, err := s.Answer(SideB, fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", b.addr().Port(), bv.addr().Port()))
	if err != nil {
		t.Fatal(err)
	}
	_, sd := mediaAddr(t, answer)
	cred := func(i int) (string, string, uint16) {
		m := sd.MediaDescriptions[i]
		u, _ := m.Attribute("ice-ufrag")
		p, _ := m.Attribute("ice-pwd")
		return u, p, uint16(m.MediaName.Port.Value)
	}
	au, ap, _ := cred(0)
	vu, vp, vport := cred(1)
	toVideo := netip.AddrPortFrom(loopback, vport)
	// B's video port: where B's video RTP enters the engine.
	fromB := s.streams[1].legs[SideB].rtp.port
	bIn := netip.AddrPortFrom(loopback, uint16(fromB))
	forger := newPeer(t)
	check := func(ufrag, pwd string) error {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag+":offr"),
			ice.UseCandidate(), stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
		forger.rtp.WriteToUDPAddrPort(req.Raw, toVideo)
		_, _, err := tryRecv(forger.rtp, 200*time.Millisecond)
		return err
	}
	for _, c := range [][2]string{{au, ap}, {vu, ap}, {au, vp}, {vu, "not-the-password-at-all"}} {
		if check(c[0], c[1]) == nil {
			t.Fatalf("a check as %s with a wrong password was answered", c[0])
		}
	}
	pkt := rtpPacket(96, 1, 3000, 0xB1)
	bv.rtp.WriteToUDPAddrPort(pkt, bIn)
	if _, _, err := tryRecv(forger.rtp, 300*time.Millisecond); err == nil {
		t.Fatal("B's video went to the forger: a forged check latched it")
	}
	if _, _, err := tryRecv(av.rtp, 2*time.Second); err != nil {
		t.Fatalf("B's video did not reach the SDP's address: %v", err)
	}
	if err := check(vu, vp); err != nil {
		t.Fatalf("the video line's own check was not answered: %v", err)
	}
	bv.rtp.WriteToUDPAddrPort(rtpPacket(96, 2, 6000, 0xB1), bIn)
	if _, _, err := tryRecv(forger.rtp, 2*time.Second); err != nil {
		t.Fatalf("a nominating check with the right credentials did not latch: %v", err)
	}
}
