package media

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/testutil"
	"golang.org/x/sys/unix"
)

// filterLocal is the local address of these tests' legs: a loopback
// address of their own, as benchmarks on the machine may hold thousands
// of 127.0.0.1's ports. Their peers and floods are on 127.0.0.1.
var filterLocal = LegProfile{Local: netip.MustParseAddr("127.0.0.62"), Security: SecurityRTP}

// parkWays are the two ways an idle pair is parked: by the socket filter,
// and by connect(2), the fallback.
var parkWays = []struct {
	name      string
	byConnect bool
}{{"filter", false}, {"connect", true}}

// parkEngine is newTestEngine parking by the filter or by connect(2); it
// fails when the filter was wanted and did not load (these tests run as
// root, where it loads).
func parkEngine(t *testing.T, pairs int, byConnect bool, mod func(*Config)) *Engine {
	t.Helper()
	e := newTestEngine(t, pairs, func(c *Config) {
		c.parkByConnect = byConnect
		if mod != nil {
			mod(c)
		}
	})
	if got := e.Stats().IdleFilter; got == byConnect {
		t.Fatalf("EngineStats.IdleFilter = %v, want %v", got, !byConnect)
	}
	return e
}

// peerOf is the address fd is connected to; invalid when it is not.
func peerOf(t *testing.T, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getpeername(fd)
	if errors.Is(err, unix.ENOTCONN) {
		return netip.AddrPort{}
	}
	if err != nil {
		t.Fatal(err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	t.Fatalf("getpeername: %#v", sa)
	return netip.AddrPort{}
}

// wantParked fails unless the pair at port (RTP; RTCP is port+1), with
// sockets fds, is parked as the mode says: by the filter's marks, its
// sockets connected to nobody (no system call made), or connected to
// themselves.
func wantParked(t *testing.T, e *Engine, local netip.Addr, port int, fds [2]int, byConnect bool) {
	t.Helper()
	for i, fd := range fds {
		self := netip.AddrPortFrom(local, uint16(port+i))
		peer := peerOf(t, fd)
		if byConnect {
			if peer != self {
				t.Errorf("idle socket %s connected to %s, want itself", self, peer)
			}
			continue
		}
		if peer.IsValid() || !e.park.Parked(port+i) {
			t.Errorf("idle socket %s: connected to %v, parked %v; want nobody, parked by the filter", self, peer, e.park.Parked(port+i))
		}
	}
}

// wantAwake fails unless the reused pair's sockets receive from anyone:
// connected to nobody, not marked.
func wantAwake(t *testing.T, e *Engine, l *leg) {
	t.Helper()
	for _, k := range []*sock{l.rtp, l.rtcp} {
		if p := peerOf(t, k.fd); p.IsValid() {
			t.Errorf("reused socket port %d still connected to %s", k.port, p)
		}
		if e.park != nil && e.park.Parked(k.port) {
			t.Errorf("reused socket port %d still parked", k.port)
		}
	}
}

// idled opens a session with both legs on prof and ends it: its leg A's
// pair, RTP port and sockets, is idle and parked as the mode says.
func idled(t *testing.T, e *Engine, prof LegProfile, byConnect bool) (int, [2]int) {
	t.Helper()
	old := newSession(t, e, prof, prof)
	l := old.legs[SideA]
	port, fds := l.rtp.port, [2]int{l.rtp.fd, l.rtcp.fd}
	old.Close()
	time.Sleep(20 * time.Millisecond) // anything the ended call left drained
	wantParked(t, e, prof.Local, port, fds, byConnect)
	return port, fds
}

// reusedLeg is the leg of s that took the idle pair whose RTP socket is
// fd.
func reusedLeg(t *testing.T, s *Session, fd int) *leg {
	t.Helper()
	for _, l := range s.legs {
		if l.rtp.fd == fd {
			return l
		}
	}
	t.Fatal("the flooded pair was not reused")
	return nil
}

func idleReads(e *Engine) uint64 {
	var n uint64
	for _, w := range e.workers {
		n += w.idleReads.Load()
	}
	return n
}

func filterDrops(t *testing.T, e *Engine) uint64 {
	t.Helper()
	if e.park == nil {
		return 0
	}
	n, err := e.park.Drops()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// flood sends n datagrams from 127.0.0.1 to each of to.
func flood(t *testing.T, n int, to ...netip.AddrPort) {
	t.Helper()
	network, ip := "udp4", net.IPv4(127, 0, 0, 1)
	if to[0].Addr().Is6() {
		network, ip = "udp6", net.IPv6loopback
	}
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: ip}) // unconnected: an ICMP error fails no write
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pkt := rtpPacket(0, 1, 0, 1)
	for range n {
		for _, a := range to {
			if _, err := c.WriteToUDPAddrPort(pkt, a); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestIdlePairParkedFlood: a flood from 127.0.0.1 at both ports of an
// idle pair is dropped before any socket queue, by the filter (its counter
// takes every datagram; the socket was not connected) or, in the
// fallback, for want of a socket (NoPorts); either way no worker wakes or
// reads (idleReads stays put), no memory is held, UnallocatedDrops counts
// the flood, and the reused pair receives from a new peer.
func TestIdlePairParkedFlood(t *testing.T) {
	for _, way := range parkWays {
		byConnect := way.byConnect
		t.Run(way.name, func(t *testing.T) {
			e := parkEngine(t, 2, byConnect, func(c *Config) { c.IdleQuarantine = 50 * time.Millisecond })
			port, fds := idled(t, e, filterLocal, byConnect)
			before, reads, drops0 := e.Stats(), idleReads(e), filterDrops(t, e)
			noPorts0, _ := udpNoPorts()
			const n = 3000
			flood(t, n, netip.AddrPortFrom(filterLocal.Local, uint16(port)), netip.AddrPortFrom(filterLocal.Local, uint16(port+1)))
			time.Sleep(50 * time.Millisecond)
			after := e.Stats()
			if after.Wakeups != before.Wakeups || after.Datagrams != before.Datagrams || idleReads(e) != reads {
				t.Errorf("the flood woke the workers: %d → %d wake-ups, %d → %d reads, %d → %d idle reads",
					before.Wakeups, after.Wakeups, before.Datagrams, after.Datagrams, reads, idleReads(e))
			}
			for _, fd := range fds {
				if q := rmemAlloc(t, fd); q != 0 {
					t.Errorf("an idle socket holds %d bytes of the flood, want none", q)
				}
			}
			if got := after.UnallocatedDrops - before.UnallocatedDrops; got < 2*n {
				t.Errorf("UnallocatedDrops grew by %d, want ≥ %d", got, 2*n)
			}
			noPorts, _ := udpNoPorts()
			if byConnect {
				if noPorts-noPorts0 < 2*n {
					t.Errorf("the kernel's NoPorts grew by %d, want ≥ %d (no socket took the flood)", noPorts-noPorts0, 2*n)
				}
			} else if got := filterDrops(t, e) - drops0; got != 2*n {
				t.Errorf("the filter dropped %d datagrams, want %d", got, 2*n)
			}
			time.Sleep(50 * time.Millisecond) // out of quarantine
			a, b := newPeer(t), newPeer(t)
			s, toA, toB, _, _ := call(t, e, filterLocal, filterLocal, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
			wantAwake(t, e, reusedLeg(t, s, fds[0]))
			a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
			recv(t, b.rtp, 2*time.Second)
			b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
			recv(t, a.rtp, 2*time.Second)
			if st := s.Stats(); st.Legs[SideA].PacketsIn != 1 || st.Legs[SideB].PacketsIn != 1 {
				t.Errorf("the reused pairs took %d and %d packets in, want 1 and 1 (the new peers')", st.Legs[SideA].PacketsIn, st.Legs[SideB].PacketsIn)
			}
		})
	}
}

// TestIdlePairEarlyReuseDrains: a pair taken inside its quarantine, its
// worker busy and so not having drained it, is drained on the way out:
// what was queued before it was parked is read, counted, and never
// reaches the new call, which then receives from its own peer.
func TestIdlePairEarlyReuseDrains(t *testing.T) {
	for _, way := range parkWays {
		byConnect := way.byConnect
		t.Run(way.name, func(t *testing.T) {
			e := parkEngine(t, 4, byConnect, func(c *Config) { c.Workers = 1; c.IdleQuarantine = time.Hour })
			busy := newSession(t, e, filterLocal, filterLocal)
			oldA, oldB := newPeer(t), newPeer(t)
			old, toA, _, _, _ := call(t, e, filterLocal, filterLocal, oldA.sdp("RTP/AVP", "0"), func([]byte) []byte { return oldB.sdp("RTP/AVP", "0") })
			// The one worker blocks serving busy, whose lock the test holds.
			busy.mu.Lock()
			locked := true
			defer func() {
				if locked {
					busy.mu.Unlock()
				}
			}()
			flood(t, 1, netip.AddrPortFrom(filterLocal.Local, uint16(busy.legs[SideA].rtp.port)))
			time.Sleep(20 * time.Millisecond)
			const queued = 5
			for i := range queued {
				oldA.rtp.WriteToUDPAddrPort(rtpPacket(0, uint16(i), 0, 0xA), toA)
			}
			time.Sleep(10 * time.Millisecond)
			oldFD := old.legs[SideA].rtp.fd
			if q := rmemAlloc(t, oldFD); q == 0 {
				t.Fatal("nothing queued on the old call's socket: the test did not test")
			}
			old.Close()
			arrived, reads := e.idle.arrived.Load(), idleReads(e)
			a, b := newPeer(t), newPeer(t)
			s, newToA, _, _, _ := call(t, e, filterLocal, filterLocal, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
			if st := e.Stats(); st.PairsReusedEarly != 2 || (s.legs[SideA].rtp.fd != oldFD && s.legs[SideB].rtp.fd != oldFD) {
				t.Fatalf("%d pairs reused early, the old call's pair reused: %v; want 2, true", st.PairsReusedEarly,
					s.legs[SideA].rtp.fd == oldFD || s.legs[SideB].rtp.fd == oldFD)
			}
			if got := e.idle.arrived.Load() - arrived; got != queued || idleReads(e) != reads {
				t.Errorf("the early reuse drained %d datagrams (the blocked worker %d), want %d (0)", got, idleReads(e)-reads, queued)
			}
			for _, l := range s.legs {
				wantAwake(t, e, l)
			}
			busy.mu.Unlock()
			locked = false
			time.Sleep(30 * time.Millisecond)
			if st := s.Stats(); st.Legs[SideA].PacketsIn != 0 || st.Legs[SideB].PacketsIn != 0 {
				t.Fatalf("the old call's queued packets reached the new one: %d and %d in", st.Legs[SideA].PacketsIn, st.Legs[SideB].PacketsIn)
			}
			a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0x1A), newToA)
			recv(t, b.rtp, 2*time.Second)
			if lg := s.Stats().Legs[SideA]; lg.PacketsIn != 1 || lg.Remote != a.addr() {
				t.Errorf("new leg A: %d in, latched %s; want 1, %s", lg.PacketsIn, lg.Remote, a.addr())
			}
		})
	}
}

// TestIdleFilterRangeEnd: a range ending at 65535 parks and unparks its
// last pair (the array's last index): a flood at 65534 and 65535 is the
// filter's, and the reused pair receives again.
func TestIdleFilterRangeEnd(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.PortMin, c.PortMax, c.IdleQuarantine = 65532, 65535, time.Millisecond })
	if !e.Stats().IdleFilter {
		t.Fatal("the idle filter did not load")
	}
	s, err := e.NewSession("end", filterLocal, filterLocal, nil)
	if err != nil {
		t.Fatalf("NewSession on 65532-65535 (another program may hold one of them): %v", err)
	}
	var last *leg
	for _, l := range s.legs {
		if l.rtp.port == 65534 {
			last = l
		}
	}
	fds := [2]int{last.rtp.fd, last.rtcp.fd}
	s.Close()
	wantParked(t, e, filterLocal.Local, 65534, fds, false)
	drops0 := filterDrops(t, e)
	const n = 2000
	flood(t, n, netip.AddrPortFrom(filterLocal.Local, 65534), netip.AddrPortFrom(filterLocal.Local, 65535))
	if got := filterDrops(t, e) - drops0; got != 2*n {
		t.Errorf("the filter dropped %d datagrams at 65534-65535, want %d", got, 2*n)
	}
	time.Sleep(5 * time.Millisecond)
	a, b := newPeer(t), newPeer(t)
	s2, toA, toB, _, _ := call(t, e, filterLocal, filterLocal, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	for _, l := range s2.legs {
		wantAwake(t, e, l)
	}
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)
}

// TestIdlePairParkedIPv6: an idle pair on ::1 is parked as one on IPv4:
// a flood is dropped (by the filter, counted; or for want of a socket),
// no worker reads it, and the reused pair receives from a new peer.
func TestIdlePairParkedIPv6(t *testing.T) {
	v6 := LegProfile{Local: netip.IPv6Loopback(), Security: SecurityRTP}
	for _, way := range parkWays {
		byConnect := way.byConnect
		t.Run(way.name, func(t *testing.T) {
			e := parkEngine(t, 2, byConnect, func(c *Config) { c.IdleQuarantine = 30 * time.Millisecond })
			port, fds := idled(t, e, v6, byConnect)
			before, reads, drops0 := e.Stats(), idleReads(e), filterDrops(t, e)
			const n = 2000
			to := netip.AddrPortFrom(v6.Local, uint16(port))
			flood(t, n, to, netip.AddrPortFrom(v6.Local, uint16(port+1)))
			time.Sleep(30 * time.Millisecond)
			after := e.Stats()
			if after.Datagrams != before.Datagrams || idleReads(e) != reads {
				t.Errorf("the flood was read: %d → %d reads, %d → %d idle reads", before.Datagrams, after.Datagrams, reads, idleReads(e))
			}
			if got := after.UnallocatedDrops - before.UnallocatedDrops; got < 2*n {
				t.Errorf("UnallocatedDrops grew by %d, want ≥ %d", got, 2*n)
			}
			if got := filterDrops(t, e) - drops0; !byConnect && got != 2*n {
				t.Errorf("the filter dropped %d datagrams, want %d", got, 2*n)
			}
			s := newSession(t, e, v6, v6)
			wantAwake(t, e, reusedLeg(t, s, fds[0]))
			// Anyone's datagram reaches the reused socket again: the worker
			// reads it (a stray before any offer).
			reads0 := e.Stats().Datagrams
			flood(t, 1, to)
			deadline := time.Now().Add(2 * time.Second)
			for e.Stats().Datagrams == reads0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if e.Stats().Datagrams == reads0 {
				t.Error("a datagram to the reused pair on ::1 was not read")
			}
		})
	}
}

// TestIdleFilterRefusedBySocket: a socket that does not take the filter
// (here: its program closed under the engine) leaves its pair parked by
// connect(2), said in one line however many pairs; such a pair behaves as
// one in the fallback, and the pairs opened before keep the filter.
func TestIdleFilterRefusedBySocket(t *testing.T) {
	var logs testutil.LockedBuffer
	base := 10000 + 2*rand.IntN(3000)
	e, err := New(Config{PortMin: base, PortMax: base + 15, Workers: 1, LatchWindow: time.Second, IdleQuarantine: time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	before := newSession(t, e, filterLocal, filterLocal)
	if !before.legs[SideA].rtp.filtered {
		t.Fatal("a pair opened with the filter loaded does not carry it")
	}
	e.park.Program().Close()
	for range 2 {
		s := newSession(t, e, filterLocal, filterLocal)
		if s.legs[SideA].rtp.filtered || s.legs[SideB].rtcp.filtered {
			t.Fatal("a socket opened after the program closed carries the filter")
		}
		s.Close()
		time.Sleep(2 * time.Millisecond) // out of quarantine: reused next
	}
	if n := strings.Count(logs.String(), "refused the idle filter"); n != 1 {
		t.Errorf("%d lines saying a socket refused the filter, want 1:\n%s", n, logs.String())
	}
	before.Close()
	e.idle.mu.Lock()
	defer e.idle.mu.Unlock()
	var byConnect, byFilter int
	for _, q := range e.idle.queues {
		for _, ip := range q {
			if ip.park == nil {
				byConnect++
				if p := peerOf(t, ip.fd[0]); p != netip.AddrPortFrom(ip.local, uint16(ip.port)) {
					t.Errorf("pair %d without the filter is connected to %v, want itself", ip.port, p)
				}
			} else {
				byFilter++
			}
		}
	}
	if byConnect != 2 || byFilter != 2 {
		t.Errorf("%d idle pairs parked by connect, %d by the filter; want 2 (opened after it was refused), 2", byConnect, byFilter)
	}
}

// BenchmarkIdlePark is one park and wake (reuse) of a pair: two stores
// each way with the filter, a connect to itself and a disconnect per
// socket without it.
//
//	go test -run XXX -bench IdlePark ./core/internal/media
func BenchmarkIdlePark(b *testing.B) {
	for _, m := range parkWays {
		b.Run(m.name, func(b *testing.B) {
			e := newTestEngine(b, 2, func(c *Config) { c.parkByConnect = m.byConnect })
			l := &leg{prof: filterLocal}
			if err := e.openLeg(l, e.workers[0]); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { unix.Close(l.rtp.fd); unix.Close(l.rtcp.fd) })
			ip := &idlePair{local: filterLocal.Local, port: l.rtp.port, fd: [2]int{l.rtp.fd, l.rtcp.fd}}
			if !m.byConnect {
				if !l.rtp.filtered {
					b.Fatal("the filter did not load")
				}
				ip.park = e.park
			}
			b.ReportAllocs()
			for b.Loop() {
				if !ip.idle() {
					b.Fatal("park failed")
				}
				if err := ip.wake(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestIdleFilterClosedPairUnparked: an idle pair closed for a leg on
// another local address leaves its ports unparked: the sockets bound to
// them anew receive.
func TestIdleFilterClosedPairUnparked(t *testing.T) {
	e := parkEngine(t, 2, false, func(c *Config) { c.IdleQuarantine = time.Hour })
	old := newSession(t, e, filterLocal, filterLocal)
	p := ports(old)
	old.Close()
	other := LegProfile{Local: netip.MustParseAddr("127.0.0.63"), Security: SecurityRTP}
	a, b := newPeer(t), newPeer(t)
	s, toA, toB, _, _ := call(t, e, other, other, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if got := ports(s); got != p && got != [2]int{p[1], p[0]} {
		t.Fatalf("the leg on %s got ports %v, want the idle pairs' %v", other.Local, got, p)
	}
	a.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), toA)
	recv(t, b.rtp, 2*time.Second)
	b.rtp.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xB), toB)
	recv(t, a.rtp, 2*time.Second)
}

// TestIdleFilterNotWithoutPool: an engine that keeps no idle pairs loads
// no filter and puts none on its sockets.
func TestIdleFilterNotWithoutPool(t *testing.T) {
	e := newTestEngine(t, 2, func(c *Config) { c.IdlePairs = -1 })
	s := newSession(t, e, filterLocal, filterLocal)
	if e.Stats().IdleFilter || e.park != nil || s.legs[SideA].rtp.filtered {
		t.Errorf("without idle pairs: IdleFilter %v, filter %v, socket filtered %v; want none", e.Stats().IdleFilter, e.park != nil, s.legs[SideA].rtp.filtered)
	}
}
