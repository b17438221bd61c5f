package media

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// srtpCall is a session whose leg A speaks SRTP with the test's key (the
// caller, as baresip with mediaenc=srtp) and whose leg B is plain.
type srtpCall struct {
	s          *Session
	a, b       *peer
	toA, toB   netip.AddrPort // the engine's RTP address on each leg
	aEnc, aDec *srtp.Context  // A's own sending context; A's view of ours
}

func newSRTPCall(t *testing.T, mod func(*Config)) *srtpCall {
	t.Helper()
	e := newTestEngine(t, 8, mod)
	c := &srtpCall{a: newPeer(t), b: newPeer(t)}
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	aKey, aLine := peerKey(t, 1, 0)
	var answerToA []byte
	c.s, c.toA, c.toB, _, answerToA = call(t, e, secured, plain, c.a.sdp("RTP/SAVP", "0", aLine),
		func([]byte) []byte { return c.b.sdp("RTP/AVP", "0") })
	c.aEnc, c.aDec = mustContext(t, aKey, false), mustContext(t, engineKey(t, answerToA, 1), true)
	return c
}

func rtcpPort(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr(), ap.Port()+1) }

func marshalRTCP(t *testing.T, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What baresip 1.0 (libre, modules/srtp) sends on its RTCP port in the
// acceptance test, captured with tcpdump: the RTCP APP "PING"/"PONG" it
// sends when the stream starts, before its SRTP is on (its send helper
// passes packets through while use_srtp is false), and the RTCP BYE with
// SDES it sends when the call's media is torn down, after the srtp
// module's helper is gone. Neither has an SRTCP index or tag.
var (
	baresipPlainApp = mustHex("80cc0003ca1a2b5c50494e47504f4e47")
	baresipPlainBye = mustHex("81cb000329c20c3e0441646a6f00000081ca000729c20c3e0112736970" +
		"3a34303030403132372e302e302e3100000000")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestPlainRTCP(t *testing.T) {
	enc := func(p []byte, si int) []byte {
		c, err := srtp.CreateContext(make([]byte, 16), make([]byte, suites[si].saltLen), suites[si].profile)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.EncryptRTCP(nil, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}})
	for _, tt := range []struct {
		name string
		give []byte
		want bool
	}{
		{"baresip's APP", baresipPlainApp, true},
		{"baresip's BYE and SDES", baresipPlainBye, true},
		{"RR and SDES", rr, true},
		{"SRTCP 80-bit tag", enc(rr, 0), false},
		{"SRTCP GCM", enc(rr, 2), false},
		{"truncated", rr[:len(rr)-4], false},
		{"trailing bytes", append(append([]byte{}, rr...), 0, 0), false},
		{"not version 2", append([]byte{0x40}, rr[1:]...), false},
		{"empty", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := plainRTCP(tt.give); got != tt.want {
				t.Errorf("plainRTCP(%x) = %v, want %v", tt.give, got, tt.want)
			}
		})
	}
}

// TestSRTCPRelay: RTCP crosses the SRTP ⇄ RTP boundary both ways. The
// caller's SRTCP arrives at the plain callee decrypted; the callee's RTCP
// arrives at the caller as SRTCP under the engine's key, each with an
// index of its own (a replay-protected context takes them all, in order);
// each direction is counted on both legs.
func TestSRTCPRelay(t *testing.T) {
	c := newSRTPCall(t, func(cfg *Config) { cfg.ReportInterval = -1 })
	sr := marshalRTCP(t, &rtcp.SenderReport{SSRC: 0xA, NTPTime: 0x1122334455667788, RTPTime: 160, PacketCount: 1, OctetCount: 160})
	enc, err := c.aEnc.EncryptRTCP(nil, sr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.a.rtcp.WriteToUDPAddrPort(enc, rtcpPort(c.toA))
	if got, _ := recv(t, c.b.rtcp, 2*time.Second); !bytes.Equal(got, sr) {
		t.Fatalf("the callee got %x, want the caller's report in the clear %x", got, sr)
	}
	var last uint32
	for i := range 3 {
		rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 0xB, Reports: []rtcp.ReceptionReport{{SSRC: 0xA, LastSequenceNumber: uint32(i)}}})
		c.b.rtcp.WriteToUDPAddrPort(rr, rtcpPort(c.toB))
		got, from := recv(t, c.a.rtcp, 2*time.Second)
		if from != rtcpPort(c.toA) {
			t.Errorf("SRTCP came from %s, want %s", from, rtcpPort(c.toA))
		}
		if bytes.Contains(got, rr[8:]) {
			t.Fatalf("the SRTP leg carried the callee's report in the clear: %x", got)
		}
		dec, err := c.aDec.DecryptRTCP(nil, got, nil)
		if err != nil || !bytes.Equal(dec, rr) {
			t.Fatalf("report %d: the caller cannot take our SRTCP: %v (%x)", i, err, dec)
		}
		if idx := srtcpIndex(got); i > 0 && idx != last+1 {
			t.Errorf("report %d went out with SRTCP index %d after %d", i, idx, last)
		} else {
			last = idx
		}
	}
	st := c.s.Stats()
	if a, b := st.Legs[SideA], st.Legs[SideB]; a.RTCPIn != 1 || b.RTCPOut != 1 || b.RTCPIn != 3 || a.RTCPOut != 3 || a.RTCPOwn != 0 {
		t.Errorf("RTCP counters A in %d out %d own %d, B in %d out %d; want 1, 3, 0, 3, 1", a.RTCPIn, a.RTCPOut, a.RTCPOwn, b.RTCPIn, b.RTCPOut)
	}
}

// srtcpIndex is the SRTCP index of an 80-bit-tag packet (RFC 3711 §3.4).
func srtcpIndex(p []byte) uint32 {
	i := len(p) - 10 - 4
	return uint32(p[i]&0x7f)<<24 | uint32(p[i+1])<<16 | uint32(p[i+2])<<8 | uint32(p[i+3])
}

// TestSRTCPDropped: on the SRTP leg, replayed and forged SRTCP and plain
// RTCP (baresip's, byte for byte) are dropped, never forwarded, and each
// is counted under its own name.
func TestSRTCPDropped(t *testing.T) {
	c := newSRTPCall(t, func(cfg *Config) { cfg.ReportInterval = -1 })
	sr := marshalRTCP(t, &rtcp.SenderReport{SSRC: 0xA, NTPTime: 1, PacketCount: 1})
	good, _ := c.aEnc.EncryptRTCP(nil, sr, nil)
	to := rtcpPort(c.toA)
	c.a.rtcp.WriteToUDPAddrPort(good, to)
	recv(t, c.b.rtcp, 2*time.Second)

	c.a.rtcp.WriteToUDPAddrPort(good, to) // replay
	forged, _ := c.aEnc.EncryptRTCP(nil, sr, nil)
	forged[len(forged)-1] ^= 1
	c.a.rtcp.WriteToUDPAddrPort(forged, to)
	c.a.rtcp.WriteToUDPAddrPort(baresipPlainApp, to)
	c.a.rtcp.WriteToUDPAddrPort(baresipPlainBye, to)
	c.a.rtp.WriteToUDPAddrPort(baresipPlainBye, c.toA) // muxed RTCP (PT 203) on the RTP port: the same
	if got, _, err := tryRecv(c.b.rtcp, 300*time.Millisecond); err == nil {
		t.Fatalf("the callee got %x: a packet that is not valid SRTCP was forwarded", got)
	}
	st := c.s.Stats().Legs[SideA]
	if st.SRTPReplays != 1 || st.SRTPFailures != 1 || st.Unprotected != 3 || st.RTCPIn != 1 {
		t.Errorf("replays %d, failures %d, unprotected %d, RTCP in %d; want 1, 1, 3, 1", st.SRTPReplays, st.SRTPFailures, st.Unprotected, st.RTCPIn)
	}
}

// TestOwnReports: the callee sends no RTCP, so the SRTP caller gets the
// engine's own receiver report on what the engine received from it —
// SRTCP under our key, from an SSRC of ours, with the loss, highest
// sequence number and LSR of the caller's stream — and the plain callee
// gets none. Once the callee sends RTCP, that is relayed instead.
func TestOwnReports(t *testing.T) {
	c := newSRTPCall(t, func(cfg *Config) { cfg.ReportInterval = 200 * time.Millisecond })
	for _, seq := range []uint16{1, 2, 3, 5, 6} { // 4 is lost
		p, _ := c.aEnc.EncryptRTP(nil, rtpPacket(0, seq, uint32(seq)*160, 0xA), nil)
		c.a.rtp.WriteToUDPAddrPort(p, c.toA)
		recv(t, c.b.rtp, 2*time.Second)
	}
	sr, _ := c.aEnc.EncryptRTCP(nil, marshalRTCP(t, &rtcp.SenderReport{SSRC: 0xA, NTPTime: 0x1122334455667788, PacketCount: 5}), nil)
	c.a.rtcp.WriteToUDPAddrPort(sr, rtcpPort(c.toA))
	recv(t, c.b.rtcp, 2*time.Second)

	got, _ := recv(t, c.a.rtcp, 3*time.Second)
	dec, err := c.aDec.DecryptRTCP(nil, got, nil)
	if err != nil {
		t.Fatalf("our own report is not SRTCP under our key: %v", err)
	}
	pkts, err := rtcp.Unmarshal(dec)
	if err != nil || len(pkts) != 2 {
		t.Fatalf("own report %x: %v, %d packets", dec, err, len(pkts))
	}
	rr, ok := pkts[0].(*rtcp.ReceiverReport)
	sdes, ok2 := pkts[1].(*rtcp.SourceDescription)
	if !ok || !ok2 || len(rr.Reports) != 1 || rr.SSRC == 0xA || rr.SSRC == 0xB || sdes.Chunks[0].Source != rr.SSRC {
		t.Fatalf("own report: %v", pkts)
	}
	if b := rr.Reports[0]; b.SSRC != 0xA || b.LastSequenceNumber != 6 || b.TotalLost != 1 || b.FractionLost != 256/6 || b.LastSenderReport != 0x33445566 {
		t.Errorf("report block %+v: want SSRC 0xA, highest 6, 1 lost (fraction 42), LSR 0x33445566", b)
	}
	if cname := sdes.Chunks[0].Items[0].Text; cname == "" || bytes.Contains([]byte(cname), []byte("127.0.0.1")) {
		t.Errorf("CNAME %q", cname)
	}
	if p, _, err := tryRecv(c.b.rtcp, 500*time.Millisecond); err == nil {
		t.Errorf("the plain callee got %x: no own reports on a plain leg", p)
	}
	own := c.s.Stats().Legs[SideA].RTCPOwn
	if own == 0 {
		t.Fatal("RTCPOwn = 0 after an own report")
	}

	// The callee now reports every 50 ms: the caller gets its reports,
	// relayed, and no more of ours.
	drain(c.a.rtcp)
	stop := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(stop) {
		c.b.rtcp.WriteToUDPAddrPort(marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 0xB}), rtcpPort(c.toB))
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if st := c.s.Stats().Legs[SideA]; st.RTCPOwn > own+1 { // one may have been due as the callee began
		t.Errorf("own reports went on while the callee reported: %d, then %d", own, st.RTCPOwn)
	}
}

func drain(c *net.UDPConn) {
	for {
		if _, _, err := tryRecv(c, 20*time.Millisecond); err != nil {
			return
		}
	}
}

// TestSRTCPMux: with rtcp-mux on the SRTP leg, SRTCP arrives on the RTP
// port and is told from SRTP by its packet type (RFC 5761 §4: 192–223),
// so it is decrypted as SRTCP (the RTP context would fail it) and reaches
// the plain callee's RTCP port; the callee's RTCP goes back as SRTCP on
// the caller's RTP port.
func TestSRTCPMux(t *testing.T) {
	e := newTestEngine(t, 8, func(cfg *Config) { cfg.ReportInterval = -1 })
	a, b := newPeer(t), newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	aKey, aLine := peerKey(t, 1, 0)
	s, toA, toB, _, answerToA := call(t, e, secured, plain, a.sdp("RTP/SAVP", "0", aLine, "rtcp-mux"),
		func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if !strings.Contains(string(answerToA), "a=rtcp-mux") {
		t.Fatalf("rtcp-mux not answered:\n%s", answerToA)
	}
	aEnc, aDec := mustContext(t, aKey, false), mustContext(t, engineKey(t, answerToA, 1), true)
	for _, pt := range []uint8{200, 201, 203} { // SR, RR, BYE
		p := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 0xA})
		p[1] = pt
		enc, err := aEnc.EncryptRTCP(nil, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		a.rtp.WriteToUDPAddrPort(enc, toA)
		if got, _ := recv(t, b.rtcp, 2*time.Second); !bytes.Equal(got, p) {
			t.Fatalf("PT %d: the callee's RTCP port got %x, want %x", pt, got, p)
		}
	}
	rr := marshalRTCP(t, &rtcp.ReceiverReport{SSRC: 0xB})
	b.rtcp.WriteToUDPAddrPort(rr, rtcpPort(toB))
	got, _ := recv(t, a.rtp, 2*time.Second)
	if dec, err := aDec.DecryptRTCP(nil, got, nil); err != nil || !bytes.Equal(dec, rr) {
		t.Fatalf("the caller's RTP port got %x: %v", got, err)
	}
	if st := s.Stats().Legs[SideA]; st.SRTPFailures != 0 || st.RTCPIn != 3 || st.RTCPOut != 1 {
		t.Errorf("failures %d, RTCP in %d out %d; want 0, 3, 1", st.SRTPFailures, st.RTCPIn, st.RTCPOut)
	}
}
