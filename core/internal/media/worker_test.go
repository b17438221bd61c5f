package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countSink counts what a leg delivers.
type countSink struct{ rtp, rtcp int }

func (c *countSink) RTP([]byte)  { c.rtp++ }
func (c *countSink) RTCP([]byte) { c.rtcp++ }

// newBareWorker is a worker whose loop does not run: the test drives its
// rounds.
func newBareWorker(t *testing.T) *worker {
	t.Helper()
	w, err := newWorker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.closeFDs)
	return w
}

// addSocks opens n sockets on addr in w, each the RTP socket of its own leg
// (and session) that hands what it takes to sink.
func addSocks(t *testing.T, w *worker, addr netip.Addr, n int, sink Sink) []*sock {
	t.Helper()
	socks := make([]*sock, n)
	for i := range socks {
		sess := &Session{id: "round", e: &Engine{}, w: w, started: time.Now()}
		fd, err := openUDP(addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		port := 0
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			port = sa.Port
		case *unix.SockaddrInet6:
			port = sa.Port
		}
		l := &leg{sess: sess, sink: sink}
		sess.legs = [2]*leg{l, {sess: sess, side: SideB, sink: sink}}
		s := &sock{fd: fd, port: port, leg: l}
		l.rtp = s
		if err := w.add(s); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.remove(s); _ = unix.Close(fd) })
		socks[i] = s
	}
	return socks
}

// waitReadable returns once every socket of socks has a datagram queued.
func waitReadable(t *testing.T, socks []*sock) {
	t.Helper()
	fds := make([]unix.PollFd, len(socks))
	for i, s := range socks {
		fds[i] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, fd := range fds {
		for {
			one := []unix.PollFd{fd}
			n, err := unix.Poll(one, 10)
			if err == nil && n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("fd %d: no datagram queued after 2s", fd.Fd)
			}
		}
	}
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, pkt []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
		t.Fatal(err)
	}
}

// A round serves every ready socket, also when more are ready than one
// epoll_wait returns: the ones past the first wait's events must not be
// left to the round after the rest (at 700 calls that cap was the knee).
func TestRoundServesMoreSocketsThanOneWait(t *testing.T) {
	w := newBareWorker(t)
	var sink countSink
	n := 2*len(w.ev) + 7
	socks := addSocks(t, w, loopback, n, &sink)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, s := range socks {
		send(t, c, netip.AddrPortFrom(loopback, uint16(s.port)), rtpPacket(0, 1, 0, uint32(i)))
	}
	waitReadable(t, socks)
	served, _, closing := w.round()
	if closing {
		t.Fatal("round: closing, want serving")
	}
	if served != n || sink.rtp != n {
		t.Errorf("one round with %d sockets ready served %d datagrams, sink got %d; want %d", n, served, sink.rtp, n)
	}
	// The round's clock moves on with its polls: the sessions served by
	// the last poll saw a later time than those of the first wait.
	first, last := socks[0].leg.sess.lastPacket, socks[0].leg.sess.lastPacket
	for _, s := range socks {
		first, last = min(first, s.leg.sess.lastPacket), max(last, s.leg.sess.lastPacket)
	}
	if last <= first {
		t.Errorf("every session of a %d-socket round has lastPacket %d: the round's clock stood still", n, first)
	}
}

// recvmmsg writes back the source address length of each entry it used:
// an entry that held an IPv4 source (16 bytes) must have room for an IPv6
// one (28) again at the next read, or the source is cut and the leg
// latches to a wrong address.
func TestServeSourceAddressesAcrossFamilies(t *testing.T) {
	w := newBareWorker(t)
	var sink countSink
	v6 := netip.MustParseAddr("::1")
	s4 := addSocks(t, w, loopback, 1, &sink)[0]
	s6 := addSocks(t, w, v6, 1, &sink)[0]
	c4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer c6.Close()
	from4 := c4.LocalAddr().(*net.UDPAddr).AddrPort()
	from6 := c6.LocalAddr().(*net.UDPAddr).AddrPort()
	burst := func(c *net.UDPConn, s *sock, to netip.Addr, k int, seq uint16) {
		for i := range k {
			send(t, c, netip.AddrPortFrom(to, uint16(s.port)), rtpPacket(0, seq+uint16(i), 0, 7))
		}
		waitReadable(t, []*sock{s})
		time.Sleep(5 * time.Millisecond) // the whole burst queued, not only its first datagram
	}
	steps := []struct {
		name string
		c    *net.UDPConn
		s    *sock
		to   netip.Addr
		k    int
		want netip.AddrPort
	}{
		{"IPv4 burst fills entries 0-4", c4, s4, loopback, 5, from4},
		{"IPv6 burst reuses them", c6, s6, v6, 5, from6},
		{"IPv4 single", c4, s4, loopback, 1, from4},
		{"IPv6 burst again", c6, s6, v6, 4, from6},
	}
	seq := uint16(1)
	for _, st := range steps {
		burst(st.c, st.s, st.to, st.k, seq)
		seq += uint16(st.k)
		before := sink.rtp
		if got := w.serve(st.s, time.Now().UnixNano()); got != st.k {
			t.Fatalf("%s: served %d datagrams, want %d", st.name, got, st.k)
		}
		if sink.rtp-before != st.k {
			t.Errorf("%s: sink got %d, want %d", st.name, sink.rtp-before, st.k)
		}
		if got := st.s.leg.latchRTP; got != st.want {
			t.Errorf("%s: leg latched to %s, want %s", st.name, got, st.want)
		}
	}
}

// A socket with a deep queue (a flood at one port) gets one batch per
// wait, so that a quiet socket ready at the same time is served in the same
// round and not after the flood.
func TestRoundIsFairToQuietSockets(t *testing.T) {
	w := newBareWorker(t)
	var flooded, quiet countSink
	a := addSocks(t, w, loopback, 1, &flooded)[0]
	b := addSocks(t, w, loopback, 1, &quiet)[0]
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 3*batch + 5
	for i := range n {
		send(t, c, netip.AddrPortFrom(loopback, uint16(a.port)), rtpPacket(0, uint16(i+1), 0, 9))
	}
	send(t, c, netip.AddrPortFrom(loopback, uint16(b.port)), rtpPacket(0, 1, 0, 10))
	waitReadable(t, []*sock{a, b})
	w.round()
	if quiet.rtp != 1 {
		t.Errorf("quiet socket: %d datagrams served in the round, want 1", quiet.rtp)
	}
	if flooded.rtp > batch {
		t.Errorf("flooded socket: %d datagrams served in one round, want at most one batch (%d)", flooded.rtp, batch)
	}
	for range n {
		if flooded.rtp >= n {
			break
		}
		w.round()
	}
	if flooded.rtp != n {
		t.Errorf("flooded socket: %d of %d datagrams served in later rounds", flooded.rtp, n)
	}
}

func TestRestFor(t *testing.T) {
	tests := []struct {
		name     string
		giveN    int
		giveTook time.Duration
		want     time.Duration
	}{
		{"idle wake-up rests the whole coalesce", 0, 0, coalesce},
		{"small round rests what is left of coalesce", 10, 300 * time.Microsecond, coalesce - 300*time.Microsecond},
		{"one short of full still rests", fullRound - 1, 100 * time.Microsecond, coalesce - 100*time.Microsecond},
		{"full round goes straight on", fullRound, 100 * time.Microsecond, 0},
		{"busy round goes straight on", 5 * fullRound, 2 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := restFor(tt.giveN, tt.giveTook); got != tt.want {
				t.Errorf("restFor(%d, %s) = %s, want %s", tt.giveN, tt.giveTook, got, tt.want)
			}
		})
	}
	if got := restFor(3, 2*coalesce); got > 0 {
		t.Errorf("a small round longer than coalesce: rest %s, want none", got)
	}
}
