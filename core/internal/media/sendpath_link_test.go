package media

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestSendPathXDPRouteMTU: a route whose MTU is below the device's (a
// locked route metric, a tunnel, a PMTU learnt) bounds what the XSK takes:
// a datagram past it goes through the socket, which fragments it, instead
// of a frame the next hop drops as too big. Over IPv6 the route's MTU is
// 1280 (IPv6's minimum) and the datagrams past it 1,400 bytes: 1,448 with
// the IPv6 and UDP headers, within the device's 1,500.
func TestSendPathXDPRouteMTU(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v6        bool
		mtu, size int
	}{{"ipv4", false, 500, 700}, {"ipv6", true, 1280, 1400}} {
		t.Run(tc.name, func(t *testing.T) { testRouteMTU(t, tc.v6, tc.mtu, tc.size) })
	}
}

func testRouteMTU(t *testing.T, v6 bool, mtu, size int) {
	l := newXDPLab(t, v6)
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1)
	seq := untilXDP(t, l.e, 10, func(seq uint16) error { return relayPair(l.caller, l.callee, toA, toB, 1, seq) })

	host := "/32"
	if v6 {
		host = "/128"
	}
	g0 := l.e.xdp.gen.Load()
	l.engineNS.run(t, "route", "replace", l.calleeAddr.String()+host, "dev", "eb", "mtu", "lock", strconv.Itoa(mtu))
	// The route's change sends the hop to the socket until the resolver
	// has looked it up again: once the resolver took the change in, small
	// datagrams until one goes through the XSK with the new route.
	waitGen(t, l.e, g0, "the route's change")
	seq = untilXDPTo(t, l, toA, seq)

	st := l.e.SendPath()
	for i := range 5 {
		pkt := rtpPacket(0, seq, uint32(seq)*160, 0xA)
		pkt = append(pkt, bytes.Repeat([]byte{byte(i)}, size-len(pkt))...)
		seq++
		if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		got, _, err := tryRecv(l.callee, 2*time.Second)
		if err != nil || !bytes.Equal(got, pkt) {
			t.Fatalf("a %d-byte datagram over a route of MTU %d: got %d bytes, %v", size, mtu, len(got), err)
		}
	}
	if d := l.e.SendPath(); d.Sent != st.Sent || d.NoHop-st.NoHop != 5 {
		t.Errorf("datagrams past the route's MTU of %d: %d went through the XSK (want 0), %d through the socket (want 5)", mtu, d.Sent-st.Sent, d.NoHop-st.NoHop)
	}
	// Below the route's MTU the XSK still takes them.
	untilXDPTo(t, l, toA, seq)
}

// TestSendPathXDPLinkDown: the egress link loses its carrier (a cable out,
// here the veth's peer down) while the callee's neighbour entry stays (a
// static ARP entry, which a carrier loss does not flush): the XSK must not
// take the media (the device drops it, yet it would count as sent) until
// the carrier is back. Over IPv6 the callee keeps its address while its
// link is down (keep_addr_on_down), as a box whose cable is out does.
func TestSendPathXDPLinkDown(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { testLinkDown(t, false) })
	t.Run("ipv6", func(t *testing.T) { testLinkDown(t, true) })
}

func testLinkDown(t *testing.T, v6 bool) {
	l := newXDPLab(t, v6)
	if v6 {
		l.calleeNS.sysctl(t, "net.ipv6.conf.p0.keep_addr_on_down", "1")
	}
	var mac net.HardwareAddr
	l.calleeNS.do(t, func() {
		ifc, err := net.InterfaceByName("p0")
		if err != nil {
			t.Fatal(err)
		}
		mac = ifc.HardwareAddr
	})
	l.engineNS.run(t, "neigh", "replace", l.calleeAddr.String(), "lladdr", mac.String(), "dev", "eb", "nud", "permanent")
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1)
	seq := untilXDP(t, l.e, 10, func(seq uint16) error { return relayPair(l.caller, l.callee, toA, toB, 1, seq) })

	g0 := l.e.xdp.gen.Load()
	l.calleeNS.run(t, "link", "set", "p0", "down")
	// The carrier's loss reaches netlink after ip returns (the kernel's
	// linkwatch work): a datagram sent before the resolver took it in may
	// still go through the XSK, as a socket's would into the queue of a
	// device about to lose its carrier. Once it has, none may, for half a
	// second.
	waitGen(t, l.e, g0, "the carrier's loss")
	st := l.e.SendPath()
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); seq++ {
		if _, err := l.caller.WriteToUDPAddrPort(rtpPacket(0, seq, uint32(seq)*160, 0xA), toA); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := l.e.SendPath(); d.Sent != st.Sent {
		t.Errorf("with the egress link's carrier down, %d datagrams went through the XSK, counted as sent (NoHop %d)", d.Sent-st.Sent, d.NoHop-st.NoHop)
	}

	l.calleeNS.run(t, "link", "set", "p0", "up")
	untilXDPTo(t, l, toA, seq)
}

// waitGen waits until the XDP path's resolver took a change in after g0
// (what).
func waitGen(t *testing.T, e *Engine, g0 uint64, what string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); e.xdp.gen.Load() == g0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the resolver did not take %s in", what)
		}
	}
}

// untilXDPTo sends the caller's datagrams to toA until one goes through an
// XSK and arrives (those sent while a link comes up may be lost); it
// returns the next seq.
func untilXDPTo(t *testing.T, l *offloadLab, toA netip.AddrPort, seq uint16) uint16 {
	t.Helper()
	deadline := time.Now().Add(4 * hopRetry)
	for ; ; seq++ {
		st := l.e.SendPath()
		pkt := rtpPacket(0, seq, uint32(seq)*160, 0xA)
		if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		got, _, err := tryRecv(l.callee, 200*time.Millisecond)
		if err == nil && !bytes.Equal(got, pkt) {
			t.Fatalf("datagram %d: got %d other bytes", seq, len(got))
		}
		if err == nil && l.e.SendPath().Sent > st.Sent {
			return seq + 1
		}
		if time.Now().After(deadline) {
			t.Fatalf("no datagram through the XSK in %v: %+v", 4*hopRetry, l.e.SendPath())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
