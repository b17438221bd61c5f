package media

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// The kernel fast path end to end: a caller namespace and a callee
// namespace on veths to the engine's namespace, plain UDP peers sending
// RTP both ways. Each test runs with fast_path = "tc" and again with "off",
// where everything but the path must come out the same.

// offloadLab is the three namespaces, the engine and the two peers.
type offloadLab struct {
	engineNS, callerNS, calleeNS netns
	e                            *Engine
	mode                         fastpath.Mode
	aLocal, bLocal               netip.Addr // the engine's address towards each side
	callerAddr, calleeAddr       netip.Addr
	caller, callee               *net.UDPConn
}

func newOffloadLab(t *testing.T, mode fastpath.Mode, mod func(*Config)) *offloadLab {
	t.Helper()
	return newOffloadLabFamily(t, mode, false, mod)
}

// newOffloadLabFamily is the lab on IPv6 addresses when v6.
func newOffloadLabFamily(t *testing.T, mode fastpath.Mode, v6 bool, mod func(*Config)) *offloadLab {
	t.Helper()
	natLabAvailable(t)
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	x := 16 + rand.IntN(200)
	l := &offloadLab{engineNS: netns("um-fe-" + tag), callerNS: netns("um-fa-" + tag), calleeNS: netns("um-fb-" + tag), mode: mode}
	addNetns(t, l.engineNS, l.callerNS, l.calleeNS)
	addr, plen := "10.%d.%d.%d", "/24"
	if v6 {
		addr, plen = "fd00:%x:%x::%x", "/64"
	}
	a := func(n, h int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf(addr, x, n, h)) }
	l.aLocal, l.callerAddr, l.bLocal, l.calleeAddr = a(1, 1), a(1, 2), a(2, 1), a(2, 2)
	for _, side := range []struct {
		ns          netns
		local, peer netip.Addr
	}{{l.callerNS, l.aLocal, l.callerAddr}, {l.calleeNS, l.bLocal, l.calleeAddr}} {
		dev := "e" + string(side.ns)[4:5] // ea, eb
		l.engineNS.run(t, "link", "add", dev, "type", "veth", "peer", "name", "p0", "netns", string(side.ns))
		l.engineNS.run(t, "addr", "add", side.local.String()+plen, "dev", dev, "nodad")
		l.engineNS.run(t, "link", "set", dev, "up")
		side.ns.run(t, "addr", "add", side.peer.String()+plen, "dev", "p0", "nodad")
		side.ns.run(t, "link", "set", "p0", "up")
	}
	var err error
	l.engineNS.do(t, func() {
		base := 20000 + 2*rand.IntN(15000)
		cfg := Config{PortMin: base, PortMax: base + 63, Workers: 1, LatchWindow: 3 * time.Second, FastPath: mode}
		if mod != nil {
			mod(&cfg)
		}
		l.e, err = New(cfg, nil)
	})
	if err != nil {
		if errors.Is(err, fastpath.ErrUnavailable) {
			t.Skipf("no kernel fast path here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { l.e.Close() })
	l.caller = l.listen(t, l.callerNS, l.callerAddr)
	l.callee = l.listen(t, l.calleeNS, l.calleeAddr)
	return l
}

func (l *offloadLab) listen(t *testing.T, ns netns, a netip.Addr) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	var err error
	ns.do(t, func() { c, err = net.ListenUDP("udp", &net.UDPAddr{IP: a.AsSlice()}) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sdpFor(c *net.UDPConn, version int) []byte {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	fam := "IP4"
	if ap.Addr().Unmap().Is6() {
		fam = "IP6"
	}
	return fmt.Appendf(nil, "v=0\r\no=- 1 %d IN %[2]s %[3]s\r\ns=-\r\nc=IN %[2]s %[3]s\r\nt=0 0\r\nm=audio %[4]d RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
		version, fam, ap.Addr().Unmap(), ap.Port())
}

// session opens a session in the engine's namespace, its B leg with
// security secB, closed when the test ends.
func (l *offloadLab) session(t *testing.T, id string, secB Security, onTimeout func()) *Session {
	t.Helper()
	var s *Session
	var err error
	l.engineNS.do(t, func() {
		s, err = l.e.NewSession(id, LegProfile{Local: l.aLocal, Security: SecurityRTP}, LegProfile{Local: l.bLocal, Security: secB}, onTimeout)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// call opens a session between the peers (caller offers) and returns where
// each peer sends.
func (l *offloadLab) call(t *testing.T, onTimeout func()) (s *Session, toA, toB netip.AddrPort) {
	t.Helper()
	s = l.session(t, "fp-"+t.Name(), SecurityRTP, onTimeout)
	offerToB, err := s.Offer(SideA, sdpFor(l.caller, 1))
	if err != nil {
		t.Fatal(err)
	}
	answerToA, err := s.Answer(SideB, sdpFor(l.callee, 1))
	if err != nil {
		t.Fatal(err)
	}
	toA, _ = mediaAddr(t, answerToA)
	toB, _ = mediaAddr(t, offerToB)
	return s, toA, toB
}

// exchange sends n packets each way, each read by the other peer, and
// fails on a lost or changed one.
func exchange(t *testing.T, a, b *net.UDPConn, toA, toB netip.AddrPort, n int, seq0 uint16, ssrcA, ssrcB uint32) {
	t.Helper()
	exchangeRecv(t, a, b, toA, toB, n, seq0, ssrcA, ssrcB, func(c *net.UDPConn) ([]byte, error) {
		got, _, err := tryRecv(c, 2*time.Second)
		return got, err
	})
}

// exchangeRecv is exchange with the peers' reads by recv.
func exchangeRecv(t *testing.T, a, b *net.UDPConn, toA, toB netip.AddrPort, n int, seq0 uint16, ssrcA, ssrcB uint32, recv func(*net.UDPConn) ([]byte, error)) {
	t.Helper()
	for i := range n {
		seq := seq0 + uint16(i) //nolint:gosec // wraps like RTP
		for _, d := range []struct {
			from, to *net.UDPConn
			dst      netip.AddrPort
			ssrc     uint32
		}{{a, b, toA, ssrcA}, {b, a, toB, ssrcB}} {
			pkt := rtpPacket(0, seq, uint32(seq)*160, d.ssrc)
			if _, err := d.from.WriteToUDPAddrPort(pkt, d.dst); err != nil {
				t.Fatal(err)
			}
			got, err := recv(d.to)
			if err != nil {
				t.Fatalf("packet %d from %s: %v", i, d.from.LocalAddr(), err)
			}
			if !bytes.Equal(got, pkt) {
				t.Fatalf("packet %d from %s arrived changed", i, d.from.LocalAddr())
			}
		}
	}
}

// waitPath waits until both legs of s are on want.
func waitPath(t *testing.T, s *Session, want string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := s.Stats()
		if st.Legs[SideA].Path == want && st.Legs[SideB].Path == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("legs on %s and %s, want both on %s", st.Legs[SideA].Path, st.Legs[SideB].Path, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *offloadLab) wantPath() string {
	if l.mode == fastpath.TC {
		return PathKernel
	}
	return PathUserspace
}

func forwarded(e *Engine) uint64 { return e.FastPath().Reasons[0] }

// testModes: each test with the kernel path, then forced off.
var testModes = []fastpath.Mode{fastpath.TC, fastpath.Off}

// TestOffloadRelay: once both legs latched, the kernel carries the call;
// the legs' counters count every packet either path carried.
func TestOffloadRelay(t *testing.T) {
	for _, mode := range testModes {
		t.Run("fast_path="+string(mode), func(t *testing.T) {
			l := newOffloadLab(t, mode, nil)
			s, toA, toB := l.call(t, nil)
			exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB) // latches both legs
			waitPath(t, s, l.wantPath())
			reads0, fwd0 := l.e.Stats().Datagrams, forwarded(l.e)
			const n = 300
			exchange(t, l.caller, l.callee, toA, toB, n, 2, 0xA, 0xB)
			reads, fwd := l.e.Stats().Datagrams-reads0, forwarded(l.e)-fwd0
			if mode == fastpath.TC {
				if fwd < 2*n*99/100 {
					t.Errorf("the kernel forwarded %d of %d packets after latching, want ≥ 99 %%", fwd, 2*n)
				}
			} else if fwd != 0 || reads != 2*n {
				t.Errorf("fast path off: kernel forwarded %d, workers read %d; want 0 and %d", fwd, reads, 2*n)
			}
			t.Logf("after latching: kernel %d, userspace %d of %d", fwd, reads, 2*n)
			st := s.Stats()
			for _, side := range []Side{SideA, SideB} {
				lg := st.Legs[side]
				if lg.PacketsIn != n+1 || lg.PacketsOut != n+1 || lg.BytesIn != (n+1)*172 || lg.BytesOut != (n+1)*172 {
					t.Errorf("leg %s: in %d/%d B, out %d/%d B; want %d packets and %d bytes each way",
						side, lg.PacketsIn, lg.BytesIn, lg.PacketsOut, lg.BytesOut, n+1, (n+1)*172)
				}
				// The split of PacketsIn: the kernel's share, what userspace
				// took after latching, and (the first packet of A, which
				// latched before B had) the rest.
				if lg.PacketsKernel+lg.PacketsLatchedUserspace > lg.PacketsIn || (mode == fastpath.Off) != (lg.PacketsKernel == 0) {
					t.Errorf("leg %s: %d of %d packets in by the kernel, %d by userspace after latching",
						side, lg.PacketsKernel, lg.PacketsIn, lg.PacketsLatchedUserspace)
				}
			}
			if k := st.Legs[SideA].PacketsKernel + st.Legs[SideB].PacketsKernel; k != forwarded(l.e) {
				t.Errorf("the legs count %d packets by the kernel, the program forwarded %d", k, forwarded(l.e))
			}
			s.Close()
			if mode == fastpath.TC && l.e.FastPath().Entries != 0 {
				t.Errorf("%d entries left after the call ended", l.e.FastPath().Entries)
			}
		})
	}
}

// TestOffloadRelayIPv6: the same over IPv6.
func TestOffloadRelayIPv6(t *testing.T) {
	l := newOffloadLabFamily(t, fastpath.TC, true, nil)
	s, toA, toB := l.call(t, nil)
	exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB)
	waitPath(t, s, PathKernel)
	fwd0 := forwarded(l.e)
	exchange(t, l.caller, l.callee, toA, toB, 100, 2, 0xA, 0xB)
	if fwd := forwarded(l.e) - fwd0; fwd < 198 {
		t.Errorf("the kernel forwarded %d of 200 IPv6 packets", fwd)
	}
	if st := s.Stats().Legs[SideB]; st.PacketsIn != 101 || st.PacketsOut != 101 {
		t.Errorf("leg B counted %d in, %d out; want 101 each", st.PacketsIn, st.PacketsOut)
	}
}

// TestOffloadChecksums: the UDP checksum of a packet the kernel rewrote is
// right on the wire, whether it arrived with the sender's checksum left
// to the hardware (CHECKSUM_PARTIAL: only the pseudo-header sum is in the
// field) or complete. The engine's veths compute checksums in software on
// the way out (tx offload off: the kernel finishes a partial one from the
// field), and the peers' veths check every received one (rx offload off),
// so a wrong checksum is a packet the receiving socket never gets, counted
// in the namespace's UDP InCsumErrors.
func TestOffloadChecksums(t *testing.T) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Fatalf("ethtool is required (make test installs it): %v", err)
	}
	for _, v6 := range []bool{false, true} {
		for _, senderOffload := range []string{"on", "off"} {
			t.Run(fmt.Sprintf("ipv6=%v/sender_tx_offload=%s", v6, senderOffload), func(t *testing.T) {
				l := newOffloadLabFamily(t, fastpath.TC, v6, nil)
				ethtool := func(ns netns, args ...string) {
					t.Helper()
					if out, err := exec.Command("ip", append([]string{"netns", "exec", string(ns), "ethtool", "-K"}, args...)...).CombinedOutput(); err != nil {
						t.Fatalf("ethtool -K %v in %s: %v\n%s", args, ns, err, out)
					}
				}
				for _, dev := range []string{"ea", "eb"} {
					ethtool(l.engineNS, dev, "tx", "off")
				}
				for _, ns := range []netns{l.callerNS, l.calleeNS} {
					ethtool(ns, "p0", "rx", "off", "tx", senderOffload)
				}
				s, toA, toB := l.call(t, nil)
				exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB)
				waitPath(t, s, PathKernel)
				fwd0 := forwarded(l.e)
				exchange(t, l.caller, l.callee, toA, toB, 50, 2, 0xA, 0xB) // fails on a packet the receiver dropped
				if fwd := forwarded(l.e) - fwd0; fwd < 99 {
					t.Errorf("the kernel forwarded %d of 100 packets", fwd)
				}
				for _, ns := range []netns{l.callerNS, l.calleeNS} {
					if n := udpCsumErrors(t, ns, v6); n != 0 {
						t.Errorf("%s counted %d UDP checksum errors", ns, n)
					}
				}
			})
		}
	}
}

// udpCsumErrors is a namespace's UDP (or UDP6) InCsumErrors counter.
func udpCsumErrors(t *testing.T, ns netns, v6 bool) int {
	t.Helper()
	file, field := "/proc/net/snmp", "InCsumErrors"
	if v6 {
		file, field = "/proc/net/snmp6", "Udp6InCsumErrors"
	}
	out, err := exec.Command("ip", "netns", "exec", string(ns), "cat", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if v6 {
			if len(f) == 2 && f[0] == field {
				n, _ := strconv.Atoi(f[1])
				return n
			}
			continue
		}
		// "Udp: InDatagrams ... InCsumErrors ..." then "Udp: 1 2 ...".
		if len(f) > 0 && f[0] == "Udp:" && i+1 < len(lines) && slices.Contains(f, field) {
			vals := strings.Fields(lines[i+1])
			n, _ := strconv.Atoi(vals[slices.Index(f, field)])
			return n
		}
	}
	t.Fatalf("no %s in %s of %s", field, file, ns)
	return 0
}

// TestOffloadReinvite: a re-INVITE moves the callee's media to another
// port; its first packet from there re-latches in userspace (the kernel
// passes a new source up) and the call goes back on the kernel path towards
// the new address.
func TestOffloadReinvite(t *testing.T) {
	for _, mode := range testModes {
		for _, ssrc := range []uint32{0xB2, 0xB} {
			t.Run(fmt.Sprintf("fast_path=%s/ssrc=%#x", mode, ssrc), func(t *testing.T) { offloadReinvite(t, mode, ssrc) })
		}
	}
}

// offloadReinvite: the callee moves and speaks from there with ssrc (0xB
// is the one it had: a stream that goes on).
func offloadReinvite(t *testing.T, mode fastpath.Mode, ssrc uint32) {
	t.Helper()
	l := newOffloadLab(t, mode, nil)
	s, toA, toB := l.call(t, nil)
	exchange(t, l.caller, l.callee, toA, toB, 20, 1, 0xA, 0xB)
	waitPath(t, s, l.wantPath())

	moved := l.listen(t, l.calleeNS, l.calleeAddr)
	if _, err := s.Offer(SideA, sdpFor(l.caller, 2)); err != nil {
		t.Fatal(err)
	}
	if p := s.Stats().Legs[SideA].Path; p != PathUserspace {
		t.Errorf("with an offer pending the caller's leg is on %s, want userspace", p)
	}
	if _, err := s.Answer(SideB, sdpFor(moved, 2)); err != nil {
		t.Fatal(err)
	}
	// The callee speaks first from its new port.
	sendFirst(t, moved, l.caller, toB, ssrc)
	exchange(t, l.caller, moved, toA, toB, 1, 100, 0xA, ssrc)
	waitPath(t, s, l.wantPath())
	fwd0 := forwarded(l.e)
	exchange(t, l.caller, moved, toA, toB, 50, 200, 0xA, ssrc)
	if got := s.Stats().Legs[SideB].Remote; got != moved.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("leg B sends to %s, want the new port %s", got, moved.LocalAddr())
	}
	if fwd := forwarded(l.e) - fwd0; mode == fastpath.TC && fwd < 99 {
		t.Errorf("after the move the kernel forwarded %d of 100", fwd)
	}
	if _, _, err := tryRecv(l.callee, 100*time.Millisecond); err == nil {
		t.Error("the callee's old port still gets media")
	}
}

// sendFirst: b sends one packet to toB, which a must receive.
func sendFirst(t *testing.T, b, a *net.UDPConn, toB netip.AddrPort, ssrcB uint32) {
	t.Helper()
	pkt := rtpPacket(0, 1000, 160000, ssrcB)
	if _, err := b.WriteToUDPAddrPort(pkt, toB); err != nil {
		t.Fatal(err)
	}
	if got, _, err := tryRecv(a, 2*time.Second); err != nil || !bytes.Equal(got, pkt) {
		t.Fatalf("the first packet from the moved callee: %v", err)
	}
}

// TestOffloadNATRebind: the caller's NAT gives it a new source port
// mid-call; the kernel passes the new source up, the leg re-latches in
// userspace (inside the learning window, new SSRC as the engine wants it)
// and is offloaded again from the new source.
func TestOffloadNATRebind(t *testing.T) {
	for _, mode := range testModes {
		t.Run("fast_path="+string(mode), func(t *testing.T) {
			l := newOffloadLab(t, mode, nil)
			s, toA, toB := l.call(t, nil)
			exchange(t, l.caller, l.callee, toA, toB, 20, 1, 0xA, 0xB)
			waitPath(t, s, l.wantPath())
			rebound := l.listen(t, l.callerNS, l.callerAddr)
			exchange(t, rebound, l.callee, toA, toB, 1, 100, 0xA2, 0xB)
			if got := s.Stats().Legs[SideA].Remote; got != rebound.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("leg A latched %s, want the rebound %s", got, rebound.LocalAddr())
			}
			waitPath(t, s, l.wantPath())
			fwd0 := forwarded(l.e)
			exchange(t, rebound, l.callee, toA, toB, 50, 101, 0xA2, 0xB)
			if fwd := forwarded(l.e) - fwd0; mode == fastpath.TC && fwd < 99 {
				t.Errorf("after the rebind the kernel forwarded %d of 100", fwd)
			}
			if _, _, err := tryRecv(l.caller, 100*time.Millisecond); err == nil {
				t.Error("the caller's old port still gets media")
			}
		})
	}
}

// TestOffloadInactivity: media the kernel carries keeps the call alive
// (the engine reads the entries' last-seen time); silence still ends it.
func TestOffloadInactivity(t *testing.T) {
	for _, mode := range testModes {
		t.Run("fast_path="+string(mode), func(t *testing.T) {
			const timeout = 1200 * time.Millisecond
			l := newOffloadLab(t, mode, func(c *Config) { c.InactivityTimeout = timeout })
			var fired atomic.Int64
			s, toA, toB := l.call(t, func() { fired.Store(time.Now().UnixNano()) })
			exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB)
			waitPath(t, s, l.wantPath())
			start := time.Now()
			for seq := uint16(2); time.Since(start) < 2*timeout; seq++ {
				exchange(t, l.caller, l.callee, toA, toB, 1, seq, 0xA, 0xB)
				time.Sleep(20 * time.Millisecond)
			}
			if fired.Load() != 0 {
				t.Fatal("the inactivity timeout ended a call whose media flowed")
			}
			silent := time.Now()
			for fired.Load() == 0 && time.Since(silent) < 3*timeout {
				time.Sleep(20 * time.Millisecond)
			}
			if fired.Load() == 0 {
				t.Fatalf("a call silent for %s was not timed out", 3*timeout)
			}
			if d := time.Duration(fired.Load() - silent.UnixNano()); d < timeout-100*time.Millisecond {
				t.Errorf("timed out %s after the last packet, want ≥ %s", d, timeout)
			}
		})
	}
}

// TestOffloadFirewallClosed: a leg whose port the firewall's policy closes
// is not offloaded, so netfilter's drop holds for it: nothing the caller
// sends there reaches the callee. Both legs latch first (the namespace's
// nftables accepts until the rule goes in), so the session would qualify
// but for the policy: a port netfilter drops from the start never latches
// and could not show the check.
func TestOffloadFirewallClosed(t *testing.T) {
	var closed atomic.Int32 // the port the policy closes
	l := newOffloadLab(t, fastpath.TC, func(c *Config) {
		c.FastPathAllow = func(ap netip.AddrPort) bool { return int32(ap.Port()) != closed.Load() }
	})
	s := l.session(t, "fw", SecurityRTP, nil)
	offerToB, err := s.Offer(SideA, sdpFor(l.caller, 1))
	if err != nil {
		t.Fatal(err)
	}
	closed.Store(int32(s.Stats().Legs[SideA].Local.Port()))
	answerToA, err := s.Answer(SideB, sdpFor(l.callee, 1))
	if err != nil {
		t.Fatal(err)
	}
	toA, _ := mediaAddr(t, answerToA)
	toB, _ := mediaAddr(t, offerToB)
	if int32(toA.Port()) != closed.Load() {
		t.Fatalf("the caller sends to %s, not to its leg's port %d", toA, closed.Load())
	}
	exchange(t, l.caller, l.callee, toA, toB, 5, 1, 0xA, 0xB) // both legs latch, in userspace
	time.Sleep(50 * time.Millisecond)                         // time for the offloader, had it been queued
	st := s.Stats()
	if st.Legs[SideA].Path != PathUserspace || st.Legs[SideB].Path != PathUserspace || l.e.FastPath().Entries != 0 {
		t.Fatalf("legs on %s/%s with %d entries: the session with a closed port was offloaded",
			st.Legs[SideA].Path, st.Legs[SideB].Path, l.e.FastPath().Entries)
	}
	// The firewall of the engine's namespace closes that port now.
	nft := exec.Command("ip", "netns", "exec", string(l.engineNS), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(fmt.Sprintf("table inet umfw {\n chain input {\n  type filter hook input priority 0; policy accept;\n  udp dport %d drop\n }\n}\n", toA.Port()))
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	for i := range 20 {
		l.caller.WriteToUDPAddrPort(rtpPacket(0, uint16(10+i), 0, 0xA), toA) //nolint:gosec // small
	}
	if _, _, err := tryRecv(l.callee, 300*time.Millisecond); err == nil {
		t.Fatal("a packet to the port the firewall closes reached the callee")
	}
	if fwd := forwarded(l.e); fwd != 0 {
		t.Errorf("the kernel forwarded %d packets", fwd)
	}
}

// TestOffloadICENomination: on an ICE-lite leg the nominated pair sets the
// latch (a check with USE-CANDIDATE); a new nomination while the kernel
// carries the call moves the entries as a re-latch does, so the other
// side's media goes to the newly nominated address, not on to the old one.
func TestOffloadICENomination(t *testing.T) {
	l := newOffloadLab(t, fastpath.TC, nil)
	var s *Session
	var err error
	l.engineNS.do(t, func() {
		s, err = l.e.NewSession("ice", LegProfile{Local: l.aLocal}, LegProfile{Local: l.bLocal, Security: SecurityRTP}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ca := l.caller.LocalAddr().(*net.UDPAddr).AddrPort()
	offer := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio %[2]d RTP/AVP 0\r\n"+
		"a=ice-ufrag:peerufrag\r\na=ice-pwd:peerpasswordpeerpassword\r\na=candidate:1 1 udp 2130706431 %[1]s %[2]d typ host\r\n",
		ca.Addr(), ca.Port())
	offerToB, err := s.Offer(SideA, []byte(offer))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := s.Answer(SideB, sdpFor(l.callee, 1))
	if err != nil {
		t.Fatal(err)
	}
	toA, sd := mediaAddr(t, answer)
	toB, _ := mediaAddr(t, offerToB)
	ufrag, pwd := attr(sd, "ice-ufrag"), attr(sd, "ice-pwd")
	if len(ufrag) != 1 || len(pwd) != 1 {
		t.Fatalf("no ICE credentials in the answer:\n%s", answer)
	}
	nominate := func(c *net.UDPConn) {
		t.Helper()
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag[0]+":peerufrag"),
			ice.UseCandidate(), stun.NewShortTermIntegrity(pwd[0]), stun.Fingerprint)
		if _, err := c.WriteToUDPAddrPort(req.Raw, toA); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tryRecv(c, 2*time.Second); err != nil {
			t.Fatalf("the check from %s was not answered: %v", c.LocalAddr(), err)
		}
	}
	nominate(l.caller)
	exchange(t, l.caller, l.callee, toA, toB, 5, 1, 0xA, 0xB)
	waitPath(t, s, PathKernel)

	moved := l.listen(t, l.callerNS, l.callerAddr) // the agent nominates another pair
	nominate(moved)
	pkt := rtpPacket(0, 100, 16000, 0xB)
	l.callee.WriteToUDPAddrPort(pkt, toB)
	if got, _, err := tryRecv(moved, time.Second); err != nil || !bytes.Equal(got, pkt) {
		_, _, old := tryRecv(l.caller, 100*time.Millisecond)
		t.Fatalf("the callee's media did not reach the newly nominated address (%v; the old one got it: %v)", err, old == nil)
	}
	exchange(t, moved, l.callee, toA, toB, 5, 101, 0xA, 0xB)
	waitPath(t, s, PathKernel)
}

// TestOffloadNotEligible: a leg that needs payload work stays in userspace.
func TestOffloadNotEligible(t *testing.T) {
	l := newOffloadLab(t, fastpath.TC, nil)
	s, toA, toB := l.call(t, nil)
	exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB)
	waitPath(t, s, PathKernel)
	s.Attach(SideA, discard{}) // a recorder/player takes A's media
	if st := s.Stats(); st.Legs[SideA].Path != PathUserspace || st.Legs[SideB].Path != PathUserspace {
		t.Errorf("with a terminator attached the legs are on %s/%s, want userspace", st.Legs[SideA].Path, st.Legs[SideB].Path)
	}
	s.Attach(SideA, nil)
	waitPath(t, s, PathKernel)
	if st := l.e.FastPath(); st.Offloads != 2 || st.Removals != 1 || st.Offloaded != 1 {
		t.Errorf("fast path stats %+v, want 2 offloads, 1 removal, 1 session on it", st)
	}
}

type discard struct{}

func (discard) RTP([]byte)  {}
func (discard) RTCP([]byte) {}

// TestFastPathAbsent: where the program cannot attach (here: a namespace
// with no Ethernet interface), auto relays in userspace with one log line
// and a count, and tc refuses to start, naming the setting.
func TestFastPathAbsent(t *testing.T) {
	natLabAvailable(t)
	ns := netns(fmt.Sprintf("um-fn-%04x", rand.IntN(1<<16)))
	addNetns(t, ns)
	var logs strings.Builder
	var auto, tc *Engine
	var errAuto, errTC error
	ns.do(t, func() {
		base := 20000 + 2*rand.IntN(15000)
		cfg := Config{PortMin: base, PortMax: base + 15, Workers: 1, LatchWindow: time.Second, FastPath: fastpath.Auto}
		auto, errAuto = New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		cfg.FastPath = fastpath.TC
		tc, errTC = New(cfg, nil)
	})
	if errAuto != nil {
		t.Fatalf("auto without a usable interface: %v, want userspace", errAuto)
	}
	defer auto.Close()
	st := auto.FastPath()
	if st.Active || st.Unavail != 1 || !strings.Contains(st.Why, "no interface") {
		t.Errorf("auto: %+v, want inactive, counted once, saying why", st)
	}
	if n := strings.Count(logs.String(), "media fast path off"); n != 1 {
		t.Errorf("auto logged %d lines saying the fast path is off, want 1:\n%s", n, logs.String())
	}
	if errTC == nil {
		tc.Close()
		t.Fatal("tc without a usable interface started")
	}
	if !errors.Is(errTC, fastpath.ErrUnavailable) || !strings.Contains(errTC.Error(), `fast_path = "tc"`) {
		t.Errorf("tc: %v, want ErrUnavailable naming fast_path", errTC)
	}
	// A session on the engine that fell back relays as before.
	s, err := auto.NewSession("absent", plain, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p := s.Stats().Legs[SideA].Path; p != PathUserspace {
		t.Errorf("leg on %s, want userspace", p)
	}
}

// TestOffloadIdlePair: no kernel entry of an ended call's leg survives
// into the idle pool (one the session did not know of, as a removal that
// failed leaves it, included), and the next call on the reused pairs is
// carried by the kernel by its own entries.
func TestOffloadIdlePair(t *testing.T) {
	l := newOffloadLab(t, fastpath.TC, func(c *Config) { c.IdleQuarantine = 100 * time.Millisecond })
	s, toA, toB := l.call(t, nil)
	exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB)
	waitPath(t, s, PathKernel)
	var locals []netip.AddrPort
	for _, lg := range s.legs {
		locals = append(locals, lg.local(lg.rtp), lg.local(lg.rtcp))
	}
	// An entry the session does not hold: A's RTCP port, forwarding to the callee.
	stale := fastpath.Entry{Local: locals[1], Peer: l.caller.LocalAddr().(*net.UDPAddr).AddrPort(), Src: locals[3],
		Dst: l.callee.LocalAddr().(*net.UDPAddr).AddrPort(), Ifindex: 1, RTCP: true}
	if err := l.e.fp.path.Put(stale); err != nil {
		t.Fatal(err)
	}
	p := ports(s)
	s.Close()
	for _, local := range locals {
		if _, err := l.e.fp.path.Counters(local); err == nil {
			t.Errorf("a kernel entry for %s outlived its call into the idle pool", local)
		}
	}
	if st := l.e.Stats(); st.IdlePairs != 2 {
		t.Fatalf("%d idle pairs after the call, want 2", st.IdlePairs)
	}
	time.Sleep(150 * time.Millisecond)
	s2, toA2, toB2 := l.call(t, nil)
	if got := ports(s2); got != p {
		t.Fatalf("the next call got %v, want the idle pairs %v", got, p)
	}
	exchange(t, l.caller, l.callee, toA2, toB2, 1, 100, 0x1A, 0x1B)
	waitPath(t, s2, PathKernel)
	exchange(t, l.caller, l.callee, toA2, toB2, 20, 101, 0x1A, 0x1B)
	if st := s2.Stats(); st.Legs[SideA].PacketsIn != 21 || st.Legs[SideB].PacketsIn != 21 {
		t.Errorf("the call on reused pairs counted %d and %d packets in, want 21 each", st.Legs[SideA].PacketsIn, st.Legs[SideB].PacketsIn)
	}
	s2.Close()
	if n := l.e.FastPath().Entries; n != 0 {
		t.Errorf("%d entries left after the calls ended", n)
	}
}

// TestOffloadT38InPlace: a call the kernel carries, switched to T.38 in the
// audio m-line's place on the same sockets, leaves the kernel path (its
// program knows RTP only) and relays UDPTL in userspace; back to audio it
// goes back on the kernel path.
func TestOffloadT38InPlace(t *testing.T) {
	for _, mode := range testModes {
		t.Run(fmt.Sprintf("fast_path=%s", mode), func(t *testing.T) {
			l := newOffloadLab(t, mode, nil)
			s, toA, toB := l.call(t, nil)
			exchange(t, l.caller, l.callee, toA, toB, 20, 1, 0xA, 0xB)
			waitPath(t, s, l.wantPath())
			image := func(c *net.UDPConn) []byte {
				ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
				return desc(ap.Addr(), fmt.Sprintf("m=image %d udptl t38\r\n", ap.Port())+t38Attrs)
			}
			if _, err := s.Offer(SideB, image(l.callee)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Answer(SideA, image(l.caller)); err != nil {
				t.Fatal(err)
			}
			fwd0 := forwarded(l.e)
			for seq := range uint16(20) {
				crosses(t, l.caller, udptlPacket(seq), toA, l.callee, toB)
				crosses(t, l.callee, udptlPacket(seq), toB, l.caller, toA)
			}
			if fwd := forwarded(l.e) - fwd0; fwd != 0 {
				t.Errorf("the kernel forwarded %d UDPTL datagrams", fwd)
			}
			if st := s.Stats(); st.Legs[SideA].Path != PathUserspace || st.Legs[SideB].Path != PathUserspace || st.Streams[0].Proto != "udptl" {
				t.Errorf("T.38 on %s/%s as %s", st.Legs[SideA].Path, st.Legs[SideB].Path, st.Streams[0].Proto)
			}
			if _, err := s.Offer(SideA, sdpFor(l.caller, 3)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Answer(SideB, sdpFor(l.callee, 3)); err != nil {
				t.Fatal(err)
			}
			exchange(t, l.caller, l.callee, toA, toB, 20, 100, 0xA, 0xB)
			waitPath(t, s, l.wantPath())
		})
	}
}
