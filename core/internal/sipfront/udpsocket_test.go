package sipfront

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func udpPair(t *testing.T) (*udpSocket, *net.UDPConn) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	_ = peer.SetReadBuffer(4 << 20)
	u := newUDPSocket(pc, pc.LocalAddr().(*net.UDPAddr).AddrPort(), nil, slog.New(slog.DiscardHandler))
	if u.rc == nil {
		t.Fatal("no raw conn: sends would not batch")
	}
	return u, peer
}

func readAll(t *testing.T, c *net.UDPConn, wait time.Duration) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 70000)
	for {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
	}
}

// While a reader serves a batch the socket's sends wait, in order, and
// leave together when it is done; with no batch served a send leaves at
// once.
func TestUDPSendsWaitForTheBatch(t *testing.T) {
	u, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := u.send([]byte("alone"), to); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, peer, 200*time.Millisecond); fmt.Sprint(got) != "[alone]" {
		t.Fatalf("a send outside a batch: got %q", got)
	}
	u.serve()
	b := []byte("first")
	_ = u.send(b, to)
	copy(b, "XXXXX") // the sender's bytes are its own again at once
	_ = u.send([]byte("second"), to)
	if got := readAll(t, peer, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("sent while the batch was served: %q", got)
	}
	u.serve() // a second reader
	_ = u.send([]byte("third"), to)
	u.done() // the first to finish writes all that is queued
	if got := readAll(t, peer, 200*time.Millisecond); fmt.Sprint(got) != "[first second third]" {
		t.Fatalf("after the batch: got %q", got)
	}
	_ = u.send(make([]byte, 65000), to) // near UDP's largest: still fits the empty queue
	_ = u.send([]byte("fourth"), to)
	// A destination the queue does not take (an IPv6 address to this
	// IPv4 socket) goes out alone, at once, with its error, after what
	// is queued.
	if err := u.send([]byte("refused"), netip.MustParseAddrPort("[::1]:5060")); err == nil {
		t.Error("a send the socket cannot make returned no error")
	}
	got := readAll(t, peer, 200*time.Millisecond)
	if len(got) != 2 || len(got[0]) != 65000 || got[1] != "fourth" {
		t.Fatalf("the queue before a send that goes out alone: got %d datagrams", len(got))
	}
	u.done()
	if got := readAll(t, peer, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("left in the queue: %q", got)
	}
}

// More datagrams than the queue holds: the queue is written when full,
// nothing is lost or reordered.
func TestUDPSendsOverflowTheQueue(t *testing.T) {
	u, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	const n = 3*udpQueueLen + 5
	u.serve()
	for i := range n {
		_ = u.send(fmt.Appendf(nil, "d%d", i), to)
	}
	u.done()
	got := readAll(t, peer, 200*time.Millisecond)
	if len(got) != n {
		t.Fatalf("%d of %d datagrams arrived", len(got), n)
	}
	for i, g := range got {
		if g != fmt.Sprintf("d%d", i) {
			t.Fatalf("datagram %d is %q", i, g)
		}
	}
}

// Readers serving batches and timers sending at the same time: every
// datagram leaves exactly once (run with -race).
func TestUDPSendsConcurrent(t *testing.T) {
	u, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	const senders, each = 4, 200
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				reader := s%2 == 0
				if reader {
					u.serve()
				}
				_ = u.send(fmt.Appendf(nil, "%d-%d", s, i), to)
				if reader {
					u.done()
				}
			}
		}()
	}
	wg.Wait()
	got := readAll(t, peer, 300*time.Millisecond)
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Fatalf("%q twice", g)
		}
		seen[g] = true
	}
	if len(seen) != senders*each {
		t.Fatalf("%d of %d datagrams arrived", len(seen), senders*each)
	}
}

// A datagram to an address the socket cannot reach is dropped alone; the
// batch's others leave.
func TestUDPSendsFailedDatagram(t *testing.T) {
	u, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	u.serve()
	_ = u.send([]byte("before"), to)
	_ = u.send([]byte("nowhere"), netip.MustParseAddrPort("127.0.0.1:0")) // port 0: EINVAL
	_ = u.send([]byte("after"), to)
	u.done()
	if got := readAll(t, peer, 200*time.Millisecond); fmt.Sprint(got) != "[before after]" {
		t.Fatalf("got %q", got)
	}
}

// A queue the socket cannot be written at all (here: a write deadline
// past, which the poller reports before any datagram is tried) is dropped
// and the batch ends: the flush must not retry forever with the socket's
// lock held, which would stall every sender of the socket.
func TestUDPSendsUnwritableSocket(t *testing.T) {
	u, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := u.pc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	u.serve()
	_ = u.send([]byte("lost"), to)
	done := make(chan struct{})
	go func() {
		u.done()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the batch's flush did not return on a socket it cannot write")
	}
	if err := u.pc.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := u.send([]byte("after"), to); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, peer, 200*time.Millisecond); fmt.Sprint(got) != "[after]" {
		t.Fatalf("got %q, want the send after the failed batch only", got)
	}
}

// A batch whose datagrams the kernel refuses in every way a peer can make
// the front end try — port 0 first and last, over IPv4's largest
// datagram (EMSGSIZE), an IPv6 destination and a zone by name on an IPv4
// socket, in a row — still sends the others, each once and in order.
func TestUDPSendsRefusedInEveryWay(t *testing.T) {
	u, peer := udpPair(t)
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	port0 := netip.MustParseAddrPort("127.0.0.1:0")
	u.serve()
	_ = u.send([]byte("x"), port0)
	_ = u.send([]byte("one"), to)
	_ = u.send(make([]byte, 65535), to) // queued (it fits), refused by the kernel
	_ = u.send([]byte("two"), to)
	_ = u.send([]byte("x"), netip.MustParseAddrPort("[::1]:5060"))
	_ = u.send([]byte("x"), netip.MustParseAddrPort("[fe80::1%lo]:5060"))
	_ = u.send([]byte("x"), port0)
	_ = u.send([]byte("three"), netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())) // v4-mapped
	_ = u.send([]byte("x"), port0)
	u.done()
	if got := readAll(t, peer, 200*time.Millisecond); fmt.Sprint(got) != "[one two three]" {
		t.Fatalf("got %q", got)
	}
}
