package media

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
)

// peerKey draws a key for a test peer and returns its a=crypto line.
func peerKey(t testing.TB, tag, suite int) (sdesKey, string) {
	t.Helper()
	k, err := newKey(suite)
	if err != nil {
		t.Fatal(err)
	}
	return k, "crypto:" + formatCrypto(tag, k)
}

// engineKey finds the a=crypto line with tag in body and returns its key.
func engineKey(t testing.TB, body []byte, tag int) sdesKey {
	t.Helper()
	_, sd := mediaAddr(t, body)
	for _, v := range attr(sd, "crypto") {
		c, err := parseCrypto(v)
		if err != nil {
			t.Fatal(err)
		}
		if c.tag == tag {
			return c.key
		}
	}
	t.Fatalf("no a=crypto tag %d in\n%s", tag, body)
	return sdesKey{}
}

func mustContext(t testing.TB, k sdesKey, decrypt bool) *srtp.Context {
	t.Helper()
	c, err := k.context(decrypt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSRTPToRTP: caller plain RTP, callee Secured only, for each suite the
// callee may pick; then the reverse direction of setup (the SRTP side
// offers). Media flows both ways and the SRTP leg carries only SRTP.
func TestSRTPToRTP(t *testing.T) {
	for si, su := range suites {
		t.Run("callee secured "+su.name, func(t *testing.T) {
			e := newTestEngine(t, 8, nil)
			a, b := newPeer(t), newPeer(t)
			secured := LegProfile{Local: loopback, Security: SecuritySRTP}
			bKey, bLine := peerKey(t, si+1, si)
			var ourB sdesKey
			s, toA, toB, offerToB, _ := call(t, e, plain, secured, a.sdp("RTP/AVP", "0"),
				func(offer []byte) []byte {
					ourB = engineKey(t, offer, si+1)
					return b.sdp("RTP/SAVP", "0", bLine)
				})
			if !strings.Contains(string(offerToB), "RTP/SAVP") || strings.Count(string(offerToB), "a=crypto:") != len(suites) {
				t.Fatalf("offer to a secured leg:\n%s", offerToB)
			}
			bEnc, bDec := mustContext(t, bKey, false), mustContext(t, ourB, true)
			for i := range 5 {
				pkt := rtpPacket(0, uint16(i), uint32(160*i), 0xA)
				a.rtp.WriteToUDPAddrPort(pkt, toA)
				got, _ := recv(t, b.rtp, 2*time.Second)
				if bytes.Equal(got[12:], pkt[12:]) {
					t.Fatal("the secured leg carried a plain payload")
				}
				dec, err := bDec.DecryptRTP(nil, got, nil)
				if err != nil || !bytes.Equal(dec, pkt) {
					t.Fatalf("B decrypt: %v", err)
				}
				back := rtpPacket(0, uint16(i), uint32(160*i), 0xB)
				enc, _ := bEnc.EncryptRTP(nil, back, nil)
				b.rtp.WriteToUDPAddrPort(enc, toB)
				got, _ = recv(t, a.rtp, 2*time.Second)
				if !bytes.Equal(got, back) {
					t.Fatalf("A got %x, want the decrypted %x", got[:16], back[:16])
				}
			}
			if st := s.Stats(); !st.Legs[SideB].Secure || st.Legs[SideA].Secure {
				t.Errorf("Secure = A %v, B %v, want false, true", st.Legs[SideA].Secure, st.Legs[SideB].Secure)
			}
		})
	}

	t.Run("caller secured, callee plain", func(t *testing.T) {
		e := newTestEngine(t, 8, nil)
		a, b := newPeer(t), newPeer(t)
		secured := LegProfile{Local: loopback, Security: SecuritySRTP}
		aKey, aLine := peerKey(t, 7, 2) // GCM, tag 7
		_, toA, toB, offerToB, answerToA := call(t, e, secured, plain,
			a.sdp("RTP/SAVP", "8", "crypto:3 AES_256_CM_HMAC_SHA1_80 inline:"+strings.Repeat("A", 62), aLine),
			func([]byte) []byte { return b.sdp("RTP/AVP", "8") })
		if strings.Contains(string(offerToB), "crypto") || !strings.Contains(string(offerToB), "RTP/AVP") {
			t.Fatalf("offer to the plain leg:\n%s", offerToB)
		}
		ourA := engineKey(t, answerToA, 7)
		if ourA.suite != 2 || bytes.Equal(ourA.key, aKey.key) {
			t.Fatalf("answer key: suite %d, reused the caller's key: %v", ourA.suite, bytes.Equal(ourA.key, aKey.key))
		}
		aEnc, aDec := mustContext(t, aKey, false), mustContext(t, ourA, true)
		pkt := rtpPacket(8, 1, 160, 0xA)
		enc, _ := aEnc.EncryptRTP(nil, pkt, nil)
		a.rtp.WriteToUDPAddrPort(enc, toA)
		if got, _ := recv(t, b.rtp, 2*time.Second); !bytes.Equal(got, pkt) {
			t.Fatalf("B got %x", got[:16])
		}
		back := rtpPacket(8, 9, 160, 0xB)
		b.rtp.WriteToUDPAddrPort(back, toB)
		got, _ := recv(t, a.rtp, 2*time.Second)
		if dec, err := aDec.DecryptRTP(nil, got, nil); err != nil || !bytes.Equal(dec, back) {
			t.Fatalf("A decrypt: %v", err)
		}
	})
}

// TestSRTPTamperAndReplay: forged and replayed SRTP is dropped, counted and
// never forwarded.
func TestSRTPTamperAndReplay(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	aKey, aLine := peerKey(t, 1, 0)
	s, toA, _, _, _ := call(t, e, secured, plain, a.sdp("RTP/SAVP", "0", aLine),
		func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	enc := mustContext(t, aKey, false)
	good, _ := enc.EncryptRTP(nil, rtpPacket(0, 1, 160, 0xA), nil)
	a.rtp.WriteToUDPAddrPort(good, toA)
	recv(t, b.rtp, 2*time.Second)

	a.rtp.WriteToUDPAddrPort(good, toA) // replay
	forged, _ := enc.EncryptRTP(nil, rtpPacket(0, 2, 320, 0xA), nil)
	forged[20] ^= 1
	a.rtp.WriteToUDPAddrPort(forged, toA)
	if got, _, err := tryRecv(b.rtp, 300*time.Millisecond); err == nil {
		t.Fatalf("a replayed or forged packet was forwarded: %x", got[:12])
	}
	st := s.Stats().Legs[SideA]
	if st.SRTPReplays != 1 || st.SRTPFailures != 1 || st.PacketsIn != 1 {
		t.Errorf("replays %d, failures %d, in %d; want 1, 1, 1", st.SRTPReplays, st.SRTPFailures, st.PacketsIn)
	}
}

// TestSecurityModes covers the offer side of each profile.
func TestSecurityModes(t *testing.T) {
	_, keyLine := peerKey(t, 1, 0)
	tests := []struct {
		name      string
		x, y      Security
		proto     string
		crypto    bool
		wantErr   error
		wantProto string
		wantKeys  int // a=crypto lines in the offer to Y
		wantRaw   bool
	}{
		{name: "secured only without key", x: SecuritySRTP, y: SecurityRTP, proto: "RTP/AVP", wantErr: ErrNotAcceptable},
		{name: "not secured refuses SAVP", x: SecurityRTP, y: SecurityRTP, proto: "RTP/SAVP", crypto: true, wantErr: ErrNotAcceptable},
		{name: "not secured declines opportunistic", x: SecurityRTP, y: SecurityRTP, proto: "RTP/AVP", crypto: true, wantProto: "RTP/AVP"},
		{name: "both offers opportunistic", x: SecurityRTP, y: SecurityBoth, proto: "RTP/AVP", wantProto: "RTP/AVP", wantKeys: 3},
		{name: "secured only offers SAVP", x: SecurityBoth, y: SecuritySRTP, proto: "RTP/AVP", wantProto: "RTP/SAVP", wantKeys: 3},
		{name: "as is mirrors plain", x: SecurityRTP, y: SecurityAsIs, proto: "RTP/AVP", wantProto: "RTP/AVP"},
		{name: "as is mirrors SAVP", x: SecuritySRTP, y: SecurityAsIs, proto: "RTP/SAVP", crypto: true, wantProto: "RTP/SAVP", wantKeys: 3},
		{name: "as is mirrors opportunistic", x: SecurityBoth, y: SecurityAsIs, proto: "RTP/AVP", crypto: true, wantProto: "RTP/AVP", wantKeys: 3},
		{name: "as is both ways passes keys through", x: SecurityAsIs, y: SecurityAsIs, proto: "RTP/SAVP", crypto: true, wantProto: "RTP/SAVP", wantKeys: 1, wantRaw: true},
	}
	e := newTestEngine(t, 40, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newPeer(t)
			s, err := e.NewSession(tt.name, LegProfile{Local: loopback, Security: tt.x}, LegProfile{Local: loopback, Security: tt.y}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var extra []string
			if tt.crypto {
				extra = append(extra, keyLine)
			}
			out, err := s.Offer(SideA, a.sdp(tt.proto, "0", extra...))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Offer = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Offer: %v", err)
			}
			_, sd := mediaAddr(t, out)
			if p := strings.Join(sd.MediaDescriptions[0].MediaName.Protos, "/"); p != tt.wantProto {
				t.Errorf("proto = %s, want %s", p, tt.wantProto)
			}
			keys := attr(sd, "crypto")
			if len(keys) != tt.wantKeys {
				t.Errorf("%d a=crypto lines, want %d:\n%s", len(keys), tt.wantKeys, out)
			}
			if raw := len(keys) > 0 && "crypto:"+keys[0] == keyLine; raw != tt.wantRaw {
				t.Errorf("offer carries the caller's own key: %v, want %v", raw, tt.wantRaw)
			}
		})
	}
}

// TestAsIsPassthrough: both legs As is, SRTP passes end to end untouched.
func TestAsIsPassthrough(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	asis := LegProfile{Local: loopback}
	aKey, aLine := peerKey(t, 1, 0)
	_, bLine := peerKey(t, 1, 0)
	s, toA, _, _, answerToA := call(t, e, asis, asis, a.sdp("RTP/SAVP", "0", aLine),
		func([]byte) []byte { return b.sdp("RTP/SAVP", "0", bLine) })
	if !strings.Contains(string(answerToA), bLine[len("crypto:"):]) {
		t.Fatalf("the callee's key did not pass through:\n%s", answerToA)
	}
	enc, _ := mustContext(t, aKey, false).EncryptRTP(nil, rtpPacket(0, 1, 160, 0xA), nil)
	a.rtp.WriteToUDPAddrPort(enc, toA)
	if got, _ := recv(t, b.rtp, 2*time.Second); !bytes.Equal(got, enc) {
		t.Fatal("pass-through changed the SRTP packet")
	}
	if !s.Stats().Legs[SideB].Secure {
		t.Error("pass-through leg not reported secure")
	}
}

// TestSRTPLatchFollowsAuthenticatedSource: on an SRTP leg a packet that
// authenticates moves the latch even after the learning window (a NAT
// rebinding), while plain junk from the same new source does not.
func TestSRTPLatchFollowsAuthenticatedSource(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 100 * time.Millisecond })
	a, b, moved := newPeer(t), newPeer(t), newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	aKey, aLine := peerKey(t, 1, 0)
	s, toA, toB, _, _ := call(t, e, secured, plain, a.sdp("RTP/SAVP", "0", aLine), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	enc := mustContext(t, aKey, false)
	p1, _ := enc.EncryptRTP(nil, rtpPacket(0, 1, 160, 0xA), nil)
	a.rtp.WriteToUDPAddrPort(p1, toA)
	recv(t, b.rtp, 2*time.Second)
	time.Sleep(150 * time.Millisecond)                           // the window is over
	moved.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 320, 0xA), toA) // plain, unauthenticated
	if st := s.Stats().Legs[SideA]; st.Remote != a.addr() {
		t.Fatalf("an unauthenticated packet moved the latch to %s", st.Remote)
	}
	p2, _ := enc.EncryptRTP(nil, rtpPacket(0, 3, 480, 0xA), nil)
	moved.rtp.WriteToUDPAddrPort(p2, toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, moved.rtp, 2*time.Second) // media follows the authenticated source
	if st := s.Stats().Legs[SideA]; st.Remote != moved.addr() || st.SRTPFailures != 1 {
		t.Errorf("latched %s failures %d, want %s, 1", st.Remote, st.SRTPFailures, moved.addr())
	}
}

// TestOpportunisticSRTP: a caller like baresip with mediaenc srtp offers
// RTP/AVP with a=crypto (RFC 8643). A Both leg takes the key and answers
// RTP/AVP with its own, and the leg carries SRTP; a Not secured leg answers
// without crypto and stays plain.
func TestOpportunisticSRTP(t *testing.T) {
	for _, tt := range []struct {
		name   string
		sec    Security
		secure bool
	}{{"both", SecurityBoth, true}, {"as is", SecurityAsIs, true}, {"not secured", SecurityRTP, false}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, 8, nil)
			a, b := newPeer(t), newPeer(t)
			aKey, aLine := peerKey(t, 1, 0)
			s, toA, toB, _, answerToA := call(t, e, LegProfile{Local: loopback, Security: tt.sec}, plain,
				a.sdp("RTP/AVP", "0", aLine), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
			if !strings.Contains(string(answerToA), "RTP/AVP") || strings.Contains(string(answerToA), "a=crypto") != tt.secure {
				t.Fatalf("answer to A:\n%s", answerToA)
			}
			pkt := rtpPacket(0, 1, 160, 0xA)
			out := pkt
			if tt.secure {
				out, _ = mustContext(t, aKey, false).EncryptRTP(nil, pkt, nil)
			}
			a.rtp.WriteToUDPAddrPort(out, toA)
			if got, _ := recv(t, b.rtp, 2*time.Second); !bytes.Equal(got, pkt) {
				t.Fatal("B did not get the caller's packet in the clear")
			}
			back := rtpPacket(0, 1, 160, 0xB)
			b.rtp.WriteToUDPAddrPort(back, toB)
			got, _ := recv(t, a.rtp, 2*time.Second)
			if tt.secure {
				dec, err := mustContext(t, engineKey(t, answerToA, 1), true).DecryptRTP(nil, got, nil)
				if err != nil || !bytes.Equal(dec, back) {
					t.Fatalf("A decrypt: %v", err)
				}
			} else if !bytes.Equal(got, back) {
				t.Fatal("A did not get B's packet")
			}
			if s.Stats().Legs[SideA].Secure != tt.secure {
				t.Errorf("leg A Secure = %v, want %v", !tt.secure, tt.secure)
			}
		})
	}
}
