package media

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLatching: the SDP announces one address, media comes from another
// (a NAT): the engine answers where packets come from. A stranger with the
// latched SSRC is a stray; after the learning window a stranger with a new
// SSRC is a stray too; a new SSRC inside the window re-latches. (The
// stranger is on another address: one on the peer's, with its SSRC and
// sequence, is what a NAT that rebinds looks like, TestLatchNATRebind.)
func TestLatching(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 400 * time.Millisecond })
	a, b, nat, stranger := newPeer(t), newPeer(t), newPeer(t), newPeerOn(t, net.IPv4(127, 0, 0, 2))
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"),
		func([]byte) []byte { return b.sdp("RTP/AVP", "0") })

	// A's packets really leave from "nat".
	nat.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, nat.rtp, 2*time.Second) // not to the SDP address of A
	if _, _, err := tryRecv(a.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("media went to the SDP address after latching")
	}

	stranger.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xA), toA) // same SSRC, other source
	if _, _, err := tryRecv(b.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("a stranger reusing the SSRC was relayed")
	}
	time.Sleep(450 * time.Millisecond) // window over; nat keeps talking
	nat.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	stranger.rtp.WriteToUDPAddrPort(rtpPacket(0, 9, 0, 0x5), toA) // new SSRC, after the window
	if _, _, err := tryRecv(b.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("a stranger with a new SSRC took over after the window")
	}
	if st := s.Stats().Legs[SideA]; st.Strays != 2 || st.Remote != nat.addr() {
		t.Errorf("strays %d latched %s, want 2, %s", st.Strays, st.Remote, nat.addr())
	}

	// A re-INVITE reopens the window: the peer moved, new SSRC, re-latch.
	if _, err := s.Offer(SideA, a.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	stranger.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0x77), toA)
	recv(t, b.rtp, 2*time.Second)
	if st := s.Stats().Legs[SideA]; st.Remote != stranger.addr() {
		t.Errorf("after the re-INVITE latched %s, want %s", st.Remote, stranger.addr())
	}
}

// TestLatchFollowsSDPMove: a peer that moves its media by re-INVITE and
// goes on with the same SSRC re-latches at the address its new SDP names,
// inside the window; a stranger sending that SSRC from elsewhere does not,
// and after the window not even the SDP address takes the leg over.
func TestLatchFollowsSDPMove(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 400 * time.Millisecond })
	a, b, moved, stranger := newPeer(t), newPeerOn(t, net.IPv4(127, 0, 0, 3)), newPeer(t), newPeerOn(t, net.IPv4(127, 0, 0, 2))
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)

	// The callee re-INVITEs with its media on another port.
	if _, err := s.Offer(SideB, moved.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideA, a.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	stranger.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xB), toB) // the SSRC, not the SDP's address
	if _, _, err := tryRecv(a.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("a stranger reusing the SSRC was relayed")
	}
	moved.rtp.WriteToUDPAddrPort(rtpPacket(0, 3, 320, 0xB), toB) // same SSRC, from the new SDP address
	recv(t, a.rtp, 2*time.Second)
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xA), toA)
	recv(t, moved.rtp, 2*time.Second) // the caller's media follows
	if _, _, err := tryRecv(b.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("the callee's old port still gets media")
	}
	if st := s.Stats().Legs[SideB]; st.Remote != moved.addr() || st.Strays != 1 {
		t.Errorf("leg B latched %s with %d strays, want %s and 1", st.Remote, st.Strays, moved.addr())
	}

	// A re-offer naming another address is a new peer, learnt afresh
	// from its first packet (as at the call's start), but inside the
	// window not from the old peer's stream, sent from elsewhere or going
	// on from its old source.
	if _, err := s.Offer(SideB, b.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideA, a.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	stranger.rtp.WriteToUDPAddrPort(rtpPacket(0, 4, 480, 0xB), toB)
	if _, _, err := tryRecv(a.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("a stranger replaying the old peer's SSRC took the new peer's place")
	}
	moved.rtp.WriteToUDPAddrPort(rtpPacket(0, 4, 480, 0xB), toB)
	if _, _, err := tryRecv(a.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("the old peer's stream going on took the new peer's place")
	}
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 5, 640, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)
	if st := s.Stats().Legs[SideB]; st.Remote != b.addr() || st.Strays != 3 {
		t.Errorf("leg B latched %s with %d strays, want the new peer %s and 3", st.Remote, st.Strays, b.addr())
	}
}

// TestLatchNATRebind: after the learning window a peer whose NAT rebinds
// (the same address, a new port, its stream going on: SSRC and sequence)
// is followed once its old port has been quiet for rebindQuiet; a new port
// is refused while the old one still sends, with another SSRC, with a
// sequence number far off, or from another address.
func TestLatchNATRebind(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 200 * time.Millisecond })
	a, b, rebound := newPeer(t), newPeer(t), newPeer(t)
	elsewhere, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer elsewhere.Close()
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	for seq := range uint16(5) {
		a.rtp.WriteToUDPAddrPort(rtpPacket(0, 100+seq, 160*uint32(seq), 0xA), toA)
		recv(t, b.rtp, 2*time.Second)
	}
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)
	time.Sleep(250 * time.Millisecond) // the window is over

	refused := func(what string, c *net.UDPConn, pkt []byte) {
		t.Helper()
		c.WriteToUDPAddrPort(pkt, toA)
		if _, _, err := tryRecv(b.rtp, 100*time.Millisecond); err == nil {
			t.Fatalf("%s was relayed", what)
		}
	}
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 105, 800, 0xA), toA) // the old port still sends
	recv(t, b.rtp, 2*time.Second)
	refused("a new port while the old one sends", rebound.rtp, rtpPacket(0, 106, 960, 0xA))
	time.Sleep(rebindQuiet)
	refused("another SSRC", rebound.rtp, rtpPacket(0, 106, 960, 0xC))
	refused("a sequence number far ahead", rebound.rtp, rtpPacket(0, 105+rebindSeqAhead+1, 960, 0xA))
	refused("a sequence number behind", rebound.rtp, rtpPacket(0, 104, 960, 0xA))
	refused("another address", elsewhere, rtpPacket(0, 106, 960, 0xA))

	rebound.rtp.WriteToUDPAddrPort(rtpPacket(0, 107, 1120, 0xA), toA) // one packet lost at the rebind
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xB), toB)
	recv(t, rebound.rtp, 2*time.Second) // the callee's media follows
	if st := s.Stats().Legs[SideA]; st.Remote != rebound.addr() || st.Strays != 5 {
		t.Errorf("leg A latched %s with %d strays, want %s and 5", st.Remote, st.Strays, rebound.addr())
	}
	refused("the old port after the rebind", a.rtp, rtpPacket(0, 108, 1280, 0xA))
}

// TestLatchReofferBehindNAT: a peer behind a NAT that re-offers from a new
// socket (its SDP names the private address, a new port) goes on with its
// stream, the same SSRC (RFC 3550 keeps it), from the NAT's new port of the
// same public address: it is the peer, latched at once, not the old
// stream sent from elsewhere. A peer that went to another network (a new
// public address, its SDP private again) is learnt once the window is over,
// as any first packet is.
func TestLatchReofferBehindNAT(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 300 * time.Millisecond })
	a, a2, b, nat, nat2 := newPeer(t), newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	roamed := newPeerOn(t, net.IPv4(127, 0, 0, 2))
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	nat.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA) // A's packets leave from its NAT
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, nat.rtp, 2*time.Second)

	reofferA(t, s, a2, b) // a new socket behind the same NAT
	nat2.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xA), toA)
	if _, _, err := tryRecv(b.rtp, time.Second); err != nil {
		t.Fatal("the peer's stream from the NAT's new port after its re-offer was refused")
	}
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xB), toB)
	recv(t, nat2.rtp, 2*time.Second) // not to the private address of the SDP
	if st := s.Stats().Legs[SideA]; st.Remote != nat2.addr() {
		t.Errorf("leg A latched %s, want %s", st.Remote, nat2.addr())
	}

	reofferA(t, s, a, b) // another network: a new public address
	roamed.rtp.WriteToUDPAddrPort(rtpPacket(0, 3, 320, 0xA), toA)
	if _, _, err := tryRecv(b.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("the old SSRC from another address was relayed inside the window")
	}
	time.Sleep(300 * time.Millisecond)
	roamed.rtp.WriteToUDPAddrPort(rtpPacket(0, 4, 480, 0xA), toA)
	if _, _, err := tryRecv(b.rtp, time.Second); err != nil {
		t.Fatal("after the window the peer's stream from its new address is still refused: the leg never latches")
	}
}

// TestLatchRTCPNewPort: after the learning window RTCP from a new port of
// the latched RTP address re-latches the leg's RTCP only with the peer's
// SSRC (a NAT that rebound the RTCP mapping): anyone else behind the same
// address (a carrier-grade or office NAT) would get the other side's
// reports, and with them the peer's SSRC and sequence number that
// leg.rebound takes as proof of the peer's stream.
func TestLatchRTCPNewPort(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 200 * time.Millisecond })
	a, b, neighbour, rebound := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	_, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	rtcpOf := func(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr(), ap.Port()+1) }
	rr := func(ssrc byte) []byte {
		return []byte{0x81, 201, 0, 7, 0, 0, 0, ssrc, 0, 0, 0, 0xB, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	}
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)
	a.rtcp.WriteToUDPAddrPort(rr(0xA), rtcpOf(toA))
	recv(t, b.rtcp, 2*time.Second)
	time.Sleep(250 * time.Millisecond) // the window is over

	bReports := func(to *net.UDPConn) {
		t.Helper()
		b.rtcp.WriteToUDPAddrPort(rr(0xB), rtcpOf(toB))
		if _, _, err := tryRecv(to, time.Second); err != nil {
			t.Fatalf("B's report did not reach %s", to.LocalAddr())
		}
	}
	neighbour.rtcp.WriteToUDPAddrPort(rr(0x5), rtcpOf(toA))
	if _, _, err := tryRecv(b.rtcp, 100*time.Millisecond); err == nil {
		t.Fatal("RTCP with another SSRC from a new port of the peer's address was relayed")
	}
	bReports(a.rtcp) // not to the neighbour
	rebound.rtcp.WriteToUDPAddrPort(rr(0xA), rtcpOf(toA))
	recv(t, b.rtcp, 2*time.Second)
	bReports(rebound.rtcp)
}

// TestLatchNewPortInWindow: inside the learning window (after a
// re-INVITE, say) a new port of the latched address re-latches with the
// same SSRC whatever its sequence numbers: a NAT that forgot the mapping
// while the peer was quiet, and a peer (SIPp) that replays its stream.
func TestLatchNewPortInWindow(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.LatchWindow = 5 * time.Second })
	a, b, rebound := newPeer(t), newPeer(t), newPeer(t)
	_, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	for seq := range uint16(3) {
		a.rtp.WriteToUDPAddrPort(rtpPacket(0, 100+seq, 160*uint32(seq), 0xA), toA)
		recv(t, b.rtp, 2*time.Second)
	}
	rebound.rtp.WriteToUDPAddrPort(rtpPacket(0, 100, 0, 0xA), toA) // the stream from its start again
	recv(t, b.rtp, 2*time.Second)
}

// TestLatchedCounter: PacketsLatchedUserspace counts what userspace took
// in after both legs had latched, not the packets before.
func TestLatchedCounter(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	for i := range 3 { // before B latched: not counted
		a.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(i), 0, 0xA), toA)
		recv(t, b.rtp, 2*time.Second)
	}
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB) // latches B: not counted either
	recv(t, a.rtp, 2*time.Second)
	for i := range 5 {
		a.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(10+i), 0, 0xA), toA)
		recv(t, b.rtp, 2*time.Second)
		b.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(10+i), 0, 0xB), toB)
		recv(t, a.rtp, 2*time.Second)
	}
	st := s.Stats()
	if la, lb := st.Legs[SideA], st.Legs[SideB]; la.PacketsIn != 8 || la.PacketsLatchedUserspace != 5 ||
		lb.PacketsIn != 6 || lb.PacketsLatchedUserspace != 5 || la.PacketsKernel != 0 || lb.PacketsKernel != 0 {
		t.Errorf("A in %d latched %d kernel %d, B in %d latched %d kernel %d; want 8 5 0, 6 5 0",
			la.PacketsIn, la.PacketsLatchedUserspace, la.PacketsKernel, lb.PacketsIn, lb.PacketsLatchedUserspace, lb.PacketsKernel)
	}
}

// TestStrayKinds: datagrams that are not RTP of a negotiated payload type
// are dropped and counted.
func TestStrayKinds(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	for _, p := range [][]byte{{1, 2}, []byte("GET / HTTP/1.0\r\n\r\n"), {0x16, 0xfe, 0xfd, 0, 0, 0, 0}, rtpPacket(96, 1, 0, 1), rtpPacket(0, 1, 0, 1)[:11]} {
		a.rtp.WriteToUDPAddrPort(p, toA)
	}
	if got, _, err := tryRecv(b.rtp, 200*time.Millisecond); err == nil {
		t.Fatalf("junk relayed: %x", got)
	}
	if st := s.Stats().Legs[SideA]; st.Strays != 5 || st.PacketsIn != 0 {
		t.Errorf("strays %d in %d, want 5, 0", st.Strays, st.PacketsIn)
	}
}

// TestPortExhaustion: when the pool is empty NewSession says ErrNoPorts;
// Close returns the ports.
func TestPortExhaustion(t *testing.T) {
	e := newTestEngine(t, 4, nil)
	var ss []*Session
	for {
		s, err := e.NewSession("x", plain, plain, nil)
		if err != nil {
			if !errors.Is(err, ErrNoPorts) {
				t.Fatalf("NewSession = %v, want ErrNoPorts", err)
			}
			break
		}
		ss = append(ss, s)
	}
	if len(ss) == 0 || len(ss) > 2 {
		t.Fatalf("%d sessions from 4 pairs (some may be busy), want 1 or 2", len(ss))
	}
	if st := e.Stats(); st.PortsFree > 2 {
		t.Errorf("after exhaustion %d ports free", st.PortsFree)
	}
	for _, s := range ss {
		s.Close()
		s.Close() // idempotent
	}
	if st := e.Stats(); st.PortsInUse != 0 || st.Sessions != 0 {
		t.Errorf("after Close: %d ports in use, %d sessions", st.PortsInUse, st.Sessions)
	}
	if _, err := e.NewSession("again", plain, plain, nil); err != nil {
		t.Errorf("NewSession after Close: %v", err)
	}
}

// TestInactivityTimeout: media stops → onTimeout once; before an answer the
// clock does not run.
func TestInactivityTimeout(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.InactivityTimeout = 300 * time.Millisecond })
	a, b := newPeer(t), newPeer(t)
	fired := make(chan struct{}, 2)
	ringing, err := e.NewSession("ringing", plain, plain, func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer ringing.Close()
	if _, err := ringing.Offer(SideA, a.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	s, err := e.NewSession("talking", plain, plain, func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Offer(SideA, a.sdp("RTP/AVP", "0"))
	if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	toA, _ := mediaAddr(t, must(s.Answer(SideB, b.sdp("RTP/AVP", "0"))))
	stop := time.Now().Add(600 * time.Millisecond)
	for i := 0; time.Now().Before(stop); i++ {
		a.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(i), 0, 1), toA)
		time.Sleep(20 * time.Millisecond)
		select {
		case <-fired:
			t.Fatal("timeout fired while media flowed")
		default:
		}
	}
	// Strays do not keep the call alive.
	stranger := newPeer(t)
	strayStop := make(chan struct{})
	defer close(strayStop)
	go func() {
		for {
			select {
			case <-strayStop:
				return
			case <-time.After(20 * time.Millisecond):
				stranger.rtp.WriteToUDPAddrPort([]byte("junk"), toA)
			}
		}
	}()
	select {
	case <-fired:
	case <-time.After(2 * time.Second):
		t.Fatal("no timeout after media stopped")
	}
	select {
	case <-fired:
		t.Fatal("timeout fired twice, or for the session still ringing")
	case <-time.After(700 * time.Millisecond):
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestUnallocatedFlood: datagrams at media ports not handed out reach no
// socket: the workers never wake, the kernel's NoPorts counter (reported as
// UnallocatedDrops) takes them.
func TestUnallocatedFlood(t *testing.T) {
	e := newTestEngine(t, 64, nil)
	s, err := e.NewSession("one", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	inUse := map[int]bool{}
	for _, l := range s.legs {
		inUse[l.rtp.port], inUse[l.rtcp.port] = true, true
	}
	// A pair of the range the engine did not hand out and nobody else
	// holds right now (other worktrees' tests share the machine).
	port := 0
	for p := e.cfg.PortMin; p < e.cfg.PortMax && port == 0; p += 2 {
		if inUse[p] {
			continue
		}
		if probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}); err == nil {
			probe.Close()
			port = p
		}
	}
	if port == 0 {
		t.Fatal("no free port in the engine's range to flood")
	}
	floodCostsNothing(t, e, netip.AddrPortFrom(loopback, uint16(port)), "unallocated port")
}

// floodCostsNothing sends a flood to media port to and checks that it woke
// no worker, that no worker read any of it and that UnallocatedDrops
// counts every datagram.
func floodCostsNothing(t *testing.T, e *Engine, to netip.AddrPort, what string) {
	t.Helper()
	// Unconnected: ICMP port unreachable is not reported back, every
	// datagram leaves.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := e.Stats()
	const n = 5000
	pkt := rtpPacket(0, 1, 0, 1)
	for range n {
		if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	after := e.Stats()
	if after.Wakeups != before.Wakeups || after.Datagrams != before.Datagrams {
		t.Errorf("a flood at %s %s woke the workers: %d → %d wake-ups, %d → %d reads", what, to, before.Wakeups, after.Wakeups, before.Datagrams, after.Datagrams)
	}
	if got := after.UnallocatedDrops - before.UnallocatedDrops; got < n {
		t.Errorf("a flood at %s %s: UnallocatedDrops grew by %d, want ≥ %d", what, to, got, n)
	}
}

// recorder is a tiny local terminator: it keeps what a leg received.
type recorder struct {
	mu   sync.Mutex
	rtp  [][]byte
	rtcp int
}

func (r *recorder) RTP(p []byte) {
	r.mu.Lock()
	r.rtp = append(r.rtp, bytes.Clone(p))
	r.mu.Unlock()
}
func (r *recorder) RTCP([]byte) { r.mu.Lock(); r.rtcp++; r.mu.Unlock() }

func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.rtp) }

// TestTerminatorSeam: a leg can end in the core as naturally as it is
// relayed: a recorder takes a Secured leg's decrypted media, and Send plays
// media out of it, encrypted.
func TestTerminatorSeam(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	aKey, aLine := peerKey(t, 1, 0)
	s, toA, _, _, answerToA := call(t, e, secured, plain, a.sdp("RTP/SAVP", "0", aLine), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	rec := &recorder{}
	s.Attach(SideA, rec)
	enc := mustContext(t, aKey, false)
	pkt := rtpPacket(0, 1, 160, 0xA)
	out, _ := enc.EncryptRTP(nil, pkt, nil)
	a.rtp.WriteToUDPAddrPort(out, toA)
	deadline := time.Now().Add(2 * time.Second)
	for rec.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if rec.count() != 1 || !bytes.Equal(rec.rtp[0], pkt) {
		t.Fatalf("recorder got %d packets", rec.count())
	}
	if _, _, err := tryRecv(b.rtp, 100*time.Millisecond); err == nil {
		t.Fatal("a terminated leg still relayed")
	}
	prompt := rtpPacket(0, 7, 0, 0xC0FFEE)
	if err := s.Send(SideA, prompt); err != nil {
		t.Fatal(err)
	}
	got, _ := recv(t, a.rtp, 2*time.Second)
	dec, err := mustContext(t, engineKey(t, answerToA, 1), true).DecryptRTP(nil, got, nil)
	if err != nil || !bytes.Equal(dec, prompt) {
		t.Fatalf("played packet: %v", err)
	}
	s.Attach(SideA, nil) // back to relay
	out, _ = enc.EncryptRTP(nil, rtpPacket(0, 2, 320, 0xA), nil)
	a.rtp.WriteToUDPAddrPort(out, toA)
	recv(t, b.rtp, 2*time.Second)
}

// TestSDPRewrite covers codec filtering and order, DTMF, hold, ICE, rtcp-mux
// and the errors a B2BUA turns into 488.
func TestSDPRewrite(t *testing.T) {
	e := newTestEngine(t, 40, nil)
	a := newPeer(t)
	offer := func(pa, pb LegProfile, body []byte) (string, error) {
		s, err := e.NewSession("sdp", pa, pb, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Offer(SideA, body)
		return string(out), err
	}
	full := a.sdp("RTP/AVP", "0 8 9 18 101", "rtpmap:18 G729/8000", "fmtp:18 annexb=no", "rtpmap:101 telephone-event/8000", "fmtp:101 0-16")

	t.Run("filter and order", func(t *testing.T) {
		pb := LegProfile{Local: loopback, Codecs: []string{"G722", "pcma"}}
		out, err := offer(plain, pb, full)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "m=audio ") || !strings.Contains(out, " RTP/AVP 9 8 101\r\n") || strings.Contains(out, "G729") || strings.Contains(out, "annexb") {
			t.Errorf("want G722, PCMA, telephone-event only:\n%s", out)
		}
	})
	t.Run("drop DTMF", func(t *testing.T) {
		out, err := offer(plain, LegProfile{Local: loopback, DropDTMF: true}, full)
		// The formats after the profile, not " 101" anywhere: a port of
		// 10100-10199 has it too.
		if err != nil || strings.Contains(out, "telephone-event") || !strings.Contains(out, " RTP/AVP 0 8 9 18\r\n") {
			t.Errorf("DropDTMF kept telephone-event (%v):\n%s", err, out)
		}
	})
	t.Run("no common codec", func(t *testing.T) {
		_, err := offer(plain, LegProfile{Local: loopback, Codecs: []string{"opus"}}, full)
		if !errors.Is(err, ErrNotAcceptable) {
			t.Errorf("err = %v, want ErrNotAcceptable", err)
		}
	})
	t.Run("hold passes through", func(t *testing.T) {
		body := bytes.Replace(a.sdp("RTP/AVP", "0", "sendonly"), []byte("c=IN IP4 127.0.0.1"), []byte("c=IN IP4 0.0.0.0"), 1)
		out, err := offer(plain, plain, body)
		if err != nil || !strings.Contains(out, "c=IN IP4 0.0.0.0") || !strings.Contains(out, "a=sendonly") {
			t.Errorf("hold lost (%v):\n%s", err, out)
		}
		out, _ = offer(plain, plain, a.sdp("RTP/AVP", "0", "inactive"))
		if !strings.Contains(out, "a=inactive") {
			t.Errorf("inactive lost:\n%s", out)
		}
	})
	t.Run("ICE and crypto of the other leg never leak", func(t *testing.T) {
		_, line := peerKey(t, 1, 0)
		out, err := offer(LegProfile{Local: loopback}, plain, a.sdp("RTP/AVP", "0", "ice-ufrag:abcd", "ice-pwd:0123456789012345678901",
			"candidate:1 1 UDP 2130706431 10.1.1.1 5000 typ host", line, "rtcp-mux", "rtcp:9 IN IP4 10.1.1.1"))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"ice-", "candidate", "crypto", "10.1.1.1"} {
			if strings.Contains(out, bad) {
				t.Errorf("%q leaked to the plain leg:\n%s", bad, out)
			}
		}
		if !strings.Contains(out, "a=rtcp-mux") {
			t.Errorf("rtcp-mux not offered on:\n%s", out)
		}
	})
	t.Run("unknown stream declined", func(t *testing.T) {
		body := append(a.sdp("RTP/AVP", "0"), []byte("m=message 5002 TCP/MSRP *\r\na=path:msrp://10.1.1.1:5002/x;tcp\r\n"+
			"m=application 5004 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\n")...)
		out, err := offer(plain, plain, body)
		if err != nil || !strings.Contains(out, "m=message 0 TCP/MSRP *") || !strings.Contains(out, "m=application 0 UDP/DTLS/SCTP") ||
			strings.Contains(out, "msrp://") || strings.Contains(out, "sctp-port") {
			t.Errorf("MSRP and SCTP not declined (%v):\n%s", err, out)
		}
	})
	for name, body := range map[string]string{
		"garbage":       "hello",
		"no c= line":    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
		"fqdn in c=":    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 pbx.example\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
		"bad crypto":    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short\r\n",
		"bad rtpmap":    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96\r\n",
		"no stream":     "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=message 4000 TCP/MSRP *\r\n",
		"image UDPTL":   "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=image 4000 UDPTL t38\r\n",
		"format not pt": "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 4000 RTP/AVP abc\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := offer(plain, plain, []byte(body))
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNotAcceptable) {
				t.Errorf("Offer = %v, want ErrBadSDP or ErrNotAcceptable", err)
			}
		})
	}
}

// TestOfferAnswerState: a repeated answer gives the same description; an
// answer without an offer, and Reject, behave.
func TestOfferAnswerState(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, err := e.NewSession("st", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0")); !errors.Is(err, ErrNoOffer) {
		t.Errorf("Answer without offer = %v, want ErrNoOffer", err)
	}
	s.Offer(SideA, a.sdp("RTP/AVP", "0"))
	first, err := s.Answer(SideB, b.sdp("RTP/AVP", "0"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Answer(SideB, b.sdp("RTP/AVP", "0"))
	if err != nil || !bytes.Equal(first, second) {
		t.Errorf("183 then 200: %v\n%s\n%s", err, first, second)
	}
	// A re-INVITE from B that fails keeps the old state.
	if _, err := s.Offer(SideB, b.sdp("RTP/AVP", "8")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Offer(SideA, a.sdp("RTP/AVP", "0")); !errors.Is(err, ErrNotAcceptable) {
		t.Errorf("glare Offer = %v, want ErrNotAcceptable", err)
	}
	s.Reject(SideB)
	if st := s.Stats(); st.Legs[SideA].Codec != "PCMU" {
		t.Errorf("codec after Reject = %q, want PCMU", st.Legs[SideA].Codec)
	}
	s.Close()
	if _, err := s.Offer(SideA, a.sdp("RTP/AVP", "0")); !errors.Is(err, ErrClosed) {
		t.Errorf("Offer after Close = %v, want ErrClosed", err)
	}
}

// TestHoldAndResume: a re-INVITE with c=0.0.0.0 (RFC 2543 hold) stops media
// towards the held side; the next re-INVITE resumes it, latch kept.
func TestHoldAndResume(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)

	hold := bytes.Replace(a.sdp("RTP/AVP", "0", "sendonly"), []byte("c=IN IP4 127.0.0.1"), []byte("c=IN IP4 0.0.0.0"), 1)
	out, err := s.Offer(SideA, hold)
	if err != nil || !bytes.Contains(out, []byte("c=IN IP4 0.0.0.0")) || !bytes.Contains(out, []byte("a=sendonly")) {
		t.Fatalf("hold offer (%v):\n%s", err, out)
	}
	if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0", "recvonly")); err != nil {
		t.Fatal(err)
	}
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xB), toB)
	if _, _, err := tryRecv(a.rtp, 200*time.Millisecond); err == nil {
		t.Fatal("media reached the held side")
	}
	if _, err := s.Offer(SideA, a.sdp("RTP/AVP", "0", "sendrecv")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0", "sendrecv")); err != nil {
		t.Fatal(err)
	}
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 3, 320, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)
}

// TestNewPeerRelearnsLatch: a re-offer from another peer (a transfer's new
// leg: another SDP address) sends the other side's media to that peer's
// SDP address at once, not on to the old peer's latched source, and the
// new peer's first packet latches; a re-offer from the same SDP address
// (a NATed phone's re-INVITE) keeps the latch.
func TestNewPeerRelearnsLatch(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b, nat, c := newPeer(t), newPeer(t), newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	nat.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA) // A behind a NAT
	recv(t, b.rtp, 2*time.Second)

	reofferA(t, s, a, b) // the same phone again
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 2, 160, 0xB), toB)
	recv(t, nat.rtp, 2*time.Second)

	reofferA(t, s, c, b) // the call moved to c
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 3, 320, 0xB), toB)
	recv(t, c.rtp, 2*time.Second)
	if p, _, err := tryRecv(nat.rtp, 100*time.Millisecond); err == nil {
		t.Fatalf("the old peer still got media after the move: %x", p[:12])
	}
	c.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xC), toA)
	recv(t, b.rtp, 2*time.Second)
	if st := s.Stats().Legs[SideA]; st.Remote != c.addr() {
		t.Errorf("leg A sends to %s, want the new peer %s", st.Remote, c.addr())
	}
}

// reofferA has leg A's peer offer from p (its SDP) and B's peer answer.
func reofferA(t *testing.T, s *Session, p, answerer *peer) {
	t.Helper()
	if _, err := s.Offer(SideA, p.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, answerer.sdp("RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
}

// An attribute the other leg must not get (a key, ICE credentials, the
// transport) does not pass in another case either: a=CRYPTO is a=crypto
// to a peer that reads names without regard to case.
func TestSDPDropsAttributesInAnyCase(t *testing.T) {
	e := newTestEngine(t, 10, nil)
	a := newPeer(t)
	s, err := e.NewSession("case", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := a.sdp("RTP/AVP", "0 8", "CRYPTO:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
		"ICE-PWD:asd88fgpdd777uzjYhagZg", "Ice-Ufrag:8hhY", "Candidate:1 1 UDP 2130706431 127.0.0.1 4000 typ host",
		"RTCP:4001", "Fingerprint:sha-256 AA:BB", "RTPMAP:8 PCMA/8000", "FMTP:96 x=1")
	out, err := s.Offer(SideA, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"WVNfX19z", "asd88fgpdd", "8hhY", "Candidate", "RTCP:4001", "Fingerprint", "FMTP:96"} {
		if strings.Contains(string(out), leak) {
			t.Errorf("%s passed to the other leg:\n%s", leak, out)
		}
	}
	if !strings.Contains(string(out), "RTPMAP:8 PCMA/8000") {
		t.Errorf("the rtpmap of an offered format went:\n%s", out)
	}
}

// R-SBC-1: an attribute that names an address (a vendor's own, which
// dropAttr cannot know) does not pass to the other side, at session or
// media level, in any spelling; those a stream needs stay.
func TestSDPHidesAddressesInAttributes(t *testing.T) {
	e := newTestEngine(t, 10, nil)
	a := newPeer(t)
	s, err := e.NewSession("addr", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := a.sdp("RTP/AVP", "0 101", "rtpmap:101 telephone-event/8000", "fmtp:101 0-15", "ptime:20",
		"x-nat-addr:10.1.1.5", "x-peer:[2001:db8::7]:5060", "x-sig:sip:pbx@192.0.2.9:5070;transport=tcp",
		"x-v6 2001:db8:0:1::99", "x-end 198.51.100.4.", "x-loop ::1", "x-tool:pbx 1.2.3", "framerate:29.97")
	body = append(body, "a=x-session:10.9.9.9\r\n"...)
	body = bytes.Replace(body, []byte("t=0 0\r\n"), []byte("t=0 0\r\na=x-origin:203.0.113.77:1234\r\n"), 1)
	body = bytes.Replace(body, []byte(" 0 101\r\n"), []byte(" 0 101\r\ni=audio from pbx7.inside.example\r\nk=clear:inside-secret\r\n"), 1)
	out, err := s.Offer(SideA, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"pbx7.inside", "inside-secret", "10.1.1.5", "2001:db8::7", "192.0.2.9", "2001:db8:0:1::99", "198.51.100.4", "::1", "10.9.9.9", "203.0.113.77"} {
		if strings.Contains(string(out), leak) {
			t.Errorf("%s leaked:\n%s", leak, out)
		}
	}
	for _, keep := range []string{"a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=x-tool:pbx 1.2.3", "a=framerate:29.97"} {
		if !strings.Contains(string(out), keep) {
			t.Errorf("%s dropped:\n%s", keep, out)
		}
	}
}

// TestSettle: a settled session forgets the answered offer (a repeated
// answer is refused) but keeps its media and an offer in progress, and
// takes new offers.
func TestSettle(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	a, b := newPeer(t), newPeer(t)
	s, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	s.Settle()
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if last != nil {
		t.Error("a settled session still holds the answered offer")
	}
	if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0")); !errors.Is(err, ErrNoOffer) {
		t.Errorf("a repeated answer after Settle = %v, want ErrNoOffer", err)
	}
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)

	// A re-INVITE's offer survives a Settle and its answer is taken.
	if _, err := s.Offer(SideB, b.sdp("RTP/AVP", "8")); err != nil {
		t.Fatal(err)
	}
	s.Settle()
	if _, err := s.Answer(SideA, a.sdp("RTP/AVP", "8")); err != nil {
		t.Fatalf("the answer to an offer made before Settle = %v", err)
	}
	if st := s.Stats(); st.Legs[SideA].Codec != "PCMA" {
		t.Errorf("codec after the re-INVITE = %q, want PCMA", st.Legs[SideA].Codec)
	}
}

// What a session keeps of a negotiation does not pin the SDPs it was
// parsed from (pion's lexer copies every field of one into one buffer): a
// session made from SDPs padded by 3 KB each holds no more than one made
// from small ones.
func TestNegotiatedStringsDoNotPinTheSDP(t *testing.T) {
	// Enough sessions that what other tests' goroutines allocate meanwhile
	// (pion agents winding down) is a few bytes a session: pinned, the
	// padded SDPs kept ~3.8 KB a session more.
	const n = 200
	e := newTestEngine(t, 4*n, nil)
	a, b := newPeer(t), newPeer(t)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var all []*Session
	defer func() {
		for _, s := range all {
			s.Close()
		}
	}()
	// Sessions stay open until both rounds are measured: closing one
	// moves its sockets to the idle pool meanwhile.
	perSession := func(extra ...string) float64 {
		before := heap()
		for i := range n {
			s, err := e.NewSession(fmt.Sprint("pin-", len(extra), "-", i), plain, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, s)
			if _, err := s.Offer(SideA, a.sdp("RTP/AVP", "0", extra...)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Answer(SideB, b.sdp("RTP/AVP", "0", extra...)); err != nil {
				t.Fatal(err)
			}
			s.Settle()
		}
		return (float64(heap()) - float64(before)) / n
	}
	small := perSession()
	padded := perSession("x-pad:" + strings.Repeat("p", 3000))
	if padded-small > 1500 {
		t.Errorf("a session of padded SDPs keeps %.0f B, of small ones %.0f B: the SDPs' buffers are pinned", padded, small)
	}
}
