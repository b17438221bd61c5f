package media

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestSendPathXDPRouteMTU: a route whose MTU is below the device's (a
// locked route metric, a tunnel, a PMTU learnt) bounds what the XSK takes:
// a datagram past it goes through the socket, which fragments it, instead
// of a frame the next hop drops as too big.
func TestSendPathXDPRouteMTU(t *testing.T) {
	l := newXDPLab(t, false)
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1)
	seq := untilXDP(t, l.e, 10, func(seq uint16) error { return relayPair(l.caller, l.callee, toA, toB, 1, seq) })

	l.engineNS.run(t, "route", "replace", l.calleeAddr.String()+"/32", "dev", "eb", "mtu", "lock", "500")
	// The route's change sends the hop to the socket until the resolver
	// has looked it up again: small datagrams until one goes through the
	// XSK with the new route.
	seq = untilXDPTo(t, l, toA, seq)

	st := l.e.SendPath()
	for i := range 5 {
		pkt := append(rtpPacket(0, seq, uint32(seq)*160, 0xA), bytes.Repeat([]byte{byte(i)}, 500)...) // 700 bytes: 728 in IPv4
		seq++
		if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		got, _, err := tryRecv(l.callee, 2*time.Second)
		if err != nil || !bytes.Equal(got, pkt) {
			t.Fatalf("a 700-byte datagram over a route of MTU 500: got %d bytes, %v", len(got), err)
		}
	}
	if d := l.e.SendPath(); d.Sent != st.Sent || d.NoHop-st.NoHop != 5 {
		t.Errorf("datagrams past the route's MTU of 500: %d went through the XSK (want 0), %d through the socket (want 5)", d.Sent-st.Sent, d.NoHop-st.NoHop)
	}
	// Below the route's MTU the XSK still takes them.
	untilXDPTo(t, l, toA, seq)
}

// TestSendPathXDPLinkDown: the egress link loses its carrier (a cable out,
// here the veth's peer down) while the callee's neighbour entry stays (a
// static ARP entry, which a carrier loss does not flush): the XSK must not
// take the media (the device drops it, yet it would count as sent) until
// the carrier is back.
func TestSendPathXDPLinkDown(t *testing.T) {
	l := newXDPLab(t, false)
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

	l.calleeNS.run(t, "link", "set", "p0", "down")
	st := l.e.SendPath()
	// The link's change, the resolver's look-up and its answer take a few
	// datagrams; then, for half a second, none may go through the XSK.
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
