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
// for longer than a socket's send would.
func TestSendPathXDPNeighbourMACChange(t *testing.T) {
	for _, sp := range []string{SendPathSocket, SendPathXDP} {
		t.Run(sp, func(t *testing.T) { testNeighbourMACChange(t, sp) })
	}
}

func testNeighbourMACChange(t *testing.T, sp string) {
	l := newOffloadLabFamily(t, fastpath.Off, false, func(c *Config) { c.SendPath = sp })
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
	// and sends a gratuitous ARP (arp_notify on a MAC change).
	const standby = "02:00:00:00:be:ef"
	l.calleeNS.run(t, "link", "set", "p0", "address", standby)
	if out, err := exec.Command("ip", "netns", "exec", string(l.calleeNS), "arping", "-c1", "-U", "-I", "p0", l.calleeAddr.String()).CombinedOutput(); err != nil {
		// No arping here: the kernel's own processing of the GARP (an
		// existing entry overridden, STALE with the new address).
		t.Logf("no arping (%v: %s): setting the entry as a GARP would", err, strings.TrimSpace(string(out)))
		l.engineNS.run(t, "neigh", "replace", l.calleeAddr.String(), "lladdr", standby, "dev", "eb", "nud", "stale")
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
