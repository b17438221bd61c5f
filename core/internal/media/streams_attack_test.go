package media

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStreamFlapNoLeak: a signalling peer that flaps one session's media
// a thousand times — T.38 in place and back, video added and declined, a
// fax beside audio, offers replaced, rejected, answered with streams
// declined, offers the engine refuses — leaves no pair and no descriptor
// behind: between rounds the session holds exactly what its last answer
// anchored, and after Close and Engine.Close every socket is gone.
func TestStreamFlapNoLeak(t *testing.T) {
	a, b := newPeer(t), newPeer(t)
	fds := openFDs(t)
	e := newTestEngine(t, 24, nil)
	s := newSession(t, e, plain, plain)
	base := e.Stats().PortsInUse // the session's own pairs
	audio := func(p *peer) string { return audioSec(p) }
	audioOff, imageOff, videoOff := "m=audio 0 RTP/AVP 0\r\n", "m=image 0 udptl t38\r\n", "m=video 0 RTP/AVP 96\r\n"
	offer := func(from Side, sec ...string) []byte {
		t.Helper()
		return must(s.Offer(from, desc(loopback, sec...)))
	}
	answer := func(from Side, sec ...string) {
		t.Helper()
		must(s.Answer(from, desc(loopback, sec...)))
	}
	inUse := func(when string, streams int) {
		t.Helper()
		if got, want := e.Stats().PortsInUse, base+4*(streams-1); got != want {
			t.Fatalf("%s: %d ports in use, want %d (%d streams)", when, got, want, streams)
		}
	}
	offer(SideA, audio(a))
	answer(SideB, audio(b))
	for i := range 1000 {
		switch i % 8 {
		case 0: // T.38 in place, and back
			offer(SideB, imageSec(b))
			answer(SideA, imageSec(a))
			inUse("T.38 in place", 1)
			offer(SideA, audio(a))
			answer(SideB, audio(b))
		case 1: // video added, then declined by the answerer
			offer(SideA, audio(a), videoSec(a))
			answer(SideB, audio(b), videoSec(b))
			inUse("audio and video", 2)
			offer(SideB, audio(b), videoSec(b))
			answer(SideA, audio(a), videoOff)
		case 2: // a fax beside audio, audio declined, and back
			offer(SideA, audioOff, imageSec(a))
			answer(SideB, audioOff, imageSec(b))
			inUse("fax beside declined audio", 1)
			offer(SideB, audio(b), imageOff)
			answer(SideA, audio(a), imageOff)
		case 3: // an offer of three new streams replaced, then the replacement rejected
			offer(SideA, audio(a), videoSec(a), videoSec(a), imageSec(a))
			offer(SideA, audio(a), videoSec(a))
			s.Reject(SideA)
		case 4: // an offer the engine refuses after opening pairs for it
			if _, err := s.Offer(SideA, desc(loopback, audio(a)+"a=rtpmap:0 PCMU\r\n", videoSec(a))); !errors.Is(err, ErrBadSDP) {
				t.Fatalf("an offer whose audio has a bad a=rtpmap: %v", err)
			}
		case 5: // an answer declining every added stream
			offer(SideB, audio(b), videoSec(b), imageSec(b), videoSec(b))
			answer(SideA, audio(a), videoOff, imageOff, videoOff)
		case 6: // a pending offer the other side's offer cannot displace (glare)
			offer(SideA, audio(a), videoSec(a))
			if _, err := s.Offer(SideB, desc(loopback, audio(b))); !errors.Is(err, ErrNotAcceptable) {
				t.Fatalf("glare: %v", err)
			}
			s.Reject(SideA)
		case 7: // an answer the engine refuses leaves the offer pending; then rejected
			offer(SideA, audio(a), videoSec(a), imageSec(a))
			if _, err := s.Answer(SideB, desc(loopback, "m=audio 9 RTP/AVP 8\r\n", videoOff, imageOff)); err == nil {
				t.Fatal("an answer without an offered codec was accepted")
			}
			s.Reject(SideA)
		}
		inUse("after round "+strconv.Itoa(i), 1)
	}
	offer(SideA, audio(a), videoSec(a))
	closeLeaksNothing(t, e, s, fds)
}

// closeLeaksNothing closes s, e's only session, and then e: no port may be
// in use after the first, no descriptor beyond the fds open before e
// started after the second.
func closeLeaksNothing(t *testing.T, e *Engine, s *Session, fds int) {
	t.Helper()
	s.Close()
	if got := e.Stats().PortsInUse; got != 0 {
		t.Fatalf("%d ports in use after Close", got)
	}
	e.Close()
	if got := openFDs(t); got != fds {
		t.Fatalf("%d descriptors open after Engine.Close, %d before it started", got, fds)
	}
}

// TestAnswerMLinesMatchOffer: RFC 3264 §6 — the answer has exactly the
// offer's m-lines, each of the offer's media type. An answer with fewer or
// more is refused (it would reach the offerer as an answer it cannot
// match up), and one that puts another media type or transport at an
// index is that stream declined, the offerer seeing its own m-line back
// with port 0, never the answerer's.
func TestAnswerMLinesMatchOffer(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a, b := newPeer(t), newPeer(t)
	for _, tt := range []struct {
		name      string
		giveOffer []string
		giveAns   []string
		wantErr   error
		wantLines []string // the answer to A, m-line by m-line: media, port 0 or not ("x" any), proto
	}{
		{name: "fewer m-lines", giveOffer: []string{audioSec(a), videoSec(a)}, giveAns: []string{audioSec(b)}, wantErr: ErrBadSDP},
		{name: "more m-lines", giveOffer: []string{audioSec(a)}, giveAns: []string{audioSec(b), videoSec(b)}, wantErr: ErrBadSDP},
		{name: "fewer, the offer's extra declined", giveOffer: []string{audioSec(a), "m=video 0 RTP/AVP 96\r\n"}, giveAns: []string{audioSec(b)}, wantErr: ErrBadSDP},
		{
			name: "audio where the offer had image", giveOffer: []string{audioSec(a), imageSec(a)}, giveAns: []string{audioSec(b), audioSec(b)},
			wantLines: []string{"audio x RTP/AVP", "image 0 udptl"},
		},
		{
			name: "image over RTP/AVP", giveOffer: []string{audioSec(a), imageSec(a)}, giveAns: []string{audioSec(b), "m=image 5004 RTP/AVP 0\r\n"},
			wantLines: []string{"audio x RTP/AVP", "image 0 udptl"},
		},
		{
			name: "video where the offer had audio", giveOffer: []string{audioSec(a), videoSec(a)}, giveAns: []string{audioSec(b), "m=audio 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"},
			wantLines: []string{"audio x RTP/AVP", "video 0 RTP/AVP"},
		},
		{
			name: "a declined line spelled otherwise", giveOffer: []string{audioSec(a), imageSec(a)}, giveAns: []string{audioSec(b), "m=audio 0 RTP/AVP 0\r\n"},
			wantLines: []string{"audio x RTP/AVP", "image 0 udptl"},
		},
		{
			name: "a stream the offer declined accepted", giveOffer: []string{audioSec(a), "m=video 0 RTP/AVP 96\r\n"}, giveAns: []string{audioSec(b), videoSec(b)},
			wantLines: []string{"audio x RTP/AVP", "video 0 RTP/AVP"},
		},
		{
			name: "the primary audio answered as video", giveOffer: []string{audioSec(a), videoSec(a)}, giveAns: []string{videoSec(b), videoSec(b)},
			wantErr: ErrNotAcceptable,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession(t, e, plain, plain)
			base := e.Stats().PortsInUse
			must(s.Offer(SideA, desc(loopback, tt.giveOffer...)))
			ans, err := s.Answer(SideB, desc(loopback, tt.giveAns...))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Answer: %v, want %v\n%s", err, tt.wantErr, ans)
				}
				s.Reject(SideA)
				if got := e.Stats().PortsInUse; got != base {
					t.Fatalf("%d ports in use after Reject", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Answer: %v", err)
			}
			sd, err := parseSDP(ans)
			if err != nil {
				t.Fatal(err)
			}
			if len(sd.MediaDescriptions) != len(tt.wantLines) {
				t.Fatalf("%d m-lines to A, want %d:\n%s", len(sd.MediaDescriptions), len(tt.wantLines), ans)
			}
			for i, want := range tt.wantLines {
				m := sd.MediaDescriptions[i].MediaName
				f := strings.Fields(want)
				if m.Media != f[0] || strings.Join(m.Protos, "/") != f[2] || (f[1] == "0") != (m.Port.Value == 0) {
					t.Errorf("m-line %d to A is m=%s %d %s, want %s:\n%s", i, m.Media, m.Port.Value, strings.Join(m.Protos, "/"), want, ans)
				}
			}
			if got := e.Stats().PortsInUse; got != base {
				t.Errorf("%d ports in use, want %d: the declined stream's pairs are released", got, base)
			}
		})
	}
}

// TestOversizeDatagramDropped: a datagram larger than the engine's buffer
// (a 65507-byte UDPTL datagram, a 4000-byte RTP packet over a jumbo or
// fragmenting path) is read cut at the buffer's end: it is counted and
// dropped, never relayed cut; one that fits goes on, to its last byte.
func TestOversizeDatagramDropped(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	crosses(t, a.rtp, rtpPacket(0, 1, 0, 0xA), toA, b.rtp, toB)
	crosses(t, b.rtp, rtpPacket(0, 1, 0, 0xB), toB, a.rtp, toA)
	big := append(rtpPacket(0, 2, 160, 0xA), make([]byte, 4000)...)
	dropped(t, "a 4172-byte RTP packet", a.rtp, big, toA, b.rtp)
	fits := append(rtpPacket(0, 3, 320, 0xA), make([]byte, bufSize-172)...)
	crosses(t, a.rtp, fits, toA, b.rtp, toB)

	must(s.Offer(SideB, desc(loopback, imageSec(fb))))
	must(s.Answer(SideA, desc(loopback, imageSec(fa))))
	crosses(t, fa.rtp, udptlPacket(0), toA, fb.rtp, toB)
	strays := s.Stats().Legs[SideA].Strays
	dropped(t, "a 65507-byte UDPTL datagram", fa.rtp, append(udptlPacket(1), make([]byte, 65507-9)...), toA, fb.rtp)
	dropped(t, "an empty UDPTL datagram", fa.rtp, nil, toA, fb.rtp)
	crosses(t, fa.rtp, append(udptlPacket(2), make([]byte, bufSize-9)...), toA, fb.rtp, toB)
	if got := s.Stats().Legs[SideA].Strays - strays; got != 2 {
		t.Errorf("%d strays counted for the oversize and the empty datagram, want 2", got)
	}
}

// TestOfferRefusedAfterOpening: a call whose primary audio is its second
// m-line; a re-offer opens pairs for a video stream before the audio
// fails (a bad a=rtpmap): the offer is refused and the video's pairs are
// back, the call's media as it was.
func TestOfferRefusedAfterOpening(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s := newSession(t, e, plain, plain)
	videoOff := "m=video 0 RTP/AVP 96\r\n"
	must(s.Offer(SideA, desc(loopback, videoOff, audioSec(a))))
	must(s.Answer(SideB, desc(loopback, videoOff, audioSec(b))))
	base := e.Stats().PortsInUse
	if _, err := s.Offer(SideA, desc(loopback, videoSec(a), audioSec(a)+"a=rtpmap:0 PCMU\r\n")); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("Offer = %v, want ErrBadSDP", err)
	}
	if got := e.Stats().PortsInUse; got != base {
		t.Fatalf("%d ports in use after the refused offer, want %d", got, base)
	}
	must(s.Offer(SideA, desc(loopback, videoSec(a), audioSec(a))))
	must(s.Answer(SideB, desc(loopback, videoSec(b), audioSec(b))))
	if st := s.Stats(); len(st.Streams) != 2 || !st.Streams[1].Primary {
		t.Fatalf("streams %+v, want video and the primary audio", st.Streams)
	}
}

// TestStreamsPortExhaustion: an offer of four streams when the pool has
// pairs for one more only: the streams that got pairs go out, the rest
// are declined, no half-opened stream keeps a pair; a declined primary
// that cannot get pairs back is ErrNoPorts (503), not 488.
func TestStreamsPortExhaustion(t *testing.T) {
	e := newTestEngine(t, 5, nil) // the session's 2 pairs, 3 free (some may be busy)
	a, b := newPeer(t), newPeer(t)
	s := newSession(t, e, plain, plain)
	must(s.Offer(SideA, desc(loopback, audioSec(a))))
	must(s.Answer(SideB, desc(loopback, audioSec(b))))
	free := e.Stats().PortsFree / 2
	t.Logf("%d pairs free", free)
	out := must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), videoSec(a), imageSec(a))))
	sd, err := parseSDP(out)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	for _, m := range sd.MediaDescriptions[1:] {
		if m.MediaName.Port.Value != 0 {
			open++
		}
	}
	if open != free/2 {
		t.Fatalf("%d added streams went out with %d free pairs, want %d:\n%s", open, free, free/2, out)
	}
	if got := e.Stats().PortsFree / 2; got != free%2 {
		t.Fatalf("%d pairs free after the offer, want %d (a half-opened stream gives its pair back)", got, free%2)
	}
	s.Reject(SideA)
	if got := e.Stats().PortsFree / 2; got != free {
		t.Fatalf("%d pairs free after Reject, want %d", got, free)
	}

	// The primary declined (its pairs back), the pool then taken by
	// another session: bringing the audio back is 503's error.
	must(s.Offer(SideA, desc(loopback, "m=audio 0 RTP/AVP 0\r\n", imageSec(a))))
	must(s.Answer(SideB, desc(loopback, "m=audio 0 RTP/AVP 0\r\n", imageSec(b))))
	var others []*Session
	for {
		o, err := e.NewSession("taker", plain, plain, nil)
		if err != nil {
			break
		}
		others = append(others, o)
	}
	_, err = s.Offer(SideB, desc(loopback, audioSec(b), "m=image 0 udptl t38\r\n"))
	if !errors.Is(err, ErrNoPorts) {
		t.Fatalf("audio back with no pair free: %v, want ErrNoPorts", err)
	}
	for _, o := range others {
		o.Close()
	}
	must(s.Offer(SideB, desc(loopback, audioSec(b), "m=image 0 udptl t38\r\n")))
}

// TestClosePendingOffer: Close while an offer that opened three streams
// waits for its answer returns every pair and descriptor.
func TestClosePendingOffer(t *testing.T) {
	a := newPeer(t)
	fds := openFDs(t)
	e := newTestEngine(t, 16, nil)
	s := newSession(t, e, plain, plain)
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), videoSec(a), imageSec(a))))
	closeLeaksNothing(t, e, s, fds)
}

// TestDeclinedStreamFlood: a flood at the ports of a stream a re-INVITE
// declined costs nothing but a counter: its pair is closed or idle, and no
// worker reads it.
func TestDeclinedStreamFlood(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a, b := newPeer(t), newPeer(t)
	s := newSession(t, e, plain, plain)
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a))))
	ans := must(s.Answer(SideB, desc(loopback, audioSec(b), videoSec(b))))
	video, _ := streamAt(t, ans, 1)
	must(s.Offer(SideB, desc(loopback, audioSec(b), "m=video 0 RTP/AVP 96\r\n")))
	must(s.Answer(SideA, desc(loopback, audioSec(a), "m=video 0 RTP/AVP 96\r\n")))
	floodCostsNothing(t, e, video, "a declined video stream's port")
	floodCostsNothing(t, e, netip.AddrPortFrom(video.Addr(), video.Port()+1), "a declined video stream's RTCP port")
}

// TestAddressFamilyMismatch: a leg's sockets are of its local address's
// family, so a stream whose SDP names the other family (a per-m-line c=
// of IPv6 on an IPv4 leg, an a=rtcp address) can never be sent to: the
// primary is not acceptable (488), another stream is declined, in an offer
// and in an answer. A hold address of either family is no peer at all.
func TestAddressFamilyMismatch(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a, b := newPeer(t), newPeer(t)
	v6 := func(sec string) string {
		head, rest, _ := strings.Cut(sec, "\r\n")
		return head + "\r\nc=IN IP6 ::1\r\n" + rest
	}
	s := newSession(t, e, plain, plain)
	if _, err := s.Offer(SideA, desc(loopback, v6(audioSec(a)))); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("an IPv6 audio stream offered to an IPv4 leg: %v, want ErrNotAcceptable", err)
	}
	if _, err := s.Offer(SideA, desc(loopback, audioSec(a)+"a=rtcp:5005 IN IP6 ::1\r\n")); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("an IPv6 a=rtcp on an IPv4 leg: %v, want ErrNotAcceptable", err)
	}
	out := must(s.Offer(SideA, desc(loopback, audioSec(a), v6(videoSec(a)), v6(imageSec(a)))))
	for i := 1; i <= 2; i++ {
		if at, _ := streamAt(t, out, i); at.Port() != 0 {
			t.Errorf("m-line %d of IPv6 went out to an IPv4 leg with port %d:\n%s", i, at.Port(), out)
		}
	}
	s.Reject(SideA)
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), imageSec(a))))
	ans := must(s.Answer(SideB, desc(loopback, audioSec(b), v6(videoSec(b)), v6(imageSec(b)))))
	for i := 1; i <= 2; i++ {
		if at, _ := streamAt(t, ans, i); at.Port() != 0 {
			t.Errorf("m-line %d answered over IPv6 by an IPv4 leg's peer went to A with port %d:\n%s", i, at.Port(), ans)
		}
	}
	must(s.Offer(SideB, []byte(strings.Replace(string(desc(loopback, audioSec(b))), "c=IN IP4 127.0.0.1", "c=IN IP6 ::", 1))))
	must(s.Answer(SideA, desc(loopback, audioSec(a))))
	// An IPv4-mapped IPv6 address is the IPv4 one.
	must(s.Offer(SideA, []byte(strings.Replace(string(desc(loopback, audioSec(a))), "c=IN IP4 127.0.0.1", "c=IN IP6 ::ffff:127.0.0.1", 1))))
	must(s.Answer(SideB, desc(loopback, audioSec(b))))
	if got := s.Stats().Legs[SideA].Remote; got != a.addr() {
		t.Fatalf("leg A sends to %s, want %s", got, a.addr())
	}
}

// TestStatsAfterClose: the B2BUA writes a call's CDR from Stats after it
// closed the session: every stream's legs still name the local addresses
// they had, and the JSON carries the streams; a stream declined before
// the end has none.
func TestStatsAfterClose(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a, b := newPeer(t), newPeer(t)
	s := newSession(t, e, plain, plain)
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), imageSec(a))))
	must(s.Answer(SideB, desc(loopback, audioSec(b), videoSec(b), "m=image 0 udptl t38\r\n")))
	live := s.Stats()
	s.Close()
	end := s.Stats()
	if len(end.Streams) != 2 || len(live.Streams) != 2 {
		t.Fatalf("streams live %+v, at the end %+v", live.Streams, end.Streams)
	}
	for i := range end.Streams {
		for side := range end.Streams[i].Legs {
			if got, want := end.Streams[i].Legs[side].Local, live.Streams[i].Legs[side].Local; got != want || !got.IsValid() {
				t.Errorf("stream %d leg %d: Local %s after Close, %s before", i, side, got, want)
			}
		}
	}
	if end.Legs != end.Streams[0].Legs {
		t.Errorf("the primary's legs %+v, its stream's %+v", end.Legs, end.Streams[0].Legs)
	}
	j, err := json.Marshal(end)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Streams":[{"Index":0,"Media":"audio","Proto":"rtp","Primary":true,`, `{"Index":1,"Media":"video","Proto":"rtp","Primary":false,`, `"Local":"127.0.0.1:`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("the CDR's media has no %s:\n%s", want, j)
		}
	}
}

// TestStreamKeysDistinct: towards a Secured leg every stream gets keys of
// its own (a key shared by two streams would be a two-time pad wherever
// their SSRC and sequence meet), and a packet SRTP-protected for one
// stream, replayed at another's port, fails there.
func TestStreamKeysDistinct(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a, b, vb := newPeer(t), newPeer(t), newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	s := newSession(t, e, plain, secured)
	offerToB := must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), videoSec(a))))
	seen := map[string]int{}
	sd, err := parseSDP(offerToB)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range sd.MediaDescriptions {
		for _, at := range m.Attributes {
			if at.Key == "crypto" {
				c, err := parseCrypto(at.Value)
				if err != nil {
					t.Fatal(err)
				}
				if j, dup := seen[string(c.key.key)]; dup {
					t.Fatalf("m-lines %d and %d carry the same key:\n%s", j, i, offerToB)
				}
				seen[string(c.key.key)] = i
			}
		}
	}
	if len(seen) < 3 {
		t.Fatalf("%d keys for three streams:\n%s", len(seen), offerToB)
	}
	ka, la := peerKey(t, 1, 0)
	_, lv := peerKey(t, 1, 0)
	sec := func(p *peer, media, pt, line string) string {
		return "m=" + media + " " + strconv.Itoa(int(p.addr().Port())) + " RTP/SAVP " + pt + "\r\na=" + line + "\r\n"
	}
	h264 := "96\r\na=rtpmap:96 H264/90000"
	must(s.Answer(SideB, desc(loopback, sec(b, "audio", "0", la), sec(vb, "video", h264, lv), sec(vb, "video", h264, lv))))
	toBVideo, _ := streamAt(t, offerToB, 1)
	enc, err := ka.context(false)
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := enc.EncryptRTP(nil, rtpPacket(96, 1, 0, 0xB), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.rtp.WriteToUDPAddrPort(pkt, toBVideo) // the audio key's packet at the video port
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l := s.Stats().Streams[1].Legs[SideB]
		if l.SRTPFailures == 1 && l.PacketsIn == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("video leg B after the audio-keyed packet: %+v", l)
		}
	}
}

// TestPortEdges: SDP ports 1 and 65535 and odd ones are read as given;
// RTCP goes to RTP+1 (RFC 3605), and where that is past 65535 a stream
// without a=rtcp has no RTCP address at all, never port 0.
func TestPortEdges(t *testing.T) {
	for _, tt := range []struct {
		name     string
		giveLine string
		wantRTP  uint16
		wantRTCP uint16 // 0: none
	}{
		{name: "port 1", giveLine: "m=audio 1 RTP/AVP 0\r\n", wantRTP: 1, wantRTCP: 2},
		{name: "odd port", giveLine: "m=audio 5001 RTP/AVP 0\r\n", wantRTP: 5001, wantRTCP: 5002},
		{name: "port 65535", giveLine: "m=audio 65535 RTP/AVP 0\r\n", wantRTP: 65535},
		{name: "port 65535 with a=rtcp", giveLine: "m=audio 65535 RTP/AVP 0\r\na=rtcp:65534\r\n", wantRTP: 65535, wantRTCP: 65534},
		{name: "image at 65535", giveLine: "m=image 65535 udptl t38\r\n", wantRTP: 65535},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sd, err := parseSDP(desc(loopback, tt.giveLine))
			if err != nil {
				t.Fatal(err)
			}
			kind, _ := classify(sd.MediaDescriptions[0])
			r, err := readRemote(sd, 0, kind)
			if err != nil {
				t.Fatal(err)
			}
			if r.rtp.Port() != tt.wantRTP || (tt.wantRTCP == 0) == r.rtcp.IsValid() || (tt.wantRTCP != 0 && r.rtcp.Port() != tt.wantRTCP) {
				t.Errorf("RTP %s, RTCP %s; want ports %d and %d (0: none)", r.rtp, r.rtcp, tt.wantRTP, tt.wantRTCP)
			}
		})
	}
}

// TestClassifyProtos: the engine anchors RTP over UDP only, in the four
// profiles it relays (RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF); RTP over TCP
// (RTP/AVP/TCP, TCP/RTP/AVP, RFC 4571), DTLS-SRTP and the like are
// declined, as udptl over anything but UDP is.
func TestClassifyProtos(t *testing.T) {
	for _, tt := range []struct {
		giveLine string
		wantOK   bool
	}{
		{"m=audio 5000 RTP/AVP 0", true}, {"m=audio 5000 RTP/SAVP 0", true}, {"m=video 5000 RTP/AVPF 96", true},
		{"m=video 5000 RTP/SAVPF 96", true}, {"m=image 5000 udptl t38", true},
		{"m=audio 5000 RTP/AVP/TCP 0", false}, {"m=video 5000 RTP/AVPF/TCP 96", false}, {"m=audio 5000 TCP/RTP/AVP 0", false},
		{"m=audio 5000 UDP/TLS/RTP/SAVPF 0", false}, {"m=audio 5000 RTP/SAVP/TLS 0", false}, {"m=audio 5000 RTP 0", false},
		{"m=image 5000 TCP/udptl t38", false}, {"m=image 5000 UDP/TLS/UDPTL t38", false}, {"m=audio 0 RTP/AVP 0", false},
	} {
		sd, err := parseSDP(desc(loopback, tt.giveLine+"\r\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.giveLine, err)
		}
		if _, ok := classify(sd.MediaDescriptions[0]); ok != tt.wantOK {
			t.Errorf("%s: anchored %v, want %v", tt.giveLine, ok, tt.wantOK)
		}
	}
}

// TestT38TerminatorAttached: a leg a local terminator took (Attach) relays
// nothing to the other leg, also once its stream turned to T.38 in place:
// the fax's datagrams are not RTP for the terminator, and not the other
// side's either.
func TestT38TerminatorAttached(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s, _, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	rec := &recorder{}
	s.Attach(SideA, rec)
	offerToA := must(s.Offer(SideB, desc(loopback, imageSec(fb))))
	answerToB := must(s.Answer(SideA, desc(loopback, imageSec(fa))))
	toA, _ := streamAt(t, offerToA, 0)
	toB, _ := streamAt(t, answerToB, 0)
	crosses(t, fb.rtp, udptlPacket(0), toB, fa.rtp, toA) // B's side is relayed as ever
	dropped(t, "a fax datagram of the terminated leg", fa.rtp, udptlPacket(0), toA, fb.rtp)
	if rec.count() != 0 {
		t.Fatalf("the terminator got %d UDPTL datagrams as RTP", rec.count())
	}
	s.Attach(SideA, nil)
	crosses(t, fa.rtp, udptlPacket(1), toA, fb.rtp, toB)
}

// TestEngineCloseWithStreams: Engine.Close with a call of three streams
// and a pending offer adding a fourth closes every socket of them.
func TestEngineCloseWithStreams(t *testing.T) {
	a, b := newPeer(t), newPeer(t)
	fds := openFDs(t)
	e := newTestEngine(t, 16, nil)
	s := newSession(t, e, plain, plain)
	must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), imageSec(a))))
	must(s.Answer(SideB, desc(loopback, audioSec(b), videoSec(b), imageSec(b))))
	must(s.Offer(SideB, desc(loopback, audioSec(b), videoSec(b), imageSec(b), videoSec(b))))
	e.Close()
	if got := openFDs(t); got != fds {
		t.Fatalf("%d descriptors after Engine.Close, %d before", got, fds)
	}
}

// TestStreamBoundKeepsLive: when a re-offer reuses declined m-lines for
// new streams (RFC 3264 §8.1 lets it) past the bound, the streams the call
// already anchors stay, on their ports, and the new ones past the bound
// are declined: an offer cannot push a live fax out.
func TestStreamBoundKeepsLive(t *testing.T) {
	e := newTestEngine(t, 24, nil)
	a, b := newPeer(t), newPeer(t)
	s := newSession(t, e, plain, plain)
	off := "m=video 0 RTP/AVP 96\r\n"
	must(s.Offer(SideA, desc(loopback, audioSec(a), off, off, off, imageSec(a))))
	ans := must(s.Answer(SideB, desc(loopback, audioSec(b), off, off, off, imageSec(b))))
	fax, _ := streamAt(t, ans, 4)
	out := must(s.Offer(SideA, desc(loopback, audioSec(a), videoSec(a), videoSec(a), videoSec(a), imageSec(a))))
	if at, _ := streamAt(t, out, 4); at.Port() == 0 {
		t.Fatalf("the live fax stream was declined to make room for new video:\n%s", out)
	}
	open := 0
	for i := 1; i <= 3; i++ {
		if at, _ := streamAt(t, out, i); at.Port() != 0 {
			open++
		}
	}
	if open != 2 {
		t.Fatalf("%d new video streams went out, want 2 (the bound is 4 with audio and fax):\n%s", open, out)
	}
	ans = must(s.Answer(SideB, desc(loopback, audioSec(b), videoSec(b), videoSec(b), videoSec(b), imageSec(b))))
	if at, _ := streamAt(t, ans, 4); at != fax {
		t.Fatalf("the fax moved from %s to %s", fax, at)
	}
	if st := s.Stats(); len(st.Streams) != 4 || st.Declined != 1 {
		t.Fatalf("%d streams, %d declined; want 4 and 1", len(st.Streams), st.Declined)
	}
}

// TestSRTPKeyNotReusedAfterFax: an SRTP leg switched to T.38 in place
// drops its SRTP contexts; back to audio, a context made again with the
// old key would start its packet index over under the same key and SSRC —
// a two-time pad for whatever it encrypts again. So the way back offers a
// fresh key.
func TestSRTPKeyNotReusedAfterFax(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, fa, fb := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	both := LegProfile{Local: loopback, Security: SecurityBoth}
	_, line := peerKey(t, 1, 0)
	s, _, _, offerToB, _ := call(t, e, plain, both, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0", line) })
	if !s.Stats().Legs[SideB].Secure {
		t.Fatalf("leg B does not speak SRTP:\n%s", offerToB)
	}
	first := engineKey(t, offerToB, 1)
	must(s.Offer(SideA, desc(loopback, imageSec(fa))))
	must(s.Answer(SideB, desc(loopback, imageSec(fb))))
	again := must(s.Offer(SideA, a.sdp("RTP/AVP", "0")))
	if engineKey(t, again, 1).equal(first) {
		t.Fatalf("back from the fax leg B is offered the key its dropped context used:\n%s", again)
	}
	must(s.Answer(SideB, b.sdp("RTP/AVP", "0", line)))
	if !s.Stats().Legs[SideB].Secure {
		t.Fatal("leg B is not SRTP again")
	}
}

// TestDeclinedCountsSentOffers: SessionStats.Declined counts the m-lines
// declined in offers that went out, not in one the engine refused.
func TestDeclinedCountsSentOffers(t *testing.T) {
	e := newTestEngine(t, 16, nil)
	a := newPeer(t)
	s := newSession(t, e, plain, plain)
	five := []string{videoSec(a), videoSec(a), videoSec(a), videoSec(a), videoSec(a)}
	if _, err := s.Offer(SideA, desc(loopback, append(five, audioSec(a)+"a=rtpmap:0 PCMU\r\n")...)); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("Offer = %v, want ErrBadSDP", err)
	}
	if st := s.Stats(); st.Declined != 0 {
		t.Fatalf("%d m-lines counted declined for a refused offer", st.Declined)
	}
	must(s.Offer(SideA, desc(loopback, append(five, audioSec(a))...)))
	if st := s.Stats(); st.Declined != 2 {
		t.Fatalf("%d m-lines counted declined, want 2", st.Declined)
	}
}

// TestT38MaxDatagramCapped: a T.38 peer's T38FaxMaxDatagram tells the
// other side how large a datagram it may send; the relay drops what is
// larger than its buffer, so the value passed on is at most that. A value
// within it, or one the engine cannot read, passes untouched.
func TestT38MaxDatagramCapped(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a := newPeer(t)
	for _, tt := range []struct{ give, want string }{
		{"a=T38FaxMaxDatagram:65000", "a=T38FaxMaxDatagram:" + strconv.Itoa(bufSize)},
		{"a=T38FaxMaxDatagram:400", "a=T38FaxMaxDatagram:400"},
		{"a=T38FaxMaxDatagram:huge", "a=T38FaxMaxDatagram:huge"},
		{"a=t38faxmaxdatagram:9000", "a=t38faxmaxdatagram:" + strconv.Itoa(bufSize)}, // some gateways spell it so
	} {
		s := newSession(t, e, plain, plain)
		out := string(must(s.Offer(SideA, desc(loopback, "m=image "+strconv.Itoa(int(a.addr().Port()))+" udptl t38\r\n"+tt.give+"\r\n"))))
		if !strings.Contains(out, tt.want+"\r\n") {
			t.Errorf("%s went out as:\n%s", tt.give, out)
		}
		s.Close()
	}
}
