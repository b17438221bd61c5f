package media

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// TestSendPathXDPNeighbourMACChange: the callee's address moves to a box
// with another MAC (a gateway pair failing over; the new box announces
// itself with a gratuitous ARP, which the engine's kernel takes at once).
// The socket path sends to the new MAC from the next datagram; the XDP
// path must not keep sending to the old one (media to a box that is gone)
// for longer than a socket's send would. Over IPv6 the announcement is an
// unsolicited neighbour advertisement with the override flag (RFC 4861
// section 7.2.6), which the callee's kernel sends itself on the MAC
// change (ndisc_notify).
func TestSendPathXDPNeighbourMACChange(t *testing.T) {
	for _, sp := range []string{SendPathSocket, SendPathXDP} {
		t.Run(sp, func(t *testing.T) { testNeighbourMACChange(t, sp, false) })
		t.Run(sp+"/ipv6", func(t *testing.T) { testNeighbourMACChange(t, sp, true) })
	}
}

func testNeighbourMACChange(t *testing.T, sp string, v6 bool) {
	l := newOffloadLabFamily(t, fastpath.Off, v6, func(c *Config) { c.SendPath = sp })
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1)
	seq := uint16(10)
	if sp == SendPathXDP {
		seq = untilXDP(t, l.e, 10, func(seq uint16) error { return relayPair(l.caller, l.callee, toA, toB, 1, seq) })
	} else {
		l.relayBoth(t, toA, toB, 3, seq)
		seq += 3
	}
	st0 := l.e.SendPath()

	// Failover: the standby takes the callee's address with its own MAC
	// and sends a gratuitous ARP (arp_notify on a MAC change), over IPv6
	// an unsolicited neighbour advertisement (ndisc_notify).
	const standby = "02:00:00:00:be:ef"
	if v6 {
		l.calleeNS.sysctl(t, "net.ipv6.conf.p0.ndisc_notify", "1")
	}
	l.calleeNS.run(t, "link", "set", "p0", "address", standby)
	switch {
	case v6:
		if out := l.engineNS.output(t, "-6", "neigh", "show", l.calleeAddr.String(), "dev", "eb"); !strings.Contains(out, standby) {
			// The advertisement did not come (or was not taken): the
			// kernel's processing of it (an existing entry overridden,
			// STALE with the new address).
			t.Logf("no unsolicited neighbour advertisement taken (%q): setting the entry as one would", strings.TrimSpace(out))
			l.engineNS.run(t, "neigh", "replace", l.calleeAddr.String(), "lladdr", standby, "dev", "eb", "nud", "stale")
		}
	default:
		if out, err := exec.Command("ip", "netns", "exec", string(l.calleeNS), "arping", "-c1", "-U", "-I", "p0", l.calleeAddr.String()).CombinedOutput(); err != nil {
			// No arping here: the kernel's own processing of the GARP (an
			// existing entry overridden, STALE with the new address).
			t.Logf("no arping (%v: %s): setting the entry as a GARP would", err, strings.TrimSpace(string(out)))
			l.engineNS.run(t, "neigh", "replace", l.calleeAddr.String(), "lladdr", standby, "dev", "eb", "nud", "stale")
		}
	}
	changed := time.Now()

	// Caller to callee: how long until the media reaches the new box?
	var first time.Duration
	sent, got := 0, 0
	for ; time.Since(changed) < 2*hopTTL; seq++ {
		pkt := rtpPacket(0, seq, uint32(seq)*160, 0xA)
		if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		sent++
		if b, _, err := tryRecv(l.callee, 20*time.Millisecond); err == nil && bytes.Equal(b, pkt) {
			got++
			if first == 0 {
				first = time.Since(changed)
			}
			if got >= 5 {
				break
			}
		}
	}
	st := l.e.SendPath()
	t.Logf("first datagram at the new MAC after %v; %d sent, %d arrived; %+v (before %+v)", first, sent, got, st, st0)
	if first == 0 || first > 200*time.Millisecond {
		t.Errorf("after the neighbour's MAC changed, media went to the old MAC for %v (%d datagrams lost, none counted: Lost %d); the socket path sends to the new one at once",
			first, sent-got, st.Lost-st0.Lost)
	}
}
