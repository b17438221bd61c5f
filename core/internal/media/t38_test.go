package media

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

// t38Attrs are a T.38 gateway's attributes (ITU-T T.38 Annex D), some in
// forms the engine never parses.
const t38Attrs = "a=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\na=T38FaxRateManagement:transferredTCF\r\n" +
	"a=T38FaxMaxBuffer:262\r\na=T38FaxMaxDatagram:176\r\na=T38FaxUdpEC:t38UDPRedundancy\r\na=T38FaxFillBitRemoval:garbage value\r\n"

// desc is an SDP body from address c with the given media sections.
func desc(c netip.Addr, sections ...string) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=gw 1 2 IN IP4 10.9.9.9\r\ns=fax\r\nc=IN IP4 %s\r\nt=0 0\r\n%s", c, strings.Join(sections, "")))
}

func audioSec(p *peer) string { return fmt.Sprintf("m=audio %d RTP/AVP 0\r\n", p.addr().Port()) }
func imageSec(p *peer) string {
	return fmt.Sprintf("m=image %d udptl t38\r\n", p.addr().Port()) + t38Attrs
}
func videoSec(p *peer) string {
	return fmt.Sprintf("m=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", p.addr().Port())
}

// streamAt is the address of m-line i of a description the engine wrote
// (its c= and port) and the m-line.
func streamAt(t testing.TB, body []byte, i int) (netip.AddrPort, *sdp.MediaDescription) {
	t.Helper()
	sd, err := parseSDP(body)
	if err != nil {
		t.Fatalf("the engine wrote SDP it cannot parse: %v\n%s", err, body)
	}
	if i >= len(sd.MediaDescriptions) {
		t.Fatalf("m-line %d missing:\n%s", i, body)
	}
	m := sd.MediaDescriptions[i]
	ci := sd.ConnectionInformation
	if m.ConnectionInformation != nil {
		ci = m.ConnectionInformation
	}
	a, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(a, uint16(m.MediaName.Port.Value)), m
}

// udptlPacket is a UDPTL datagram: sequence number, then an IFP packet.
// Its first byte is 0 for the first 256, which would read as STUN.
func udptlPacket(seq uint16) []byte {
	return []byte{byte(seq >> 8), byte(seq), 0x06, 0xc0, 0x01, 0x80, 0x00, 0x00, 0x00}
}

// crosses sends pkt from c to dst and wants it at rc, from the engine's
// address from.
func crosses(t *testing.T, c *net.UDPConn, pkt []byte, dst netip.AddrPort, rc *net.UDPConn, from netip.AddrPort) {
	t.Helper()
	c.WriteToUDPAddrPort(pkt, dst)
	got, src := recv(t, rc, 2*time.Second)
	if !bytes.Equal(got, pkt) || src != from {
		t.Fatalf("got %x from %s, want %x from %s", got, src, pkt, from)
	}
}

// dropped sends pkt from c to dst and wants nothing at rc.
func dropped(t *testing.T, what string, c *net.UDPConn, pkt []byte, dst netip.AddrPort, rc *net.UDPConn) {
	t.Helper()
	c.WriteToUDPAddrPort(pkt, dst)
	if b, _, err := tryRecv(rc, 150*time.Millisecond); err == nil {
		t.Fatalf("%s was relayed (%x)", what, b)
	}
}

func wantT38(t *testing.T, body []byte, i int, port uint16) {
	t.Helper()
	at, m := streamAt(t, body, i)
	if at.Addr() != loopback || (port != 0 && at.Port() != port) || at.Port()%2 != 0 ||
		strings.Join(m.MediaName.Protos, "/") != "udptl" || strings.Join(m.MediaName.Formats, " ") != "t38" {
		t.Fatalf("m-line %d is %s %v %v at %s, want image udptl t38 on our even port %d:\n%s", i, m.MediaName.Media, m.MediaName.Protos, m.MediaName.Formats, at, port, body)
	}
	if !strings.Contains(string(body), t38Attrs) {
		t.Fatalf("the T38 attributes were not passed untouched:\n%s", body)
	}
	if strings.Contains(string(body), "a=rtcp") || strings.Contains(string(body), "crypto") || strings.Contains(string(body), "10.9.9.9") {
		t.Fatalf("RTCP, keys or the other side's origin on a T.38 stream:\n%s", body)
	}
}

// TestT38ReINVITEInPlace: an audio call that the callee's gateway switches
// to T.38 by re-INVITE, m=image replacing m=audio: the stream keeps its
// ports, its UDPTL datagrams (which start with a byte STUN would claim)
// cross both ways from the gateways' own fax sockets, latched; strays are
// dropped and counted; at the fax's end the call goes back to audio.
func TestT38ReINVITEInPlace(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 300 * time.Millisecond })
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	stranger := newPeerOn(t, net.IPv4(127, 0, 0, 2))
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	crosses(t, a.rtp, rtpPacket(0, 1, 0, 0xA), toA, b.rtp, toB)
	crosses(t, b.rtp, rtpPacket(0, 1, 0, 0xB), toB, a.rtp, toA)

	offerToA := must(s.Offer(SideB, desc(loopback, imageSec(fb))))
	wantT38(t, offerToA, 0, toA.Port())
	answerToB := must(s.Answer(SideA, desc(loopback, imageSec(fa))))
	wantT38(t, answerToB, 0, toB.Port())

	for seq := range uint16(3) {
		crosses(t, fa.rtp, udptlPacket(seq), toA, fb.rtp, toB)
		crosses(t, fb.rtp, udptlPacket(seq), toB, fa.rtp, toA)
	}
	dropped(t, "a stranger's datagram", stranger.rtp, udptlPacket(7), toA, fb.rtp)
	dropped(t, "a datagram at the unused +1 port", fa.rtp, udptlPacket(8), netip.AddrPortFrom(loopback, toA.Port()+1), fb.rtp)
	time.Sleep(350 * time.Millisecond) // the learning window is over
	dropped(t, "the old audio socket's RTP", a.rtp, rtpPacket(0, 2, 160, 0xA), toA, fb.rtp)
	crosses(t, fa.rtp, udptlPacket(3), toA, fb.rtp, toB) // the latch held

	st := s.Stats()
	if len(st.Streams) != 1 || st.Streams[0].Proto != "udptl" || st.Streams[0].Media != "image" || !st.Streams[0].Primary {
		t.Fatalf("streams %+v, want the primary as image over udptl", st.Streams)
	}
	if la := st.Legs[SideA]; la.Remote != fa.addr() || la.Strays != 3 || la.Codec != "t38" || la.Secure {
		t.Errorf("leg A: remote %s, strays %d, codec %q, want %s, 3, t38", la.Remote, la.Strays, la.Codec, fa.addr())
	}
	if lb := st.Legs[SideB]; lb.Remote != fb.addr() || lb.PacketsIn < 3 {
		t.Errorf("leg B: remote %s, %d in", lb.Remote, lb.PacketsIn)
	}

	// The fax is over: the caller's side goes back to audio.
	offerToB := must(s.Offer(SideA, a.sdp("RTP/AVP", "0")))
	if at, _ := mediaAddr(t, offerToB); at != toB {
		t.Fatalf("audio again on %s, want the stream's ports %s", at, toB)
	}
	must(s.Answer(SideB, b.sdp("RTP/AVP", "0")))
	crosses(t, a.rtp, rtpPacket(0, 10, 1600, 0xA), toA, b.rtp, toB)
	crosses(t, b.rtp, rtpPacket(0, 10, 1600, 0xB), toB, a.rtp, toA)
	if st := s.Stats(); len(st.Streams) != 0 || st.Legs[SideA].Codec != "PCMU" {
		t.Errorf("after the fax: %+v, want audio over RTP alone (no Streams)", st.Streams)
	}
}

// TestT38BesideAudio: the re-INVITE sets the audio m-line to port 0 and adds
// an image m-line: the fax gets its own pairs, the audio's are released
// once the answer confirms it (what is sent there reaches nobody); back to
// audio, the audio stream gets pairs again and the fax's are released when
// the answer confirms it, not before.
func TestT38BesideAudio(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	inUse := e.Stats().PortsInUse
	audioOff := "m=audio 0 RTP/AVP 0\r\n"
	wantInUse := func(when string, n int) {
		t.Helper()
		if got := e.Stats().PortsInUse; got != n {
			t.Fatalf("%s: %d ports in use, want %d", when, got, n)
		}
	}

	offerToB := must(s.Offer(SideA, desc(loopback, audioOff, imageSec(fa))))
	if at, _ := streamAt(t, offerToB, 0); at.Port() != 0 {
		t.Fatalf("the declined audio stream went out with port %d:\n%s", at.Port(), offerToB)
	}
	wantT38(t, offerToB, 1, 0)
	wantInUse("fax offered", inUse+4)
	answerToA := must(s.Answer(SideB, desc(loopback, audioOff, imageSec(fb))))
	wantT38(t, answerToA, 1, 0)
	wantInUse("fax answered, audio declined", inUse)
	faxA, _ := streamAt(t, answerToA, 1)
	faxB, _ := streamAt(t, offerToB, 1)
	if faxA == toA || faxB == toB {
		t.Fatal("the fax took the audio stream's ports")
	}
	crosses(t, fa.rtp, udptlPacket(0), faxA, fb.rtp, faxB)
	crosses(t, fb.rtp, udptlPacket(0), faxB, fa.rtp, faxA)
	dropped(t, "RTP to the declined audio stream's port", a.rtp, rtpPacket(0, 2, 160, 0xA), toA, b.rtp)
	st := s.Stats()
	if len(st.Streams) != 1 || st.Streams[0].Index != 1 || st.Streams[0].Primary || st.Streams[0].Legs[SideA].PacketsIn != 1 || st.Legs[SideA].Local.IsValid() {
		t.Fatalf("stats %+v", st)
	}

	// Back to audio (the callee's side re-INVITEs).
	imageOff := "m=image 0 udptl t38\r\n"
	offerToA := must(s.Offer(SideB, desc(loopback, audioSec(b), imageOff)))
	wantInUse("audio offered again", inUse+4)
	answerToB := must(s.Answer(SideA, desc(loopback, audioSec(a), imageOff)))
	if at, _ := streamAt(t, answerToB, 1); at.Port() != 0 {
		t.Fatalf("the declined fax stream went out with port %d", at.Port())
	}
	wantInUse("audio answered, fax declined", inUse)
	toA, _ = streamAt(t, offerToA, 0)
	toB, _ = streamAt(t, answerToB, 0)
	crosses(t, a.rtp, rtpPacket(0, 3, 320, 0xA), toA, b.rtp, toB)
	crosses(t, b.rtp, rtpPacket(0, 3, 320, 0xB), toB, a.rtp, toA)
	dropped(t, "UDPTL to the released pair", fa.rtp, udptlPacket(1), faxA, fb.rtp)
	if st := s.Stats(); len(st.Streams) != 0 || st.Legs[SideA].Local != toA || st.Legs[SideA].PacketsIn != 1 {
		t.Fatalf("stats after the fax %+v", st)
	}

	// An offer that brings a stream back and fails gives its pairs back.
	must(s.Offer(SideA, desc(loopback, audioSec(a), imageSec(fa))))
	wantInUse("fax offered again", inUse+4)
	s.Reject(SideA)
	wantInUse("the offer rejected", inUse)
	crosses(t, a.rtp, rtpPacket(0, 4, 480, 0xA), toA, b.rtp, toB)
}

// TestAudioAndVideoRelayed: both streams of an audio+video offer are
// anchored on their own pairs and relayed; SRTP on a Secured leg gets its
// own keys per stream.
func TestAudioAndVideoRelayed(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, va, vb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s, toA, toB, offerToB, answerToA := call(t, e, plain, plain, desc(loopback, audioSec(a), videoSec(va)),
		func([]byte) []byte { return desc(loopback, audioSec(b), videoSec(vb)) })
	vidA, m := streamAt(t, answerToA, 1)
	vidB, _ := streamAt(t, offerToB, 1)
	if m.MediaName.Media != "video" || vidA.Port() == 0 || vidA.Port() == toA.Port() || vidB.Port() == toB.Port() || vidA.Port()%2 != 0 {
		t.Fatalf("video at %s/%s beside audio %s/%s:\n%s", vidA, vidB, toA, toB, answerToA)
	}
	if !strings.Contains(string(offerToB), fmt.Sprintf("a=rtcp:%d", vidB.Port()+1)) {
		t.Errorf("the video stream's RTCP port is not its RTP+1:\n%s", offerToB)
	}
	crosses(t, a.rtp, rtpPacket(0, 1, 0, 0xA), toA, b.rtp, toB)
	crosses(t, va.rtp, rtpPacket(96, 1, 0, 0xAA), vidA, vb.rtp, vidB)
	crosses(t, vb.rtp, rtpPacket(96, 1, 0, 0xBB), vidB, va.rtp, vidA)
	crosses(t, b.rtp, rtpPacket(0, 1, 0, 0xB), toB, a.rtp, toA)
	dropped(t, "audio sent at the video stream", va.rtp, rtpPacket(0, 2, 160, 0xAA), vidA, vb.rtp) // PT 0 is not video's
	st := s.Stats()
	if len(st.Streams) != 2 || st.Streams[1].Media != "video" || st.Streams[1].Legs[SideA].PacketsIn != 1 || st.Legs[SideA].PacketsIn != 1 {
		t.Fatalf("streams %+v", st.Streams)
	}

	// Towards a Secured leg each stream is offered with keys of its own.
	sec, err := e.NewSession("sec", plain, LegProfile{Local: loopback, Security: SecuritySRTP}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sec.Close()
	out := must(sec.Offer(SideA, desc(loopback, audioSec(a), videoSec(va))))
	_, am := streamAt(t, out, 0)
	_, vm := streamAt(t, out, 1)
	ak, _ := am.Attribute("crypto")
	vk, _ := vm.Attribute("crypto")
	if strings.Join(vm.MediaName.Protos, "/") != "RTP/SAVP" || ak == "" || vk == "" || ak == vk {
		t.Fatalf("audio key %q, video key %q (%v), want RTP/SAVP and keys of their own:\n%s", ak, vk, vm.MediaName.Protos, out)
	}
}

// TestStreamBound: with five streams offered the fifth is declined and
// counted; an offer of twenty m-lines costs the bound's pairs, no more.
func TestStreamBound(t *testing.T) {
	e := newTestEngine(t, 24, nil)
	a := newPeer(t)
	base := e.Stats().PortsInUse
	s, err := e.NewSession("five", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	five := []string{audioSec(a), videoSec(a), videoSec(a), imageSec(a), videoSec(a)}
	out := must(s.Offer(SideA, desc(loopback, five...)))
	for i := range 4 {
		if at, _ := streamAt(t, out, i); at.Port() == 0 {
			t.Fatalf("m-line %d declined:\n%s", i, out)
		}
	}
	if at, m := streamAt(t, out, 4); at.Port() != 0 || len(m.Attributes) != 0 {
		t.Fatalf("the fifth stream is not declined:\n%s", out)
	}
	if got := e.Stats().PortsInUse - base; got != 4*2*2 {
		t.Fatalf("%d ports in use, want 16 (4 streams, 2 legs, a pair each)", got)
	}
	ans := must(s.Answer(SideB, desc(loopback, five...)))
	if at, _ := streamAt(t, ans, 4); at.Port() != 0 {
		t.Fatalf("the fifth stream answered:\n%s", ans)
	}
	if st := s.Stats(); len(st.Streams) != 4 || st.Declined != 1 {
		t.Fatalf("%d streams, %d declined; want 4 and 1", len(st.Streams), st.Declined)
	}

	base = e.Stats().PortsInUse
	s2, err := e.NewSession("twenty", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var many []string
	for range 20 {
		many = append(many, audioSec(a))
	}
	out = must(s2.Offer(SideA, desc(loopback, many...)))
	if got := e.Stats().PortsInUse - base; got != 2*2+3*2*2 {
		t.Fatalf("%d ports in use for twenty m-lines, want 16", got)
	}
	if n := strings.Count(string(out), "m=audio 0 "); n != 16 {
		t.Fatalf("%d m-lines declined, want 16:\n%s", n, out)
	}
	s2.Reject(SideA)
	if got := e.Stats().PortsInUse - base; got != 4 {
		t.Fatalf("%d ports in use after Reject, want the session's own 4", got)
	}
}

// TestT38SecuredOnly: UDPTL cannot be SRTP, so towards a Secured leg a fax
// offered alone is refused with a reason naming it, and one offered beside
// audio is declined while the audio goes on secured.
func TestT38SecuredOnly(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	fa := newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	s, err := e.NewSession("fax-sec", plain, secured, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Offer(SideA, desc(loopback, imageSec(fa)))
	if !errors.Is(err, ErrNotAcceptable) || !strings.Contains(err.Error(), "secured only") || !strings.Contains(err.Error(), "T.38") {
		t.Fatalf("Offer = %v, want ErrNotAcceptable naming T.38 and the secured leg", err)
	}
	out := must(s.Offer(SideA, desc(loopback, audioSec(fa), imageSec(fa))))
	if at, _ := streamAt(t, out, 1); at.Port() != 0 {
		t.Fatalf("T.38 offered in clear to a secured leg:\n%s", out)
	}
	if _, m := streamAt(t, out, 0); strings.Join(m.MediaName.Protos, "/") != "RTP/SAVP" {
		t.Fatalf("audio not secured:\n%s", out)
	}
}

// TestT38KeepsCallAlive: the inactivity timer counts UDPTL datagrams.
func TestT38KeepsCallAlive(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.InactivityTimeout = 400 * time.Millisecond })
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	fired := make(chan struct{}, 1)
	s, err := e.NewSession("fax-alive", plain, plain, func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must(s.Offer(SideA, a.sdp("RTP/AVP", "0")))
	must(s.Answer(SideB, b.sdp("RTP/AVP", "0")))
	must(s.Offer(SideB, desc(loopback, imageSec(fb))))
	first := must(s.Answer(SideA, desc(loopback, imageSec(fa))))
	again := must(s.Answer(SideA, desc(loopback, imageSec(fa)))) // a repeated answer (183, then 200)
	if !bytes.Equal(first, again) {
		t.Fatalf("a repeated answer differs:\n%s\n%s", first, again)
	}
	toAFax, _ := streamAt(t, first, 0)
	stop := time.Now().Add(time.Second)
	for seq := uint16(0); time.Now().Before(stop); seq++ {
		fa.rtp.WriteToUDPAddrPort(udptlPacket(seq), toAFax)
		time.Sleep(40 * time.Millisecond)
		select {
		case <-fired:
			t.Fatal("the inactivity timeout fired while T.38 flowed")
		default:
		}
	}
	select {
	case <-fired:
	case <-time.After(2 * time.Second):
		t.Fatal("no inactivity timeout after the fax stopped")
	}
}

// TestT38AfterSRTPIsPlain: a leg that spoke SRTP (opportunistic, RFC 8643)
// carries the T.38 that replaces its audio plain: UDPTL never goes through
// SRTP, nor back.
func TestT38AfterSRTPIsPlain(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	_, line := peerKey(t, 1, 0)
	s, _, _, offerToB, _ := call(t, e, plain, LegProfile{Local: loopback, Security: SecurityBoth}, a.sdp("RTP/AVP", "0"),
		func([]byte) []byte { return b.sdp("RTP/AVP", "0", line) })
	if !strings.Contains(string(offerToB), "a=crypto:") || !s.Stats().Legs[SideB].Secure {
		t.Fatalf("leg B does not speak SRTP:\n%s", offerToB)
	}
	offerToA := must(s.Offer(SideB, desc(loopback, imageSec(fb))))
	answerToB := must(s.Answer(SideA, desc(loopback, imageSec(fa))))
	wantT38(t, offerToA, 0, 0)
	wantT38(t, answerToB, 0, 0)
	toA, _ := streamAt(t, offerToA, 0)
	toB, _ := streamAt(t, answerToB, 0)
	crosses(t, fa.rtp, udptlPacket(0), toA, fb.rtp, toB)
	crosses(t, fb.rtp, udptlPacket(0), toB, fa.rtp, toA)
	crosses(t, fb.rtp, rtpPacket(0, 1, 0, 0xB), toB, fa.rtp, toA) // RTP-looking bytes: relayed as they are
	if st := s.Stats().Legs[SideB]; st.Secure || st.SRTPFailures != 0 || st.PacketsIn != 2 {
		t.Errorf("leg B after T.38: secure %v, SRTP failures %d, %d in", st.Secure, st.SRTPFailures, st.PacketsIn)
	}
}

// TestOfferReplacedWhilePending: a second offer from the same side while
// the first waits replaces it once it is good, the first's new pairs
// released; one that fails leaves the first standing, and with it the
// primary's pairs it opened again.
func TestOfferReplacedWhilePending(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a, b, va, vb, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s, _, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	base := e.Stats().PortsInUse
	wantInUse := func(when string, n int) {
		t.Helper()
		if got := e.Stats().PortsInUse; got != n {
			t.Fatalf("%s: %d ports in use, want %d", when, got, n)
		}
	}
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(va))))
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(va))))
	wantInUse("a video offer replaced by another", base+4)
	srtp := fmt.Sprintf("m=audio %d RTP/SAVP 0\r\n", a.addr().Port())
	if _, err := s.Offer(SideA, desc(loopback, srtp, videoSec(va))); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("an SRTP offer on a not-secured leg: %v", err)
	}
	wantInUse("the failed offer", base+4)
	offerToB := must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(va))))
	answerToA := must(s.Answer(SideB, desc(loopback, audioSec(b), videoSec(vb))))
	vidA, _ := streamAt(t, answerToA, 1)
	vidB, _ := streamAt(t, offerToB, 1)
	crosses(t, va.rtp, rtpPacket(96, 1, 0, 0xAA), vidA, vb.rtp, vidB)
	wantInUse("video answered", base+4)

	// Fax beside declined audio, video gone: the audio's pairs go.
	audioOff, videoOff := "m=audio 0 RTP/AVP 0\r\n", "m=video 0 RTP/AVP 96\r\n"
	must(s.Offer(SideA, desc(loopback, audioOff, videoOff, imageSec(fa))))
	must(s.Answer(SideB, desc(loopback, audioOff, videoOff, imageSec(fb))))
	wantInUse("fax only", base)
	// The callee brings audio back twice before an answer, then a third
	// time with an offer that fails: the audio's new pairs pass from offer
	// to offer and stay with the one pending.
	imageOff := "m=image 0 udptl t38\r\n"
	must(s.Offer(SideB, desc(loopback, audioSec(b), videoOff, imageOff)))
	offerToA := must(s.Offer(SideB, desc(loopback, audioSec(b), videoOff, imageOff)))
	wantInUse("audio offered again, twice", base+4)
	bad := fmt.Sprintf("m=audio %d RTP/SAVP 0\r\n", b.addr().Port())
	if _, err := s.Offer(SideB, desc(loopback, bad, videoOff, imageOff)); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("an SRTP offer on a not-secured leg: %v", err)
	}
	wantInUse("the failed offer", base+4)
	answerToB := must(s.Answer(SideA, desc(loopback, audioSec(a), videoOff, imageOff)))
	wantInUse("audio answered, fax gone", base)
	toA, _ := streamAt(t, offerToA, 0)
	toB, _ := streamAt(t, answerToB, 0)
	crosses(t, a.rtp, rtpPacket(0, 5, 800, 0xA), toA, b.rtp, toB)
	crosses(t, b.rtp, rtpPacket(0, 5, 800, 0xB), toB, a.rtp, toA)
}

// TestImageProtoCaseSignificant: SDP's proto is case-significant (RFC 8866
// §5) and T.38's is "udptl": an image stream spelled otherwise is declined
// beside the audio, which goes on.
func TestImageProtoCaseSignificant(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a := newPeer(t)
	s, err := e.NewSession("case", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := must(s.Offer(SideA, desc(loopback, audioSec(a), fmt.Sprintf("m=image %d UDPTL t38\r\n", a.addr().Port()+2)+t38Attrs)))
	if at, m := streamAt(t, out, 1); at.Port() != 0 || m.MediaName.Media != "image" || strings.Join(m.MediaName.Protos, "/") != "UDPTL" || len(m.Attributes) != 0 {
		t.Fatalf("m=image UDPTL not declined in its place:\n%s", out)
	}
	if at, _ := streamAt(t, out, 0); at.Port() == 0 {
		t.Fatalf("the audio was declined:\n%s", out)
	}
}

// TestUDPTLRelayAllocs: a relayed UDPTL datagram costs no allocation, as
// an RTP packet does not.
func TestUDPTLRelayAllocs(t *testing.T) {
	w, s := harness(t, plain, plain)
	for _, l := range s.legs {
		l.kind, l.sdpRTP = kindUDPTL, netip.MustParseAddrPort("127.0.0.1:9")
	}
	pkt := udptlPacket(1)
	receiveOne(w, s.legs[SideA], false, pkt) // latches
	if n := testing.AllocsPerRun(100, func() { receiveOne(w, s.legs[SideA], false, pkt) }); n != 0 {
		t.Errorf("%v allocations per relayed UDPTL datagram", n)
	}
	if st := s.legs[SideA].stats; st.packetsIn != 102 || st.strays != 0 {
		t.Errorf("%d in, %d strays; want 102, 0", st.packetsIn, st.strays)
	}
}
