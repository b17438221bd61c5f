package media

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// ports returns the RTP ports of s's legs.
func ports(s *Session) [2]int { return [2]int{s.legs[SideA].rtp.port, s.legs[SideB].rtp.port} }

func newSession(t *testing.T, e *Engine, a, b LegProfile) *Session {
	t.Helper()
	s, err := e.NewSession("pool-"+t.Name(), a, b, nil)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestIdlePairQuarantine: a pair freed by a call is not handed out at once
// while other pairs are free; after the quarantine the oldest idle pair
// goes first, and it is the same sockets, not new ones.
func TestIdlePairQuarantine(t *testing.T) {
	e := newTestEngine(t, 16, func(c *Config) { c.IdleQuarantine = 300 * time.Millisecond })
	first := newSession(t, e, plain, plain)
	p1 := ports(first)
	fd1 := first.legs[SideA].rtp.fd
	first.Close()
	time.Sleep(50 * time.Millisecond)
	second := newSession(t, e, plain, plain)
	p2 := ports(second)
	if p2[0] == p1[0] || p2[0] == p1[1] || p2[1] == p1[0] || p2[1] == p1[1] {
		t.Fatalf("a call's pairs %v were handed to the next call at once (%v)", p1, p2)
	}
	second.Close()
	if st := e.Stats(); st.IdlePairs != 4 || st.PortsInUse != 0 || st.PairsReused != 0 {
		t.Fatalf("after two calls: %d idle pairs, %d ports in use, %d reused; want 4, 0, 0", st.IdlePairs, st.PortsInUse, st.PairsReused)
	}
	time.Sleep(300 * time.Millisecond) // both calls' pairs out of quarantine: the first's are the oldest
	third := newSession(t, e, plain, plain)
	if got := ports(third); got != p1 {
		t.Errorf("after the quarantine the next call got %v, want the oldest idle pairs %v", got, p1)
	}
	if third.legs[SideA].rtp.fd != fd1 {
		t.Errorf("the idle pair was opened anew (fd %d, was %d)", third.legs[SideA].rtp.fd, fd1)
	}
	if st := e.Stats(); st.PairsReused != 2 || st.PairsReusedEarly != 0 || st.IdlePairs != 2 {
		t.Errorf("reused %d (early %d), idle %d; want 2 (0), 2", st.PairsReused, st.PairsReusedEarly, st.IdlePairs)
	}
}

// TestIdlePairDrained: what the old call's peer sends to a pair while it is
// idle never reaches the new call: the new leg is not latched to it, counts
// nothing, and the datagrams are counted as unallocated drops.
func TestIdlePairDrained(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.IdleQuarantine = 200 * time.Millisecond })
	oldA, oldB := newPeer(t), newPeer(t)
	old, toA, toB, _, _ := call(t, e, plain, plain, oldA.sdp("RTP/AVP", "0"), func([]byte) []byte { return oldB.sdp("RTP/AVP", "0") })
	oldA.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, oldB.rtp, 2*time.Second)
	oldB.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, oldA.rtp, 2*time.Second)
	p := ports(old)
	old.Close()

	// The old peers go on sending (they did not get the BYE yet).
	before := e.Stats()
	const late = 3
	for i := range late {
		oldA.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(2+i), 0, 0xA), toA)
		oldB.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(2+i), 0, 0xB), toB)
	}
	time.Sleep(250 * time.Millisecond)

	a, b := newPeer(t), newPeer(t)
	s, newToA, newToB, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if got := ports(s); got != p {
		t.Fatalf("the new call got %v, want the idle pairs %v (the range has no other)", got, p)
	}
	time.Sleep(50 * time.Millisecond) // a worker would have read what was queued by now
	st := s.Stats()
	for side, want := range []netip.AddrPort{a.addr(), b.addr()} {
		lg := st.Legs[side]
		if lg.PacketsIn != 0 || lg.Strays != 0 || lg.Remote != want {
			t.Errorf("leg %s of the new call: %d in, %d strays, sends to %s; want 0, 0, its SDP address %s",
				Side(side), lg.PacketsIn, lg.Strays, lg.Remote, want)
		}
	}
	after := e.Stats()
	if got := after.UnallocatedDrops - before.UnallocatedDrops; got < 2*late {
		t.Errorf("UnallocatedDrops grew by %d, want ≥ %d (the datagrams that reached the idle pairs)", got, 2*late)
	}
	// The new call works on the reused sockets.
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0x1A), newToA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0x1B), newToB)
	recv(t, a.rtp, 2*time.Second)
	if lg := s.Stats().Legs[SideA]; lg.Remote != a.addr() || lg.PacketsIn != 1 {
		t.Errorf("new call leg A: latched %s, %d in; want %s, 1", lg.Remote, lg.PacketsIn, a.addr())
	}
}

// rmemAlloc is the memory fd's receive queue holds (SO_MEMINFO).
func rmemAlloc(t *testing.T, fd int) uint32 {
	t.Helper()
	var mi [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mi))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		t.Fatal(e)
	}
	return mi[unix.SK_MEMINFO_RMEM_ALLOC]
}

// TestIdlePairFlood: a flood at an idle pair wakes no worker and holds no
// memory: the engine's socket filter drops the datagrams before any queue
// (or, parked by connect(2), they find no socket, as at a port with none),
// and they are counted (UnallocatedDrops). The reused socket takes
// datagrams from anyone again. TestIdlePairParkedFlood has both ways.
func TestIdlePairFlood(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.IdleQuarantine = time.Millisecond })
	s := newSession(t, e, plain, plain)
	rtpPort := s.legs[SideA].rtp.port
	fd := s.legs[SideA].rtp.fd
	s.Close()
	floodCostsNothing(t, e, netip.AddrPortFrom(loopback, uint16(rtpPort)), "idle pair")
	if q := rmemAlloc(t, fd); q != 0 {
		t.Errorf("the idle socket holds %d bytes of the flood, want none", q)
	}
	a, b := newPeer(t), newPeer(t)
	s2, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if s2.legs[SideA].rtp.fd != fd && s2.legs[SideB].rtp.fd != fd {
		t.Fatal("the flooded pair was not reused")
	}
	if st := s2.Stats(); st.Legs[SideA].PacketsIn != 0 || st.Legs[SideB].PacketsIn != 0 {
		t.Errorf("the flood reached the new call: %d and %d packets in", st.Legs[SideA].PacketsIn, st.Legs[SideB].PacketsIn)
	}
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
}

// TestIdlePairDrainedAtClose: what was queued for a session, unread, when
// it ended is read and dropped while its pair is idle, counted as
// unallocated drops, and never reaches the next call.
func TestIdlePairDrainedAtClose(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.IdleQuarantine = 50 * time.Millisecond })
	oldA, oldB := newPeer(t), newPeer(t)
	old, toA, _, _, _ := call(t, e, plain, plain, oldA.sdp("RTP/AVP", "0"), func([]byte) []byte { return oldB.sdp("RTP/AVP", "0") })
	// Closed for the workers (they read nothing more), its sockets not
	// released yet: what arrives now stays queued.
	old.mu.Lock()
	old.closed = true
	old.mu.Unlock()
	const queued = 4
	for i := range queued {
		oldA.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(i), 0, 0xA), toA)
	}
	time.Sleep(20 * time.Millisecond)
	before := e.Stats()
	old.finish()
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got := e.Stats().UnallocatedDrops - before.UnallocatedDrops; got >= queued {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("UnallocatedDrops grew by %d after the pair went idle, want ≥ %d", got, queued)
		}
	}
	time.Sleep(60 * time.Millisecond)
	a, b := newPeer(t), newPeer(t)
	s, _, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if e.Stats().PairsReused != 2 {
		t.Fatalf("%d pairs reused, want 2", e.Stats().PairsReused)
	}
	time.Sleep(50 * time.Millisecond)
	if lg := s.Stats().Legs[SideA]; lg.PacketsIn != 0 || lg.Remote != a.addr() {
		t.Errorf("the old call's queued packets reached the new one: %d in, sending to %s (want 0, %s)", lg.PacketsIn, lg.Remote, a.addr())
	}
}

// TestIdlePairExhaustion: idle pairs count as free; when nothing else is
// free a pair in quarantine is taken (drained) rather than a call refused,
// a leg on another local address takes an idle pair's ports, and the pool
// runs dry with ErrNoPorts exactly as without idle pairs.
func TestIdlePairExhaustion(t *testing.T) {
	e := newTestEngine(t, 4, func(c *Config) { c.IdleQuarantine = time.Hour })
	fill := func(prof LegProfile) []*Session {
		var ss []*Session
		for {
			s, err := e.NewSession("x", prof, prof, nil)
			if err != nil {
				if !errors.Is(err, ErrNoPorts) {
					t.Fatalf("NewSession = %v, want ErrNoPorts", err)
				}
				return ss
			}
			t.Cleanup(s.Close)
			ss = append(ss, s)
		}
	}
	first := fill(plain)
	if len(first) == 0 {
		t.Fatal("no session from 4 pairs")
	}
	for _, s := range first {
		s.Close()
	}
	st := e.Stats()
	if st.PortsInUse != 0 || st.IdlePairs != 2*len(first) || st.PortsFree != 8 {
		t.Fatalf("after Close: %d ports in use, %d free, %d idle pairs; want 0, 8, %d", st.PortsInUse, st.PortsFree, st.IdlePairs, 2*len(first))
	}
	again := fill(plain)
	if len(again) < len(first) {
		t.Errorf("with every free pair in quarantine %d sessions, before %d", len(again), len(first))
	}
	if st := e.Stats(); st.PairsReusedEarly == 0 {
		t.Error("no pair in quarantine was reused although nothing else was free")
	}
	for _, s := range again {
		s.Close()
	}
	other := LegProfile{Local: netip.MustParseAddr("127.0.0.2"), Security: SecurityRTP}
	if n := len(fill(other)); n < len(first) {
		t.Errorf("a leg on another address got %d sessions from idle pairs of 127.0.0.1, want %d", n, len(first))
	}
	if st := e.Stats(); st.IdlePairs != 0 {
		t.Errorf("%d idle pairs of 127.0.0.1 left while 127.0.0.2 took every port", st.IdlePairs)
	}
}

// TestIdlePairBound: the pool keeps at most IdlePairs pairs; the others are
// closed, their ports free to bind.
func TestIdlePairBound(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.IdlePairs = 1 })
	s := newSession(t, e, plain, plain)
	p := ports(s)
	s.Close()
	if st := e.Stats(); st.IdlePairs != 1 || st.PortsInUse != 0 {
		t.Fatalf("%d idle pairs, %d ports in use; want 1, 0", st.IdlePairs, st.PortsInUse)
	}
	bound := 0
	for _, port := range p {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err == nil {
			c.Close()
		} else {
			bound++
		}
	}
	if bound != 1 {
		t.Errorf("%d of the session's pairs still bound, want 1 (the pool's bound)", bound)
	}
	off := newTestEngine(t, 8, func(c *Config) { c.IdlePairs = -1 })
	s = newSession(t, off, plain, plain)
	s.Close()
	if st := off.Stats(); st.IdlePairs != 0 {
		t.Errorf("IdlePairs -1 kept %d pairs", st.IdlePairs)
	}
}

func TestIdleBound(t *testing.T) {
	tests := []struct {
		name   string
		pairs  int
		nofile uint64
		want   int
	}{
		{name: "a quarter of the descriptors", pairs: 8192, nofile: 20000, want: 2500},
		{name: "no more than the range", pairs: 100, nofile: 1 << 20, want: 100},
		{name: "capped", pairs: 32768, nofile: 1 << 30, want: maxIdlePairs},
		{name: "pid 1's default limit", pairs: 8192, nofile: 4096, want: 512},
		{name: "the appliance's nr_open, the shipped range", pairs: 8192, nofile: 1 << 20, want: 8192},
		{name: "the appliance's nr_open, a wide range", pairs: 30000, nofile: 1 << 20, want: 16384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := idleBound(tt.pairs, tt.nofile); got != tt.want {
				t.Errorf("idleBound(%d, %d) = %d, want %d", tt.pairs, tt.nofile, got, tt.want)
			}
		})
	}
}

// TestIdleBoundServesCallRates: where the limit and the range allow it,
// the derived bound keeps an idle pair for every leg that ends within a
// quarantine at the call rates bench-b2bua runs (4,000 calls/s, two legs
// each), and never more descriptors than a quarter of the limit.
func TestIdleBoundServesCallRates(t *testing.T) {
	need := 4000 * 2 * int(DefaultIdleQuarantine/time.Second)
	if got := idleBound(30000, 1<<20); got < need {
		t.Errorf("idleBound under the appliance's limit = %d pairs, want ≥ %d (4,000 calls/s × 2 legs × %v)", got, need, DefaultIdleQuarantine)
	}
	for _, nofile := range []uint64{1024, 4096, 20000, 65536, 1 << 20, 1 << 40} {
		if got := idleBound(1<<20, nofile); uint64(2*got) > nofile/4 {
			t.Errorf("idleBound(…, %d) = %d pairs: %d descriptors, more than a quarter of the limit", nofile, got, 2*got)
		}
	}
}

// TestIdlePairFamilies: idle pairs are kept per local address: a leg on
// ::1 never gets a pair bound to 127.0.0.1.
func TestIdlePairFamilies(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.IdleQuarantine = time.Millisecond })
	v6 := LegProfile{Local: netip.IPv6Loopback(), Security: SecurityRTP}
	s := newSession(t, e, plain, v6)
	s.Close()
	time.Sleep(5 * time.Millisecond)
	s = newSession(t, e, v6, v6)
	for _, l := range s.legs {
		for _, k := range []*sock{l.rtp, l.rtcp} {
			sa, err := unix.Getsockname(k.fd)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := sa.(*unix.SockaddrInet6); !ok {
				t.Errorf("leg %s on ::1 has a socket bound to %#v", l.side, sa)
			}
		}
	}
	if st := e.Stats(); st.PairsReused != 1 || st.IdlePairs != 1 {
		t.Errorf("reused %d, idle %d; want 1 (the ::1 pair), 1 (the 127.0.0.1 pair)", st.PairsReused, st.IdlePairs)
	}
}

// TestIdlePairsClosedWithEngine: Close closes the idle pairs: their ports
// bind again.
func TestIdlePairsClosedWithEngine(t *testing.T) {
	e := newTestEngine(t, 8, nil)
	s := newSession(t, e, plain, plain)
	p := ports(s)
	s.Close()
	live := newSession(t, e, plain, plain) // closed by the engine's Close
	p2 := ports(live)
	e.Close()
	for _, port := range append(p[:], p2[:]...) {
		for _, pp := range []int{port, port + 1} {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: pp})
			if err != nil {
				t.Errorf("port %d still bound after the engine closed: %v", pp, err)
				continue
			}
			c.Close()
		}
	}
}

// TestIdlePairStateReset: a reused pair's new legs start afresh: the old
// call's SRTP key, latch and counters are gone; only the sockets are the
// same.
func TestIdlePairStateReset(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.IdleQuarantine = 100 * time.Millisecond })
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	oldA, oldB := newPeer(t), newPeer(t)
	oldKey, oldLine := peerKey(t, 1, 0)
	old, toA, _, _, _ := call(t, e, secured, plain, oldA.sdp("RTP/SAVP", "0", oldLine), func([]byte) []byte { return oldB.sdp("RTP/AVP", "0") })
	oldEnc := mustContext(t, oldKey, false)
	for i := range 3 {
		p, _ := oldEnc.EncryptRTP(nil, rtpPacket(0, uint16(1+i), 160, 0xA), nil)
		oldA.rtp.WriteToUDPAddrPort(p, toA)
		recv(t, oldB.rtp, 2*time.Second)
	}
	p := ports(old)
	old.Close()
	time.Sleep(150 * time.Millisecond)

	a, b := newPeer(t), newPeer(t)
	key, line := peerKey(t, 1, 0)
	s, newToA, _, _, _ := call(t, e, secured, plain, a.sdp("RTP/SAVP", "0", line), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if got := ports(s); got != p || newToA != toA {
		t.Fatalf("the new call got %v (A at %s), want the idle pairs %v (A at %s)", got, newToA, p, toA)
	}
	if lg := s.Stats().Legs[SideA]; lg.PacketsIn != 0 || lg.BytesIn != 0 || lg.SRTPFailures != 0 || lg.Remote != a.addr() {
		t.Fatalf("reused leg A starts with %d packets, %d bytes, %d failures, sending to %s; want 0, 0, 0, %s",
			lg.PacketsIn, lg.BytesIn, lg.SRTPFailures, lg.Remote, a.addr())
	}
	// The old peer goes on with the old key, from its latched address.
	late, _ := oldEnc.EncryptRTP(nil, rtpPacket(0, 4, 640, 0xA), nil)
	oldA.rtp.WriteToUDPAddrPort(late, toA)
	if got, _, err := tryRecv(b.rtp, 200*time.Millisecond); err == nil {
		t.Fatalf("the old call's SRTP was relayed into the new call: %x", got[:12])
	}
	enc := mustContext(t, key, false)
	good, _ := enc.EncryptRTP(nil, rtpPacket(0, 1, 160, 0x1A), nil)
	a.rtp.WriteToUDPAddrPort(good, newToA)
	recv(t, b.rtp, 2*time.Second)
	lg := s.Stats().Legs[SideA]
	if lg.SRTPFailures != 1 || lg.PacketsIn != 1 || lg.Remote != a.addr() {
		t.Errorf("new leg A: %d SRTP failures, %d in, latched %s; want 1 (the old key), 1, %s", lg.SRTPFailures, lg.PacketsIn, lg.Remote, a.addr())
	}
}

// TestIdlePairsConcurrent: sessions opened and closed from many goroutines
// on two workers, IPv4 and IPv6, while a flood hits the whole range: no
// error but ErrNoPorts, no port lost, the bound kept.
func TestIdlePairsConcurrent(t *testing.T) {
	e := newTestEngine(t, 24, func(c *Config) { c.IdleQuarantine = time.Nanosecond; c.IdlePairs = 12 })
	v6 := LegProfile{Local: netip.IPv6Loopback(), Security: SecurityRTP}
	stop := make(chan struct{})
	var flood sync.WaitGroup
	flood.Go(func() {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		pkt := rtpPacket(0, 1, 0, 1)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			port := e.cfg.PortMin + i%(e.cfg.PortMax-e.cfg.PortMin+1)
			c.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(loopback, uint16(port)))
		}
	})
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 150 {
				a, b := plain, plain
				if (g+i)%3 == 0 {
					b = v6
				}
				s, err := e.NewSession("c", a, b, nil)
				if errors.Is(err, ErrNoPorts) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				s.Close()
			}
		})
	}
	wg.Wait()
	close(stop)
	flood.Wait()
	st := e.Stats()
	if st.PortsInUse != 0 || st.PortsFree != 48 || st.IdlePairs > 12 {
		t.Errorf("after the calls: %d ports in use, %d free, %d idle pairs; want 0, 48, ≤ 12", st.PortsInUse, st.PortsFree, st.IdlePairs)
	}
	if st.PairsReused == 0 {
		t.Error("no pair was reused")
	}
	t.Logf("legs: %d reused (%d early), %d opened", st.PairsReused, st.PairsReusedEarly, st.PairsOpened)
}

// TestIdlePairICEReset: a reused pair's leg has the new call's ICE
// credentials only: a check made with the old call's is a stray.
func TestIdlePairICEReset(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.IdleQuarantine = 50 * time.Millisecond })
	iceCall := func() (*Session, netip.AddrPort, string, string, *peer) {
		a, b := newPeer(t), newPeer(t)
		s, toA, _, _, answerToA := call(t, e, plain, plain, a.sdp("RTP/AVP", "0", "ice-ufrag:peerU", "ice-pwd:peerpasswordpeerpassword"),
			func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
		_, sd := mediaAddr(t, answerToA)
		u, p := attr(sd, "ice-ufrag"), attr(sd, "ice-pwd")
		if len(u) != 1 || len(p) != 1 {
			t.Fatalf("answer without ICE credentials:\n%s", answerToA)
		}
		return s, toA, u[0], p[0], a
	}
	check := func(a *peer, to netip.AddrPort, ufrag, pwd string) bool {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag+":peerU"),
			stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
		a.rtp.WriteToUDPAddrPort(req.Raw, to)
		_, _, err := tryRecv(a.rtp, 300*time.Millisecond)
		return err == nil
	}
	old, oldTo, oldU, oldP, oldA := iceCall()
	if !check(oldA, oldTo, oldU, oldP) {
		t.Fatal("the first call's check was not answered")
	}
	p := ports(old)
	old.Close()
	time.Sleep(60 * time.Millisecond)
	s, to, u, pw, a := iceCall()
	if ports(s) != p || to != oldTo {
		t.Fatalf("the new call got %v, want the idle pairs %v", ports(s), p)
	}
	if u == oldU || pw == oldP {
		t.Fatal("the new call announced the old call's ICE credentials")
	}
	if check(a, to, oldU, oldP) {
		t.Error("a check with the old call's credentials was answered on the reused pair")
	}
	if !check(a, to, u, pw) {
		t.Error("a check with the new call's credentials was not answered")
	}
	if st := s.Stats().Legs[SideA]; st.Strays != 1 {
		t.Errorf("strays %d, want 1 (the old check)", st.Strays)
	}
}
