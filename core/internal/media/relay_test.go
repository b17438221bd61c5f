package media

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestRelayLoopback runs a plain call between two real sockets through the
// engine: both directions, RTCP on RTP+1, addresses hidden, counters kept.
func TestRelayLoopback(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, toA, toB, offerToB, answerToA := call(t, e, plain, plain,
		a.sdp("RTP/AVP", "0 8 101", "rtpmap:101 telephone-event/8000", "fmtp:101 0-15", "sendrecv"),
		func([]byte) []byte { return b.sdp("RTP/AVP", "0 101", "rtpmap:101 telephone-event/8000") })

	t.Logf("offer to B:\n%s\nanswer to A:\n%s", offerToB, answerToA)
	for _, body := range [][]byte{offerToB, answerToA} {
		if bytes.Contains(body, []byte("10.9.9.9")) || bytes.Contains(body, []byte("secret-inside")) {
			t.Errorf("the other side's origin leaked:\n%s", body)
		}
		if !bytes.Contains(body, []byte("o=umedge ")) {
			t.Errorf("no o=umedge origin:\n%s", body)
		}
	}
	if !strings.Contains(string(offerToB), "a=rtpmap:101 telephone-event/8000") || !strings.Contains(string(offerToB), "a=sendrecv") {
		t.Errorf("telephone-event or direction lost:\n%s", offerToB)
	}

	// A → engine (A leg) → B, and B → engine (B leg) → A.
	for i := range 20 {
		pkt := rtpPacket(0, uint16(100+i), uint32(160*i), 0xA)
		if _, err := a.rtp.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		got, from := recv(t, b.rtp, 2*time.Second)
		if !bytes.Equal(got, pkt) {
			t.Fatalf("B got %x, want %x", got[:12], pkt[:12])
		}
		if from != toB {
			t.Fatalf("B got media from %s, want the engine's B-leg address %s", from, toB)
		}
		back := rtpPacket(0, uint16(500+i), uint32(160*i), 0xB)
		if _, err := b.rtp.WriteToUDPAddrPort(back, toB); err != nil {
			t.Fatal(err)
		}
		got, from = recv(t, a.rtp, 2*time.Second)
		if !bytes.Equal(got, back) || from != toA {
			t.Fatalf("A got %d bytes from %s, want the packet from %s", len(got), from, toA)
		}
	}
	// RTCP from A's RTCP port to the engine's RTP+1 arrives at B's RTP+1.
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0, 0xA, 0, 0, 0, 0xB, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	rtcpOf := func(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr(), ap.Port()+1) }
	if _, err := a.rtcp.WriteToUDPAddrPort(rr, rtcpOf(toA)); err != nil {
		t.Fatal(err)
	}
	got, from := recv(t, b.rtcp, 2*time.Second)
	if !bytes.Equal(got, rr) || from != rtcpOf(toB) {
		t.Fatalf("B's RTCP port got %x from %s, want the report from %s", got, from, rtcpOf(toB))
	}
	st := s.Stats()
	if st.Legs[SideA].PacketsIn != 21 || st.Legs[SideB].PacketsOut != 21 || st.Legs[SideB].PacketsIn != 20 || st.Legs[SideA].PacketsOut != 20 {
		t.Errorf("counters = %+v", st.Legs)
	}
	if st.Legs[SideA].Remote != a.addr() || st.Legs[SideB].Remote != b.addr() {
		t.Errorf("latched = %s, %s, want %s, %s", st.Legs[SideA].Remote, st.Legs[SideB].Remote, a.addr(), b.addr())
	}
	if st.Legs[SideA].Codec != "PCMU" || st.Legs[SideA].Lost != 0 {
		t.Errorf("leg A codec %q lost %d, want PCMU, 0", st.Legs[SideA].Codec, st.Legs[SideA].Lost)
	}
}

// TestTelephoneEventNumbers: the answer numbers telephone-event differently
// from the offer (RFC 3264 allows it); each side sends the number the other
// declared and the relay passes RFC 4733 events both ways.
func TestTelephoneEventNumbers(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	_, toA, toB, _, answerToA := call(t, e, plain, plain,
		a.sdp("RTP/AVP", "0 101", "rtpmap:101 telephone-event/8000", "fmtp:101 0-15"),
		func([]byte) []byte {
			return b.sdp("RTP/AVP", "0 96 97", "rtpmap:96 telephone-event/8000", "fmtp:96 0-15", "rtpmap:97 opus/48000/2")
		})
	if !strings.Contains(string(answerToA), "RTP/AVP 0 96\r\n") || !strings.Contains(string(answerToA), "a=rtpmap:96 telephone-event/8000") ||
		strings.Contains(string(answerToA), "opus") {
		t.Fatalf("answer to A:\n%s", answerToA)
	}
	digit := func(pt uint8) []byte { p := rtpPacket(pt, 1, 0, 0xD); return p[:16] } // one RFC 4733 event
	a.rtp.WriteToUDPAddrPort(digit(96), toA)
	if got, _ := recv(t, b.rtp, 2*time.Second); got[1]&0x7f != 96 {
		t.Fatalf("B got payload type %d", got[1]&0x7f)
	}
	b.rtp.WriteToUDPAddrPort(digit(101), toB)
	if got, _ := recv(t, a.rtp, 2*time.Second); got[1]&0x7f != 101 {
		t.Fatalf("A got payload type %d", got[1]&0x7f)
	}
}

// TestRelayIPv6AndRTCPMux: leg A on ::1 with rtcp-mux, leg B on 127.0.0.1
// without: RTP and RTCP cross families, RTCP moves between the muxed RTP
// port and B's RTP+1.
func TestRelayIPv6AndRTCPMux(t *testing.T) {
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback on this host: %v", err)
	}
	defer c6.Close()
	e := newTestEngine(t, 8, nil)
	b := newPeer(t)
	v6 := LegProfile{Local: netip.MustParseAddr("::1"), Security: SecurityRTP}
	port := c6.LocalAddr().(*net.UDPAddr).Port
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtcp-mux\r\n", port)
	s, toA, toB, offerToB, answerToA := call(t, e, v6, plain, []byte(offer), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if !strings.Contains(string(answerToA), "c=IN IP6 ::1") || !strings.Contains(string(answerToA), "a=rtcp-mux") ||
		!strings.Contains(string(offerToB), "c=IN IP4 127.0.0.1") {
		t.Fatalf("offer to B:\n%s\nanswer to A:\n%s", offerToB, answerToA)
	}
	c6.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	if got, _ := recv(t, c6, 2*time.Second); got[1] != 0 {
		t.Fatalf("A got %x", got[:2])
	}
	sr := []byte{0x80, 200, 0, 6, 0, 0, 0, 0xA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	c6.WriteToUDPAddrPort(sr, toA) // RTCP on the RTP port: rtcp-mux
	if got, _ := recv(t, b.rtcp, 2*time.Second); !bytes.Equal(got, sr) {
		t.Fatal("B's RTCP port did not get the muxed sender report")
	}
	b.rtcp.WriteToUDPAddrPort(sr, netip.AddrPortFrom(toB.Addr(), toB.Port()+1))
	if got, _ := recv(t, c6, 2*time.Second); !bytes.Equal(got, sr) {
		t.Fatal("A did not get B's RTCP on its RTP port")
	}
	if st := s.Stats().Legs[SideA]; st.Remote.Addr() != netip.MustParseAddr("::1") {
		t.Errorf("latched %s", st.Remote)
	}
}

// The payload-type table keeps each type's clock and codec, shares the
// entries types have in common, and past maxPTInfos distinct ones (an
// SDP built to fill it) still knows the type, without a clock.
func TestPTTable(t *testing.T) {
	var tb ptTable
	for pt := range 128 {
		if tb.get(uint8(pt)).known { //nolint:gosec // < 128
			t.Fatalf("empty table knows %d", pt)
		}
	}
	tb.set(0, ptInfo{known: true, clock: 8000, codec: frameSample})
	tb.set(8, ptInfo{known: true, clock: 8000, codec: frameSample})
	tb.set(101, ptInfo{known: true, clock: 8000})
	if tb.n != 2 {
		t.Errorf("%d distinct entries for two kinds", tb.n)
	}
	if p := tb.get(8); p != (ptInfo{known: true, clock: 8000, codec: frameSample}) {
		t.Errorf("PT 8: %+v", p)
	}
	if p := tb.get(101 | 0x80); !p.known || p.codec != frameAlone { // the marker bit is not the type's
		t.Errorf("PT 101 with the marker bit: %+v", p)
	}
	for i := range 40 {
		tb.set(20+i, ptInfo{known: true, clock: uint32(1000 + i)}) //nolint:gosec // small
	}
	if p := tb.get(20 + maxPTInfos - 3); !p.known || p.clock != uint32(1000+maxPTInfos-3) {
		t.Errorf("an entry that fitted: %+v", p)
	}
	if p := tb.get(59); !p.known || p.clock != 0 {
		t.Errorf("an entry past the table: %+v, want known without a clock", p)
	}
	if p := tb.get(0); p.clock != 8000 {
		t.Errorf("PT 0 after the flood: %+v", p)
	}
	// The size class it is in, with the 8-byte header of an object of
	// pointers above 512 B: 1,152 (1,280 with its SRTP keys inline, 1,408
	// with a 12-byte ptInfo, 2,048 with one per type).
	if got := unsafe.Sizeof(leg{}); got+8 > 1152 {
		t.Errorf("a leg is %d bytes: the payload-type table grew back?", got)
	}
}
