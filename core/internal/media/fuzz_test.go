package media

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// harness is a session without sockets: the legs' descriptors are -1, so a
// flush fails with EBADF and counts a drop, while everything before it runs
// as on a worker.
func harness(t testing.TB, pa, pb LegProfile) (*worker, *Session) {
	t.Helper()
	w, err := newWorker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.closeFDs)
	s := &Session{id: "fuzz", e: &Engine{cfg: Config{LatchWindow: time.Second}}, w: w, started: time.Now()}
	for i, p := range []LegProfile{pa, pb} {
		s.legs[i] = &leg{sess: s, side: Side(i), prof: p,
			rtp: &sock{fd: -1, port: 30000 + 2*i}, rtcp: &sock{fd: -1, port: 30001 + 2*i, rtcp: true}}
	}
	for i, l := range s.legs {
		l.own = relay{to: s.legs[1-i], w: w}
		l.sink = &l.own
	}
	// A stream an offer adds gets descriptors of -1 too, and ports after
	// the primary's.
	next := 30004
	s.openLeg = func(l *leg) error {
		l.rtp, l.rtcp = &sock{fd: -1, port: next, leg: l}, &sock{fd: -1, port: next + 1, rtcp: true, leg: l}
		next += 2
		return nil
	}
	s.freeLeg = func(*leg) error { return nil }
	return w, s
}

// FuzzSDP feeds arbitrary bodies to Offer and, when accepted, to Answer;
// whatever the engine writes must parse and carry only its own origin.
func FuzzSDP(f *testing.F) {
	_, line := peerKey(f, 1, 0)
	for _, seed := range []string{
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n",
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\na=" + line + "\r\na=rtcp-mux\r\na=sendonly\r\n",
		"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=candidate:1 1 UDP 1 2001:db8::1 4000 typ host\r\na=rtcp:4001 IN IP6 2001:db8::1\r\nm=video 4002 RTP/AVP 96\r\n",
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\na=crypto:1 AEAD_AES_128_GCM inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\r\n",
		// T.38 replacing audio, beside a declined audio line, and beside
		// video; malformed T38 attributes; a proto spelled otherwise.
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=image 4000 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\na=T38FaxRateManagement:transferredTCF\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n",
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=image 4002 udptl t38\r\na=T38FaxMaxDatagram\r\na=T38FaxVersion:x:y\r\n",
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=image 4004 UDPTL t38\r\nm=image 4006 udptl\r\nm=message 4008 TCP/MSRP *\r\n",
		"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/SAVP 96\r\nm=video 4004 RTP/AVP 97\r\nm=video 4006 RTP/AVP 98\r\nm=video 4008 RTP/AVP 99\r\nm=image 4010 udptl t38\r\n",
	} {
		f.Add([]byte(seed), uint8(0), uint8(3))
		f.Add([]byte(seed), uint8(4), uint8(3)) // the legs on IPv6
	}
	f.Fuzz(func(t *testing.T, body []byte, secA, secB uint8) {
		// A leg's media is of one family: secA's bit 2 picks it.
		local := netip.MustParseAddr("203.0.113.5")
		if secA&4 != 0 {
			local = netip.MustParseAddr("2001:db8:ffff::5")
		}
		_, s := harness(t, LegProfile{Local: local, Security: Security(secA % 4)}, LegProfile{Local: local, Security: Security(secB % 4), Codecs: []string{"PCMA", "PCMU"}})
		out, err := s.Offer(SideA, body)
		if err != nil {
			return
		}
		check(t, out, local)
		if out, err = s.Answer(SideB, body); err == nil {
			check(t, out, local)
		}
	})
}

func check(t *testing.T, out []byte, local netip.Addr) {
	t.Helper()
	sd, err := parseSDP(out) // pion's parser with m=image (T.38) let through, as the engine reads
	if err != nil {
		t.Fatalf("engine wrote SDP that does not parse: %v\n%s", err, out)
	}
	if sd.Origin.Username != "umedge" || sd.Origin.UnicastAddress != local.String() {
		t.Fatalf("origin %+v leaks or is not ours", sd.Origin)
	}
	if strings.Contains(string(out), "192.0.2.1") || strings.Contains(string(out), "2001:db8::1") {
		t.Fatalf("the other side's address leaked:\n%s", out)
	}
}

// FuzzPacket runs arbitrary datagrams through the receive path of a plain
// leg relaying to a Secured one: demultiplexing, latching, statistics,
// RTCP, STUN and the encryption towards the other leg.
func FuzzPacket(f *testing.F) {
	f.Add(rtpPacket(0, 1, 160, 1), false)
	f.Add([]byte{0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, true)
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, false)
	f.Add(append([]byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1}, 1, 2, 3, 4), false)
	f.Fuzz(func(t *testing.T, pkt []byte, onRTCP bool) {
		w, s := harness(t, plain, LegProfile{Local: loopback, Security: SecuritySRTP})
		a, b := s.legs[SideA], s.legs[SideB]
		k, _ := newKey(0)
		b.secure, b.tx = true, mustContext(t, k, false)
		b.sdpRTP, b.sdpRTCP = netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.1:10")
		a.ice = &iceCreds{ufrag: "abcd", pwd: "0123456789012345678901"}
		receiveOne(w, a, onRTCP, pkt)
		receiveOne(w, a, onRTCP, pkt)
	})
}

// FuzzSRTPDecrypt runs arbitrary datagrams through a Secured leg's
// decryption (SRTP and SRTCP, each suite); seeds are valid packets.
func FuzzSRTPDecrypt(f *testing.F) {
	keys := make([]sdesKey, len(suites))
	for i := range suites {
		keys[i], _ = newKey(i)
		keys[i].key = make([]byte, len(keys[i].key)) // fixed key: the corpus stays valid
		enc := mustContext(f, keys[i], false)
		p, _ := enc.EncryptRTP(nil, rtpPacket(0, 7, 1120, 42), nil)
		f.Add(p, uint8(i), false)
		c, _ := enc.EncryptRTCP(nil, []byte{0x81, 201, 0, 7, 0, 0, 0, 42, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil)
		f.Add(c, uint8(i), true)
	}
	f.Add(baresipPlainBye, uint8(0), true) // plain RTCP on an SRTP leg (rtcp_test.go)
	f.Fuzz(func(t *testing.T, pkt []byte, suite uint8, onRTCP bool) {
		w, s := harness(t, LegProfile{Local: loopback, Security: SecuritySRTP}, plain)
		a, b := s.legs[SideA], s.legs[SideB]
		k := keys[int(suite)%len(keys)]
		a.secure, a.rx, a.tx = true, mustContext(t, k, true), mustContext(t, k, false)
		b.sdpRTP, b.sdpRTCP = netip.MustParseAddrPort("127.0.0.1:9"), netip.MustParseAddrPort("127.0.0.1:10")
		receiveOne(w, a, onRTCP, pkt)
		before := a.stats.packetsIn
		receiveOne(w, a, onRTCP, pkt) // the same packet again is a replay, never accepted twice
		if a.stats.packetsIn != before {
			t.Fatalf("a replayed packet was accepted (%d bytes)", len(pkt))
		}
		if _, err := a.ownReport(time.Now().UnixNano()); err != nil { // on whatever the packet left in the stats
			t.Fatalf("own report after %x: %v", pkt, err)
		}
	})
}

// receiveOne puts pkt through l as the worker would: copied into the read
// buffer, received, flushed.
func receiveOne(w *worker, l *leg, onRTCP bool, pkt []byte) {
	if len(pkt) > bufSize {
		pkt = pkt[:bufSize]
	}
	n := copy(w.rbuf[0][:], pkt)
	s := l.rtp
	if onRTCP {
		s = l.rtcp
	}
	l.sess.mu.Lock()
	l.receive(w, s, 0, w.rbuf[0][:n], netip.MustParseAddrPort("192.0.2.9:5000"), time.Now().UnixNano())
	w.flush()
	l.sess.mu.Unlock()
}

// FuzzUDPTL runs arbitrary datagrams through a T.38 leg relaying to
// another: whatever they hold (STUN-, RTP- or DTLS-looking bytes included)
// each is relayed as it is or counted a stray, never decrypted or parsed.
func FuzzUDPTL(f *testing.F) {
	f.Add([]byte{0, 1, 0x06, 0xc0, 0x01, 0x80, 0, 0, 0}, false)
	f.Add(rtpPacket(0, 1, 160, 1), false)
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, pkt []byte, onRTCP bool) {
		w, s := harness(t, plain, plain)
		for _, l := range s.legs {
			l.kind, l.sdpRTP = kindUDPTL, netip.MustParseAddrPort("127.0.0.1:9")
		}
		a := s.legs[SideA]
		receiveOne(w, a, onRTCP, pkt)
		receiveOne(w, a, onRTCP, pkt)
		if got := a.stats.packetsIn + a.stats.strays; got != 2 {
			t.Fatalf("%d of 2 datagrams counted", got)
		}
		if b := s.legs[SideB].stats; b.packetsOut != a.stats.packetsIn || a.secure || a.stats.srtpFailures != 0 {
			t.Fatalf("%d in, %d relayed", a.stats.packetsIn, b.packetsOut)
		}
	})
}
