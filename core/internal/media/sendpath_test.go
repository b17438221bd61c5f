package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// The XDP send path end to end, on the offload lab (fast_path off, so the
// relay is userspace's): what goes through an XSK must arrive byte-exact
// from the leg's address and port, the kernel's UDP output must not see
// it, and what the path cannot take goes through the socket, counted.

func newXDPLab(t *testing.T, v6 bool) *offloadLab {
	t.Helper()
	return newOffloadLabFamily(t, fastpath.Off, v6, func(c *Config) { c.SendPath = SendPathXDP })
}

// udpOut is the engine namespace's Udp OutDatagrams (Udp6OutDatagrams in
// an IPv6 lab): what went out through UDP sockets.
func (l *offloadLab) udpOut(t *testing.T) uint64 {
	t.Helper()
	var b []byte
	var err error
	v6 := l.aLocal.Is6()
	file := "/proc/thread-self/net/snmp"
	if v6 {
		file = "/proc/thread-self/net/snmp6"
	}
	l.engineNS.do(t, func() { b, err = os.ReadFile(file) })
	if err != nil {
		t.Fatal(err)
	}
	if v6 {
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Udp6OutDatagrams" {
				n, _ := strconv.ParseUint(f[1], 10, 64)
				return n
			}
		}
		t.Fatal("no Udp6OutDatagrams in /proc/net/snmp6")
	}
	var head []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "OutDatagrams" && i < len(f) {
				n, _ := strconv.ParseUint(f[i], 10, 64)
				return n
			}
		}
	}
	t.Fatal("no Udp OutDatagrams in /proc/net/snmp")
	return 0
}

// relayBoth sends n packets each way and checks each arrives unchanged
// from the engine's address of that leg (toA for the caller, toB for the
// callee).
func (l *offloadLab) relayBoth(t *testing.T, toA, toB netip.AddrPort, n int, seq0 uint16) {
	t.Helper()
	if err := relayPair(l.caller, l.callee, toA, toB, n, seq0); err != nil {
		t.Fatal(err)
	}
}

// relayPair is relayBoth between the peers a and b.
func relayPair(a, b *net.UDPConn, toA, toB netip.AddrPort, n int, seq0 uint16) error {
	for i := range n {
		seq := seq0 + uint16(i) //nolint:gosec // wraps like RTP
		for _, d := range []struct {
			from, to  *net.UDPConn
			dst, want netip.AddrPort
			ssrc      uint32
		}{{a, b, toA, toB, 0xA}, {b, a, toB, toA, 0xB}} {
			pkt := rtpPacket(0, seq, uint32(seq)*160, d.ssrc)
			if _, err := d.from.WriteToUDPAddrPort(pkt, d.dst); err != nil {
				return err
			}
			got, from, err := tryRecv(d.to, 2*time.Second)
			if err != nil {
				return fmt.Errorf("packet %d to %s: %w", i, d.dst, err)
			}
			if !bytes.Equal(got, pkt) || from != d.want {
				return fmt.Errorf("packet %d to %s: %d bytes from %s, want the %d sent from %s", i, d.dst, len(got), from, len(pkt), d.want)
			}
		}
	}
	return nil
}

// untilXDP runs round trips (round(seq), seq counting up from seq0) until
// one has both its datagrams go through the XSKs: the hops are resolved by
// the resolver's look-up after the sockets' sends confirmed the
// neighbours, a hopRetry after the first datagrams, later on a loaded
// machine. It returns the next seq.
func untilXDP(t *testing.T, e *Engine, seq0 uint16, round func(seq uint16) error) uint16 {
	t.Helper()
	deadline := time.Now().Add(4 * hopRetry)
	for seq := seq0; ; seq++ {
		st := e.SendPath()
		if err := round(seq); err != nil {
			t.Fatal(err)
		}
		if e.SendPath().Sent-st.Sent == 2 {
			return seq + 1
		}
		if time.Now().After(deadline) {
			t.Fatalf("the next hops were not resolved in %v: %+v", 4*hopRetry, e.SendPath())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rtpCall is a plain RTP call of the lab on sockets of its own: the
// caller's a, the callee's b, and the engine's address of each leg.
type rtpCall struct {
	a, b     *net.UDPConn
	toA, toB netip.AddrPort
}

// rtpCall sets up call id (offer from a, answer from b).
func (l *offloadLab) rtpCall(t *testing.T, id string) rtpCall {
	t.Helper()
	a, b := l.listen(t, l.callerNS, l.callerAddr), l.listen(t, l.calleeNS, l.calleeAddr)
	s := l.session(t, id, SecurityRTP, nil)
	offerToB, err := s.Offer(SideA, sdpFor(a, 1))
	if err != nil {
		t.Fatal(err)
	}
	answerToA, err := s.Answer(SideB, sdpFor(b, 1))
	if err != nil {
		t.Fatal(err)
	}
	toA, _ := mediaAddr(t, answerToA)
	toB, _ := mediaAddr(t, offerToB)
	return rtpCall{a, b, toA, toB}
}

// TestSendPathXDP: once both legs latched and their neighbours are
// confirmed, the relay's datagrams go through the XSKs: byte-exact, from
// the right address and port, none through a UDP socket. Before, the
// first ones fell back to the socket, counted.
func TestSendPathXDP(t *testing.T) { testSendPathXDP(t, false) }

// TestSendPathXDPIPv6 is TestSendPathXDP on IPv6 legs: their datagrams go
// through the XSKs as IPv4's do (the UDP checksum the receiving kernel
// verifies), none through a UDP socket (Udp6OutDatagrams), the neighbours
// found in neighbour discovery's table.
func TestSendPathXDPIPv6(t *testing.T) { testSendPathXDP(t, true) }

func testSendPathXDP(t *testing.T, v6 bool) {
	l := newXDPLab(t, v6)
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1) // latches both legs; the sockets' sends confirm the neighbours
	if st := l.e.SendPath(); st.NoHop == 0 {
		t.Errorf("no fallback counted before the neighbours were confirmed: %+v", st)
	}
	seq := untilXDP(t, l.e, 10, func(seq uint16) error { return relayPair(l.caller, l.callee, toA, toB, 1, seq) })
	st0, out0 := l.e.SendPath(), l.udpOut(t)
	const n = 20
	l.relayBoth(t, toA, toB, n, seq)
	st1, out1 := l.e.SendPath(), l.udpOut(t)
	if sent := st1.Sent - st0.Sent; sent != 2*n {
		t.Errorf("%d datagrams through the XSKs, want %d (%+v)", sent, 2*n, st1)
	}
	if out1 != out0 {
		t.Errorf("%d datagrams went out through UDP sockets", out1-out0)
	}
	if st1.Lost != 0 || st1.Full != 0 {
		t.Errorf("%+v", st1)
	}
}

// TestSendPathXDPFamilies: the hop of an IPv6 peer is asked for as an
// IPv4 one's is, a v4-mapped peer's as IPv4 (its key unmapped); a
// link-local IPv6 peer or source (whose zone the route look-up would
// need) and a mixed pair go through the socket, counted, without asking.
func TestSendPathXDPFamilies(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		wantAsk  bool
	}{
		{"ipv4", "10.0.0.1:4000", "10.0.1.2:5000", true},
		{"ipv6", "[fd00:1::1]:4000", "[fd00:2::2]:5000", true},
		{"v4-mapped peer", "10.0.0.1:4000", "[::ffff:10.0.1.2]:5000", true},
		{"link-local peer", "[fd00:1::1]:4000", "[fe80::2]:5000", false},
		{"link-local source", "[fe80::1]:4000", "[fd00:2::2]:5000", false},
		{"mixed", "10.0.0.1:4000", "[fd00:2::2]:5000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &xdpPath{reqs: make(chan hopReq, 1)} // no resolver running
			wx := p.worker(0)
			src, dst := netip.MustParseAddrPort(tt.src), netip.MustParseAddrPort(tt.dst)
			if wx.send(src, dst, 0, []byte("rtp"), time.Now().UnixNano()) {
				t.Fatal("sent with no hop resolved")
			}
			if n := p.noHop.Load(); n != 1 {
				t.Errorf("%d fallbacks counted, want 1", n)
			}
			if asked := len(p.reqs) == 1; asked != tt.wantAsk {
				t.Fatalf("resolver asked %v, want %v", asked, tt.wantAsk)
			}
			if !tt.wantAsk {
				return
			}
			r := <-p.reqs
			if r.src != src.Addr().Unmap() || r.dst != dst.Addr().Unmap() {
				t.Errorf("asked for %s to %s, want %s to %s", r.src, r.dst, src.Addr().Unmap(), dst.Addr().Unmap())
			}
		})
	}
}

// TestSendPathXDPSRTP: the callee speaks SRTP; what the engine encrypts
// goes through the XSK and the callee decrypts it (its authentication tag
// proves every byte), what it decrypts reaches the caller the same way.
func TestSendPathXDPSRTP(t *testing.T) {
	l := newXDPLab(t, false)
	s := l.session(t, "xdp-srtp", SecuritySRTP, nil)
	offerToB, err := s.Offer(SideA, sdpFor(l.caller, 1))
	if err != nil {
		t.Fatal(err)
	}
	ourB := engineKey(t, offerToB, 1)
	bKey, bLine := peerKey(t, 1, 0)
	ap := l.callee.LocalAddr().String()
	host, port, _ := strings.Cut(ap, ":")
	answer := "v=0\r\no=- 1 1 IN IP4 " + host + "\r\ns=-\r\nc=IN IP4 " + host + "\r\nt=0 0\r\nm=audio " + port + " RTP/SAVP 0\r\na=" + bLine + "\r\n"
	answerToA, err := s.Answer(SideB, []byte(answer))
	if err != nil {
		t.Fatal(err)
	}
	toA, _ := mediaAddr(t, answerToA)
	toB, _ := mediaAddr(t, offerToB)
	bEnc, bDec := mustContext(t, bKey, false), mustContext(t, ourB, true)
	round := func(i int) {
		pkt := rtpPacket(0, uint16(i), uint32(160*i), 0xA) //nolint:gosec // small
		if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		got, from, err := tryRecv(l.callee, 2*time.Second)
		if err != nil {
			t.Fatalf("packet %d to the callee: %v", i, err)
		}
		if dec, err := bDec.DecryptRTP(nil, got, nil); err != nil || !bytes.Equal(dec, pkt) || from != toB {
			t.Fatalf("packet %d to the callee from %s (want %s): decrypt: %v", i, from, toB, err)
		}
		back := rtpPacket(0, uint16(i), uint32(160*i), 0xB) //nolint:gosec // small
		enc, _ := bEnc.EncryptRTP(nil, back, nil)
		if _, err := l.callee.WriteToUDPAddrPort(enc, toB); err != nil {
			t.Fatal(err)
		}
		got, from, err = tryRecv(l.caller, 2*time.Second)
		if err != nil || !bytes.Equal(got, back) || from != toA {
			t.Fatalf("packet %d to the caller: from %s (want %s), equal %v: %v", i, from, toA, bytes.Equal(got, back), err)
		}
	}
	for i := range 3 {
		round(i)
	}
	next := untilXDP(t, l.e, 3, func(seq uint16) error { round(int(seq)); return nil })
	st0 := l.e.SendPath()
	for i := range 10 {
		round(int(next) + i)
	}
	if st := l.e.SendPath(); st.Sent-st0.Sent != 20 {
		t.Errorf("%d datagrams through the XSKs, want 20 (%+v)", st.Sent-st0.Sent, st)
	}
}

// TestSendPathXDPFull: with a UMEM of 4 frames, a burst the worker reads
// at once finds no free frame after the fourth: the rest go through the
// socket, counted, and every packet arrives, in order.
func TestSendPathXDPFull(t *testing.T) {
	old := xskFrames
	xskFrames = 4
	t.Cleanup(func() { xskFrames = old })
	l := newXDPLab(t, false)
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1)
	time.Sleep(hopRetry + 200*time.Millisecond)
	st0 := l.e.SendPath()
	const burst = 24
	for try := range 5 {
		for i := range burst {
			pkt := rtpPacket(0, uint16(1000+try*burst+i), 0, 0xA) //nolint:gosec // small
			if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
				t.Fatal(err)
			}
		}
		for i := range burst {
			got, _, err := tryRecv(l.callee, 2*time.Second)
			if err != nil {
				t.Fatalf("burst %d, packet %d: %v", try, i, err)
			}
			if want := rtpPacket(0, uint16(1000+try*burst+i), 0, 0xA); !bytes.Equal(got, want) { //nolint:gosec // small
				t.Fatalf("burst %d, packet %d: not the one sent (out of order or changed)", try, i)
			}
		}
		if st := l.e.SendPath(); st.Full > st0.Full {
			if st.Sent == st0.Sent {
				t.Errorf("nothing went through the XSK: %+v", st)
			}
			return
		}
	}
	t.Errorf("no burst found the UMEM full: %+v", l.e.SendPath())
}

// TestSendPathConfig: a send path other than socket and xdp is refused,
// naming it.
func TestSendPathConfig(t *testing.T) {
	_, err := New(Config{PortMin: 40000, PortMax: 40009, LatchWindow: time.Second, SendPath: "dpdk"}, nil)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `"dpdk"`) {
		t.Fatalf("send path dpdk: %v", err)
	}
}

// TestSendPathXDPAllocs: a relayed packet through the XSKs costs no
// allocation in steady state, as BenchmarkRelay demands of the sockets'
// path (the process's allocations per round trip, workers included; the
// test's side makes none: a socket variant of the same loop shows 0 too).
func TestSendPathXDPAllocs(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		v6         bool
	}{
		{SendPathXDP, SendPathXDP, false},
		{SendPathSocket, SendPathSocket, false},
		{SendPathXDP + "/ipv6", SendPathXDP, true},
		{SendPathSocket + "/ipv6", SendPathSocket, true},
	} {
		path := tc.path
		t.Run(tc.name, func(t *testing.T) {
			l := newOffloadLabFamily(t, fastpath.Off, tc.v6, func(c *Config) { c.SendPath = path })
			_, toA, toB := l.call(t, nil)
			l.relayBoth(t, toA, toB, 3, 1)
			time.Sleep(hopRetry + 200*time.Millisecond)
			l.relayBoth(t, toA, toB, 3, 10) // the next hops resolved
			st0 := l.e.SendPath()
			seq := uint16(100)
			pktA, pktB, buf := rtpPacket(0, 0, 0, 0xA), rtpPacket(0, 0, 0, 0xB), make([]byte, 2048)
			for _, c := range []*net.UDPConn{l.caller, l.callee} {
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			}
			var failed error
			// One packet each way, as BenchmarkRelay's step, on buffers
			// made before.
			allocs := testing.AllocsPerRun(200, func() {
				seq++
				for _, d := range [2]struct {
					from, to  *net.UDPConn
					pkt       []byte
					dst, want netip.AddrPort
				}{{l.caller, l.callee, pktA, toA, toB}, {l.callee, l.caller, pktB, toB, toA}} {
					binary.BigEndian.PutUint16(d.pkt[2:], seq)
					if _, err := d.from.WriteToUDPAddrPort(d.pkt, d.dst); err != nil && failed == nil {
						failed = err
					}
					n, from, err := d.to.ReadFromUDPAddrPort(buf)
					if (err != nil || !bytes.Equal(buf[:n], d.pkt) || from != d.want) && failed == nil {
						failed = fmt.Errorf("packet %d to %s: %d bytes from %s: %v", seq, d.dst, n, from, err)
					}
				}
			})
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs != 0 {
				t.Errorf("%.2f allocations per round trip", allocs)
			}
			if st := l.e.SendPath(); path == SendPathXDP && st.Sent-st0.Sent < 400 {
				t.Errorf("only %d of the round trips' datagrams went through the XSKs: %+v", st.Sent-st0.Sent, st)
			}
		})
	}
}

// TestSendPathXDPRecreatedLink: the callee's link goes away and comes back
// (a new interface, a new index): the XSK bound to the old one fails at
// its next kick (counted), the next hop is looked up again, and the relay
// goes on through a new XSK once the new neighbour entry is confirmed:
// within hopRetry and a margin, not at the old hop's hopTTL.
func TestSendPathXDPRecreatedLink(t *testing.T) {
	l := newXDPLab(t, false)
	_, toA, toB := l.call(t, nil)
	l.relayBoth(t, toA, toB, 3, 1)
	time.Sleep(hopRetry + 200*time.Millisecond)
	l.relayBoth(t, toA, toB, 3, 10)
	st0 := l.e.SendPath()
	if st0.Sent == 0 {
		t.Fatalf("the XDP path is not in use: %+v", st0)
	}
	l.calleeNS.run(t, "link", "del", "p0")
	l.engineNS.run(t, "link", "add", "eb", "type", "veth", "peer", "name", "p0", "netns", string(l.calleeNS))
	l.engineNS.run(t, "addr", "add", l.bLocal.String()+"/24", "dev", "eb", "nodad")
	l.engineNS.run(t, "link", "set", "eb", "up")
	l.calleeNS.run(t, "addr", "add", l.calleeAddr.String()+"/24", "dev", "p0", "nodad")
	l.calleeNS.run(t, "link", "set", "p0", "up")
	// Caller to callee until the new XSK carries it: a datagram the old
	// XSK held when its kick failed is lost, and counted.
	sent, got := 0, 0
	deadline := time.Now().Add(hopRetry + 2*time.Second)
	for seq := uint16(100); time.Now().Before(deadline); seq++ {
		pkt := rtpPacket(0, seq, uint32(seq)*160, 0xA)
		if _, err := l.caller.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		sent++
		if b, _, err := tryRecv(l.callee, 300*time.Millisecond); err == nil && bytes.Equal(b, pkt) {
			got++
		}
		if st := l.e.SendPath(); st.Sent > st0.Sent+5 && got > 5 {
			if lost := uint64(sent - got); lost > st.Lost-st0.Lost {
				t.Errorf("%d of %d datagrams lost, %d counted: %+v", lost, sent, st.Lost-st0.Lost, st)
			}
			t.Logf("after the new link: %d sent, %d arrived, %+v", sent, got, st)
			return
		}
	}
	t.Fatalf("the XDP path did not come back: %d sent, %d arrived, %+v", sent, got, l.e.SendPath())
}

// TestSendPathXDPSharedQueue: one more worker than the veths have TX
// queues, a call on each worker: two workers' frames go through the same
// XSK, under its lock, at the same time (run with -race); a worker whose
// queue does not bind (a veth allocates a queue per CPU but uses one)
// shares a lower one instead of falling back to its sockets.
func TestSendPathXDPSharedQueue(t *testing.T) {
	ntx := 0
	probe := newXDPLab(t, false)
	probe.engineNS.do(t, func() {
		if link, err := netlink.LinkByName("ea"); err == nil {
			ntx = link.Attrs().NumTxQueues
		}
	})
	if ntx < 1 {
		t.Fatal("no TX queue count for the lab's veth")
	}
	workers := ntx + 1
	l := newOffloadLabFamily(t, fastpath.Off, false, func(c *Config) { c.SendPath, c.Workers = SendPathXDP, workers })
	var calls []rtpCall
	for i := range workers {
		c := l.rtpCall(t, fmt.Sprintf("xdp-%d", i))
		calls = append(calls, c)
		if err := relayPair(c.a, c.b, c.toA, c.toB, 3, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range calls {
		untilXDP(t, l.e, 4, func(seq uint16) error { return relayPair(c.a, c.b, c.toA, c.toB, 1, seq) })
	}
	st0 := l.e.SendPath()
	const n = 200
	errs := make(chan error, len(calls))
	for _, c := range calls {
		go func() { errs <- relayPair(c.a, c.b, c.toA, c.toB, n, 100) }()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := l.e.SendPath(); st.Sent-st0.Sent != uint64(2*n*len(calls)) {
		t.Errorf("%d datagrams through the XSKs, want %d: %+v", st.Sent-st0.Sent, 2*n*len(calls), st)
	}
	l.e.xdp.mu.Lock()
	defer l.e.xdp.mu.Unlock()
	// At most ntx queues of each veth bind (fewer when fewer are in use:
	// a veth allocates one per CPU and uses one), so workers share.
	if n := len(l.e.xdp.xsks); n < 2 || n > 2*ntx {
		t.Errorf("%d XSKs for %d workers on 2 veths of %d TX queues", n, workers, ntx)
	}
}

// TestSendPathResolverNeverBlocksAWorker: a worker asks for next hops and
// goes on, whatever the resolver does: here it never answers (a netlink
// that hangs), and a burst of new peers larger than the queue neither
// blocks the worker nor asks twice for a hop already asked for; an answer
// is taken in at the next datagram.
func TestSendPathResolverNeverBlocksAWorker(t *testing.T) {
	p := &xdpPath{reqs: make(chan hopReq, resolveQueue)} // no resolver running
	wx := p.worker(0)
	src := netip.MustParseAddr("10.0.0.1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		now := time.Now().UnixNano()
		for i := range 3 * resolveQueue {
			dst := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			if h := wx.hopFor(src, dst, now); h.q != nil {
				t.Errorf("hop to %s resolved with no resolver", dst)
				return
			}
			wx.hopFor(src, dst, now) // its second datagram: no second request
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a worker waited on the resolver")
	}
	if n := len(p.reqs); n != resolveQueue {
		t.Fatalf("%d requests queued, want the queue full (%d) and the rest to ask later", n, resolveQueue)
	}
	r := <-p.reqs
	q := &xsk{}
	wx.results <- hopAnswer{h: r.h, at: time.Now().UnixNano(), q: q, mtu: 1500}
	if h := wx.hopFor(r.src, r.dst, time.Now().UnixNano()); h.q != q || h.mtu != 1500 {
		t.Fatalf("the answer was not taken in: %+v", h)
	}
	// The other requests' answers never come (lost, or the resolver hung):
	// their hops ask again a hopRetry later, not never.
	for len(p.reqs) > 0 {
		<-p.reqs
	}
	later := time.Now().Add(2 * hopRetry).UnixNano()
	wx.hopFor(src, netip.AddrFrom4([4]byte{10, 1, 0, 1}), later)
	if n := len(p.reqs); n != 1 {
		t.Fatalf("%d requests after hopRetry for a hop whose answer was lost, want 1", n)
	}
	// A failed answer read long after the resolver made it (the peer's
	// next datagram came late): its retry counts from the look-up, so the
	// hop is asked again at once, not a hopRetry after the read.
	r = <-p.reqs
	wx.results <- hopAnswer{h: r.h, at: time.Now().UnixNano()}
	late := time.Now().Add(2 * hopRetry).UnixNano()
	wx.hopFor(r.src, r.dst, late)
	if n := len(p.reqs); n != 1 {
		t.Fatalf("%d requests for a hop whose failed answer was read a 2·hopRetry late, want 1", n)
	}
}
