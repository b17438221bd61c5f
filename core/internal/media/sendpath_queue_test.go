package media

import (
	"bytes"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/media/fastpath"
	"github.com/umedge/umedge/core/internal/media/xdptx"
)

// TestSendPathXDPQueuePastRealTX: on an interface with more RX queues in
// use than TX (ethtool -L rx 2 on the caller's veth, TX 1) an XSK binds to
// queue 1 but the kernel sends nothing from it. The queues come from the
// driver's TX channels, not netlink's allocated count, so both workers'
// calls reach the caller, none of it black-holed.
func TestSendPathXDPQueuePastRealTX(t *testing.T) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("no ethtool")
	}
	l := newOffloadLabFamily(t, fastpath.Off, false, func(c *Config) { c.SendPath, c.Workers = SendPathXDP, 2 })
	l.engineNS.do(t, func() {
		if out, err := exec.Command("ethtool", "-L", "ea", "rx", "2").CombinedOutput(); err != nil {
			t.Skipf("ethtool -L ea rx 2: %v %s", err, out)
		}
	})
	var calls []rtpCall
	for i := range 2 {
		c := l.rtpCall(t, fmt.Sprintf("xdpq-%d", i))
		calls = append(calls, c)
		a, b, toA, toB := c.a, c.b, c.toA, c.toB
		if err := relayPair(a, b, toA, toB, 3, 1); err != nil {
			l.e.xdp.mu.Lock()
			var slots []string
			for k, sl := range l.e.xdp.xsks {
				if sl.q != nil && sl.q.x != nil {
					slots = append(slots, fmt.Sprintf("ifindex %d queue %d: %d unsent", k[0], k[1], sl.q.x.Unsent()))
				}
			}
			l.e.xdp.mu.Unlock()
			t.Fatalf("call %d: %v; %+v; XSKs %v", i, err, l.e.SendPath(), slots)
		}
	}
	time.Sleep(hopRetry + 300*time.Millisecond)
	for i, c := range calls {
		// Callee to caller: out through ea, the veth with 2 RX queues.
		if err := relayPair(c.a, c.b, c.toA, c.toB, 5, 100); err != nil {
			t.Errorf("call %d: %v (%+v)", i, err, l.e.SendPath())
		}
	}
}

// TestSendPathXDPStalledQueue: when the driver's count of TX queues is
// wrong (here faked: 2, on a veth with 2 RX channels and 1 TX), worker 1
// binds queue 1, which the bind allows, and the kernel takes nothing from
// it. Kicks that take nothing for xskStall break that XSK, what it held is
// counted lost, and the call goes on through queue 0 within a second.
func TestSendPathXDPStalledQueue(t *testing.T) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("no ethtool")
	}
	old := txQueuesOf
	txQueuesOf = func(string) (int, error) { return 2, nil }
	t.Cleanup(func() { txQueuesOf = old })
	l := newOffloadLabFamily(t, fastpath.Off, false, func(c *Config) { c.SendPath, c.Workers = SendPathXDP, 2 })
	l.engineNS.do(t, func() {
		if out, err := exec.Command("ethtool", "-L", "ea", "rx", "2").CombinedOutput(); err != nil {
			t.Skipf("ethtool -L ea rx 2: %v %s", err, out)
		}
	})
	var c rtpCall
	for i := range 2 { // the least loaded worker takes each: worker 0, then 1
		c = l.rtpCall(t, fmt.Sprintf("xdpstall-%d", i))
		// Both legs latch: the caller's first datagram is on the socket.
		if _, err := c.a.WriteToUDPAddrPort(rtpPacket(0, 1, 0, 0xA), c.toA); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tryRecv(c.b, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Callee to caller of the call on worker 1: out through ea, the veth
	// with the wrong count, until 10 datagrams in a row arrive.
	a, b, toB := c.a, c.b, c.toB
	start, inRow := time.Now(), 0
	for seq := uint16(1); inRow < 10; seq++ {
		if time.Since(start) > hopRetry+time.Second {
			t.Fatalf("the call's media to the caller did not flow within %v: %+v", hopRetry+time.Second, l.e.SendPath())
		}
		pkt := rtpPacket(0, seq, uint32(seq)*160, 0xB)
		if _, err := b.WriteToUDPAddrPort(pkt, toB); err != nil {
			t.Fatal(err)
		}
		if got, _, err := tryRecv(a, 20*time.Millisecond); err == nil && bytes.Equal(got, pkt) {
			inRow++
		} else {
			inRow = 0
		}
	}
	st := l.e.SendPath()
	t.Logf("flowing after %v: %+v", time.Since(start).Round(time.Millisecond), st)
	if st.Lost == 0 {
		t.Errorf("no datagram counted lost: the stalled XSK was not found (or never used): %+v", st)
	}
}

// TestSendPathXSKOpenWithoutPathLock: an XSK open takes milliseconds (an
// 8 MiB UMEM registered and bound: 3–5 ms measured); the resolver opens
// without the path's lock, which every worker takes each round, and the
// relay goes on (through the sockets) while an open hangs.
func TestSendPathXSKOpenWithoutPathLock(t *testing.T) {
	opening, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	old := openXSK
	openXSK = func(ifindex, queue, frames, ring, budget, sndbuf int) (*xdptx.XSK, error) {
		once.Do(func() { close(opening) })
		<-release
		return old(ifindex, queue, frames, ring, budget, sndbuf)
	}
	t.Cleanup(func() { openXSK = old })
	l := newXDPLab(t, false)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	_, toA, toB := l.call(t, nil)
	// Round trips until the resolver opens (its first look-ups may find
	// the neighbours unconfirmed: asked again a hopRetry later).
	for seq, deadline := uint16(1), time.Now().Add(5*time.Second); ; seq++ {
		l.relayBoth(t, toA, toB, 1, seq)
		select {
		case <-opening:
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no XSK open within 5 s of the first datagrams")
			}
			continue
		}
		break
	}
	locked := make(chan struct{})
	go func() {
		l.e.xdp.mu.Lock()
		l.e.xdp.mu.Unlock() //nolint:staticcheck // taken to see it is free
		close(locked)
	}()
	select {
	case <-locked:
	case <-time.After(time.Second):
		t.Fatal("the path's lock is held while an XSK opens: every worker's round waits on it")
	}
	l.relayBoth(t, toA, toB, 20, 200) // the workers relay meanwhile
	close(release)
	released = true
	untilXDP(t, l.e, 300, func(seq uint16) error { return relayPair(l.caller, l.callee, toA, toB, 1, seq) })
}
