package media

import (
	"fmt"
	"strings"
	"testing"
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
