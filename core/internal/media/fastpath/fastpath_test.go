package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The program itself, run by the kernel on crafted packets
// (BPF_PROG_TEST_RUN) in a network namespace of the test with one veth
// pair: fp0 has 10.77.0.1/24 and fd77::1/64, its neighbours 10.77.0.2, .3 and
// fd77::2, ::3 with fixed MACs.

var (
	local4 = netip.MustParseAddrPort("10.77.0.1:40000")
	peer4  = netip.MustParseAddrPort("10.77.0.2:5004")
	src4   = netip.MustParseAddrPort("10.77.0.1:40002")
	dst4   = netip.MustParseAddrPort("10.77.0.3:6000")
	local6 = netip.MustParseAddrPort("[fd77::1]:40000")
	peer6  = netip.MustParseAddrPort("[fd77::2]:5004")
	src6   = netip.MustParseAddrPort("[fd77::1]:40002")
	dst6   = netip.MustParseAddrPort("[fd77::3]:6000")
	macDst = net.HardwareAddr{2, 0, 0, 0, 0, 3}
)

// labTOS is the TOS byte of the lab's entries (DSCP EF); the crafted
// packets come marked otherwise (peerTOS: AF11 and ECN CE).
const labTOS, peerTOS = 46 << 2, 10<<2 | 3

const (
	actNext     = 0xffffffff // TC_ACT_UNSPEC (-1), TCX_NEXT: on to the next program or the stack
	actRedirect = 7          // TC_ACT_REDIRECT
)

// lab is the namespace, the loaded program and the veth's index.
type lab struct {
	p       *Path
	ifindex int
}

// requireBPF skips a test that cannot load BPF programs here, saying why.
func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs and making network namespaces needs root")
	}
}

// newLab locks the test's goroutine to a thread in a new network namespace
// (the thread is never given back: the goroutine ends locked) and loads
// the program there.
func newLab(t *testing.T, forwarding bool) *lab {
	t.Helper()
	requireBPF(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { _ = netns.Set(orig); ns.Close(); orig.Close() })
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fp0"}, PeerName: "fp1"}))
	peer, err := netlink.LinkByName("fp1")
	must(t, err)
	must(t, netlink.LinkSetUp(peer))
	l, err := netlink.LinkByName("fp0")
	must(t, err)
	must(t, netlink.LinkSetUp(l))
	for _, a := range []string{"10.77.0.1/24", "fd77::1/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = 0x02 // IFA_F_NODAD
		must(t, netlink.AddrAdd(l, addr))
	}
	for _, n := range []string{"10.77.0.2", "10.77.0.3", "fd77::2", "fd77::3"} {
		ip := net.ParseIP(n)
		fam := netlink.FAMILY_V4
		if ip.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		must(t, netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: macDst}))
	}
	fw := "0"
	if forwarding {
		fw = "1"
	}
	for _, f := range []string{"/proc/sys/net/ipv4/conf/fp0/forwarding", "/proc/sys/net/ipv6/conf/fp0/forwarding"} {
		must(t, os.WriteFile(f, []byte(fw), 0o644)) //nolint:gosec // a sysctl
	}
	p, err := Load(0)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	lb := &lab{p: p, ifindex: l.Attrs().Index}
	for _, e := range []Entry{
		{Local: local4, Peer: peer4, Src: src4, Dst: dst4, PayloadTypes: ptMask(0, 8, 101), Ifindex: lb.ifindex, TOS: labTOS},
		{Local: local6, Peer: peer6, Src: src6, Dst: dst6, PayloadTypes: ptMask(0, 8, 101), Ifindex: lb.ifindex, TOS: labTOS},
		{Local: rtcpOf(local4), Peer: rtcpOf(peer4), Src: rtcpOf(src4), Dst: rtcpOf(dst4), RTCP: true, Ifindex: lb.ifindex, TOS: labTOS},
	} {
		must(t, p.Put(e))
	}
	return lb
}

func rtcpOf(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr(), ap.Port()+1) }

func ptMask(pts ...int) (m [2]uint64) {
	for _, pt := range pts {
		m[pt>>6] |= 1 << (pt & 63)
	}
	return m
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// run gives pkt to the program as received on the veth and returns the
// verdict and the packet as the program left it.
func (l *lab) run(t *testing.T, pkt []byte) (uint32, []byte) {
	t.Helper()
	ctx := make([]byte, 192)                                   // struct __sk_buff
	binary.NativeEndian.PutUint32(ctx[36:], uint32(l.ifindex)) //nolint:gosec // ingress_ifindex
	binary.NativeEndian.PutUint32(ctx[40:], uint32(l.ifindex)) //nolint:gosec // ifindex
	out := make([]byte, len(pkt)+256)
	ret, err := l.p.Program().Run(&ebpf.RunOptions{Data: pkt, DataOut: out, Context: ctx})
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, out[:len(pkt)]
}

func (l *lab) reason(name string) uint64 {
	r := l.p.Reasons()
	for i, n := range Reasons {
		if n == name {
			return r[i]
		}
	}
	panic("no reason " + name)
}

// udpPacket builds an Ethernet frame with a UDP datagram from src to dst,
// checksums right, the given IPv4 TTL / IPv6 hop limit.
type pktOpts struct {
	ttl      uint8
	frag     uint16 // IPv4 flags+offset field
	options  bool   // IPv4: one 4-byte NOP option
	proto    uint8
	udpLen   int // 0 = right
	ipLen    int // IPv4 total length, IPv6 payload length; 0 = right
	version  uint8
	noCsum   bool
	fragHdr6 bool
	tos      uint8  // IPv4 TOS, IPv6 traffic class; 0 = peerTOS
	flow     uint32 // IPv6 flow label; 0 = 0xabcde
}

func udpPacket(src, dst netip.AddrPort, payload []byte, o pktOpts) []byte {
	if o.ttl == 0 {
		o.ttl = 64
	}
	if o.proto == 0 {
		o.proto = 17
	}
	if o.tos == 0 {
		o.tos = peerTOS
	}
	if o.flow == 0 {
		o.flow = 0xabcde
	}
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	ulen := len(udp)
	if o.udpLen != 0 {
		ulen = o.udpLen
	}
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen)) //nolint:gosec // test sizes
	copy(udp[8:], payload)
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0, 0}
	if src.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		hl := 20
		if o.options {
			hl = 24
		}
		ip := make([]byte, hl)
		if o.version == 0 {
			o.version = 4
		}
		ip[0] = o.version<<4 | byte(hl/4)
		ip[1] = o.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(udp))) //nolint:gosec // test sizes
		if o.ipLen != 0 {
			binary.BigEndian.PutUint16(ip[2:], uint16(o.ipLen)) //nolint:gosec // test sizes
		}
		binary.BigEndian.PutUint16(ip[6:], o.frag)
		ip[8], ip[9] = o.ttl, o.proto
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		if o.options {
			copy(ip[20:], []byte{1, 1, 1, 0})
		}
		binary.BigEndian.PutUint16(ip[10:], ^sum16(0, ip))
		if !o.noCsum {
			binary.BigEndian.PutUint16(udp[6:], udpCsum(ip[12:20], udp))
		}
		return append(append(eth, ip...), udp...)
	}
	binary.BigEndian.PutUint16(eth[12:], 0x86dd)
	ip := make([]byte, 40)
	if o.version == 0 {
		o.version = 6
	}
	binary.BigEndian.PutUint32(ip[0:], uint32(o.version)<<28|uint32(o.tos)<<20|o.flow&0xfffff)
	binary.BigEndian.PutUint16(ip[4:], uint16(len(udp))) //nolint:gosec // test sizes
	if o.ipLen != 0 {
		binary.BigEndian.PutUint16(ip[4:], uint16(o.ipLen)) //nolint:gosec // test sizes
	}
	ip[6], ip[7] = o.proto, o.ttl
	if o.fragHdr6 {
		ip[6] = 44
	}
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	if !o.noCsum {
		binary.BigEndian.PutUint16(udp[6:], udpCsum(ip[8:40], udp))
	}
	return append(append(eth, ip...), udp...)
}

// sum16 is the one's-complement sum of b's 16-bit words added to s.
func sum16(s uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s) //nolint:gosec // folded
}

// udpCsum is the UDP checksum over the pseudo header of addrs (source and
// destination back to back) and the datagram with its checksum field 0.
func udpCsum(addrs, udp []byte) uint16 {
	c := bytes.Clone(udp)
	c[6], c[7] = 0, 0
	s := uint32(sum16(0, addrs)) + 17 + uint32(len(udp)) //nolint:gosec // test sizes
	v := ^sum16(s, c)
	if v == 0 {
		v = 0xffff
	}
	return v
}

func rtp(pt byte) []byte {
	b := make([]byte, 172)
	b[0], b[1] = 0x80, pt
	for i := 12; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// checkRewritten verifies that out is in rewritten to from → to with TTL
// one less, checksums right and the payload untouched.
// With wantMAC (the FIB resolved the next hop) the program wrote the
// neighbour's MAC itself; otherwise bpf_redirect_neigh does on the way out.
func checkRewritten(t *testing.T, in, out []byte, from, to netip.AddrPort, wantMAC bool) {
	t.Helper()
	var ipOff, udpOff = 14, 34
	v6 := from.Addr().Is6()
	if v6 {
		udpOff = 54
	}
	udp := out[udpOff:]
	if got := netip.AddrPortFrom(from.Addr(), binary.BigEndian.Uint16(udp[0:])); got != from {
		t.Errorf("source port %d, want %d", got.Port(), from.Port())
	}
	if p := binary.BigEndian.Uint16(udp[2:]); p != to.Port() {
		t.Errorf("destination port %d, want %d", p, to.Port())
	}
	if !bytes.Equal(udp[8:], in[udpOff+8:]) {
		t.Error("the payload changed")
	}
	if wantMAC && !bytes.Equal(out[0:6], macDst) {
		t.Errorf("destination MAC %x, want the neighbour's %s", out[0:6], macDst)
	}
	ip := out[ipOff:udpOff]
	if v6 {
		s, _ := netip.AddrFromSlice(ip[8:24])
		d, _ := netip.AddrFromSlice(ip[24:40])
		if s != from.Addr() || d != to.Addr() {
			t.Errorf("addresses %s → %s, want %s → %s", s, d, from.Addr(), to.Addr())
		}
		if ip[7] != in[ipOff+7]-1 {
			t.Errorf("hop limit %d, want %d", ip[7], in[ipOff+7]-1)
		}
		vtf, ivtf := binary.BigEndian.Uint32(ip[0:]), binary.BigEndian.Uint32(in[ipOff:])
		if tc := uint8(vtf >> 20); vtf>>28 != 6 || tc != labTOS || vtf&0xfffff != ivtf&0xfffff { //nolint:gosec // 8 bits
			t.Errorf("version %d, traffic class %#02x, flow label %#05x; want 6, the entry's %#02x, the packet's %#05x", vtf>>28, tc, vtf&0xfffff, labTOS, ivtf&0xfffff)
		}
		if got, want := binary.BigEndian.Uint16(udp[6:]), udpCsum(ip[8:40], udp); got != want {
			t.Errorf("UDP checksum %#04x, want %#04x", got, want)
		}
		return
	}
	s, _ := netip.AddrFromSlice(ip[12:16])
	d, _ := netip.AddrFromSlice(ip[16:20])
	if s != from.Addr() || d != to.Addr() {
		t.Errorf("addresses %s → %s, want %s → %s", s, d, from.Addr(), to.Addr())
	}
	if ip[8] != in[ipOff+8]-1 {
		t.Errorf("TTL %d, want %d", ip[8], in[ipOff+8]-1)
	}
	if ip[0] != in[ipOff] || ip[1] != labTOS {
		t.Errorf("version/IHL %#02x, TOS %#02x; want %#02x, the entry's %#02x", ip[0], ip[1], in[ipOff], labTOS)
	}
	if sum16(0, ip) != 0xffff {
		t.Errorf("IPv4 header checksum %#04x is wrong", binary.BigEndian.Uint16(ip[10:]))
	}
	got := binary.BigEndian.Uint16(udp[6:])
	if orig := binary.BigEndian.Uint16(in[udpOff+6:]); orig == 0 {
		if got != 0 {
			t.Errorf("UDP checksum %#04x, want 0 (none) as it came", got)
		}
		return
	}
	if want := udpCsum(ip[12:20], udp); got != want {
		t.Errorf("UDP checksum %#04x, want %#04x", got, want)
	}
}

func TestProgramForwards(t *testing.T) {
	for _, fwd := range []bool{true, false} {
		name := "host forwards"
		if !fwd {
			name = "host does not forward" // bpf_fib_lookup says FWD_DISABLED
		}
		t.Run(name, func(t *testing.T) {
			l := newLab(t, fwd)
			cases := []struct {
				name             string
				pkt              []byte
				from, to, local  netip.AddrPort
				payload, packets uint64
			}{
				{"IPv4 RTP", udpPacket(peer4, local4, rtp(0), pktOpts{}), src4, dst4, local4, 172, 1},
				{"IPv4 RTP without UDP checksum", udpPacket(peer4, local4, rtp(8), pktOpts{noCsum: true}), src4, dst4, local4, 172, 2},
				{"IPv4 RTCP multiplexed on the RTP port", udpPacket(peer4, local4, []byte{0x81, 200, 0, 6, 1, 2, 3, 4}, pktOpts{}), src4, dst4, local4, 8, 3},
				{"IPv4 RTCP port", udpPacket(rtcpOf(peer4), rtcpOf(local4), []byte{0x81, 201, 0, 1, 1, 2, 3, 4}, pktOpts{}), rtcpOf(src4), rtcpOf(dst4), rtcpOf(local4), 8, 1},
				{"IPv6 RTP", udpPacket(peer6, local6, rtp(101), pktOpts{}), src6, dst6, local6, 172, 1},
			}
			for _, c := range cases {
				ret, out := l.run(t, c.pkt)
				if ret != actRedirect {
					t.Errorf("%s: verdict %d, want TC_ACT_REDIRECT; reasons %v", c.name, ret, l.p.Reasons())
					continue
				}
				checkRewritten(t, c.pkt, out, c.from, c.to, fwd)
				cnt, err := l.p.Counters(c.local)
				if err != nil {
					t.Fatal(err)
				}
				if cnt.Packets != c.packets || cnt.Last.IsZero() {
					t.Errorf("%s: counters %+v, want %d packets and a last-seen time", c.name, cnt, c.packets)
				}
			}
			if got := l.reason("forwarded"); got != uint64(len(cases)) {
				t.Errorf("forwarded %d, want %d", got, len(cases))
			}
			if c, _ := l.p.Counters(local4); c.Bytes != 172+172+8 {
				t.Errorf("IPv4 RTP entry counted %d payload bytes, want %d", c.Bytes, 172+172+8)
			}
		})
	}
}

// TestProgramPasses: everything that is not a latched peer's RTP/RTCP on an
// offloaded port reaches the stack unchanged, counted under its reason.
func TestProgramPasses(t *testing.T) {
	l := newLab(t, true)
	other := netip.MustParseAddrPort("10.77.0.9:5004")
	cases := []struct {
		name, reason string
		pkt          []byte
	}{
		{"a port not offloaded", "miss", udpPacket(peer4, netip.AddrPortFrom(local4.Addr(), 40010), rtp(0), pktOpts{})},
		{"another source address", "wrong_source", udpPacket(other, local4, rtp(0), pktOpts{})},
		{"the latched address, another port (NAT rebind)", "wrong_source", udpPacket(netip.AddrPortFrom(peer4.Addr(), 5006), local4, rtp(0), pktOpts{})},
		{"IPv6 from another source", "wrong_source", udpPacket(netip.MustParseAddrPort("[fd77::9]:5004"), local6, rtp(0), pktOpts{})},
		{"a first fragment", "fragment", udpPacket(peer4, local4, rtp(0), pktOpts{frag: 0x2000})},
		{"a later fragment", "fragment", udpPacket(peer4, local4, rtp(0), pktOpts{frag: 0x0010})},
		{"IPv6 fragment header", "fragment", udpPacket(peer6, local6, rtp(0), pktOpts{fragHdr6: true})},
		{"IP options", "ip_options", udpPacket(peer4, local4, rtp(0), pktOpts{options: true})},
		{"TCP", "not_udp", udpPacket(peer4, local4, rtp(0), pktOpts{proto: 6})},
		{"UDP shorter than an RTCP header", "short", udpPacket(peer4, local4, []byte{0x80, 0, 0, 1}, pktOpts{})},
		{"RTP shorter than its header", "short", udpPacket(peer4, local4, []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, pktOpts{})},
		{"UDP length beyond the IP packet", "short", udpPacket(peer4, local4, rtp(0), pktOpts{udpLen: 400})},
		// Lengths beyond the frame, which the stack drops as truncated
		// (the kernel forwarding them counted bytes nobody sent).
		{"IPv4 and UDP lengths beyond the frame", "short", udpPacket(peer4, local4, rtp(0), pktOpts{udpLen: 1008, ipLen: 1028})},
		{"IPv4 total length beyond the frame", "short", udpPacket(peer4, local4, rtp(0), pktOpts{ipLen: 1028})},
		{"IPv6 and UDP lengths beyond the frame", "short", udpPacket(peer6, local6, rtp(0), pktOpts{udpLen: 1008, ipLen: 1008})},
		{"IPv6 UDP without a checksum", "no_checksum", udpPacket(peer6, local6, rtp(0), pktOpts{noCsum: true})},
		{"an IPv4 frame with an IPv6 header version", "not_ip", udpPacket(peer4, local4, rtp(0), pktOpts{version: 6})},
		{"an IPv6 frame with an IPv4 header version", "not_ip", udpPacket(peer6, local6, rtp(0), pktOpts{version: 4})},
		{"STUN", "not_rtp", udpPacket(peer4, local4, append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), pktOpts{})},
		{"a payload type the answer did not name", "payload_type", udpPacket(peer4, local4, rtp(18), pktOpts{})},
		{"TTL 1", "ttl", udpPacket(peer4, local4, rtp(0), pktOpts{ttl: 1})},
	}
	for _, c := range cases {
		before := l.reason(c.reason)
		ret, out := l.run(t, c.pkt)
		if ret != actNext {
			t.Errorf("%s: verdict %d, want TC_ACT_UNSPEC (next)", c.name, ret)
		}
		if !bytes.Equal(out, c.pkt) {
			t.Errorf("%s: the packet was changed", c.name)
		}
		if got := l.reason(c.reason); got != before+1 {
			t.Errorf("%s: reason %s counted %d, want %d (reasons %v)", c.name, c.reason, got, before+1, l.p.Reasons())
		}
	}
	if got := l.reason("forwarded"); got != 0 {
		t.Errorf("forwarded %d packets, want none", got)
	}
	if c, _ := l.p.Counters(local4); c.Packets != 0 {
		t.Errorf("the entry counted %d packets it did not forward", c.Packets)
	}
}

func TestProgramNoRoute(t *testing.T) {
	l := newLab(t, true)
	far := netip.MustParseAddrPort("192.0.2.50:6000") // TEST-NET-1, no route in the lab
	must(t, l.p.Put(Entry{Local: local4, Peer: peer4, Src: src4, Dst: far, PayloadTypes: ptMask(0)}))
	pkt := udpPacket(peer4, local4, rtp(0), pktOpts{})
	if ret, out := l.run(t, pkt); ret != actNext || !bytes.Equal(out, pkt) {
		t.Errorf("verdict %d, want TC_ACT_UNSPEC (next) with the packet unchanged", ret)
	}
	if l.reason("no_route") != 1 {
		t.Errorf("reasons %v, want one no_route", l.p.Reasons())
	}
}

func TestEntryLifecycle(t *testing.T) {
	l := newLab(t, true)
	if n := l.p.Entries(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	// Take removes an entry with its last counters in one step.
	if ret, _ := l.run(t, udpPacket(rtcpOf(peer4), rtcpOf(local4), []byte{0x81, 201, 0, 1, 1, 2, 3, 4}, pktOpts{})); ret != actRedirect {
		t.Fatalf("RTCP entry: verdict %d, want a redirect", ret)
	}
	if c, err := l.p.Take(rtcpOf(local4)); err != nil || c.Packets != 1 || c.Bytes != 8 {
		t.Errorf("Take: %+v, %v; want 1 packet of 8 bytes", c, err)
	}
	if _, err := l.p.Take(rtcpOf(local4)); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("a second Take: %v, want ErrKeyNotExist", err)
	}
	must(t, l.p.Delete(local4))
	must(t, l.p.Delete(local4)) // twice: not an error
	if _, err := l.p.Counters(local4); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("counters of a deleted entry: %v, want ErrKeyNotExist", err)
	}
	pkt := udpPacket(peer4, local4, rtp(0), pktOpts{})
	if ret, _ := l.run(t, pkt); ret != actNext {
		t.Errorf("a deleted entry still forwards (verdict %d)", ret)
	}
	if err := l.p.Put(Entry{Local: local4, Peer: peer6, Src: src4, Dst: dst4}); !errors.Is(err, ErrFamily) {
		t.Errorf("an entry mixing IPv4 and IPv6: %v, want ErrFamily", err)
	}
}

func TestAttach(t *testing.T) {
	l := newLab(t, true)
	n, err := l.p.AttachAll(nil)
	if err != nil || n != 2 {
		t.Fatalf("AttachAll: %d, %v; want the veth", n, err)
	}
	if got := l.p.Attached()[l.ifindex]; got != "tcx" {
		t.Errorf("attached by %q, want tcx on this kernel", got)
	}
	must(t, l.p.Attach(l.ifindex)) // again: a no-op
	if idx, err := l.p.Route(dst4.Addr()); err != nil || idx != l.ifindex {
		t.Errorf("Route(%s) = %d, %v; want %d", dst4.Addr(), idx, err, l.ifindex)
	}
	// The clsact fallback, as on a kernel without TCX.
	lb := &Path{objs: l.p.objs, ns: l.p.ns}
	var f *netlink.BpfFilter
	must(t, lb.inNS(func() (err error) { f, err = lb.attachClsact(l.ifindex); return err }))
	lnk, _ := netlink.LinkByIndex(l.ifindex)
	fs, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_INGRESS)
	if err != nil || len(fs) != 1 {
		t.Fatalf("clsact ingress filters %v, %v; want ours", fs, err)
	}
	must(t, lb.detach(l.ifindex, attachment{filter: f}))
	must(t, l.p.Close())
	if a := l.p.Attached(); len(a) != 0 {
		t.Errorf("still attached after Close: %v", a)
	}
}

// TestObjectCurrent fails when the committed object is not what `make bpf`
// builds from fastpath.c (only where clang is installed: CI needs none).
func TestObjectCurrent(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed: the committed object is not rebuilt (make bpf installs it)")
	}
	if testing.Short() {
		t.Skip("rebuilds the object: not in -short")
	}
	dir := t.TempDir()
	arch, err := exec.Command("uname", "-m").Output()
	must(t, err)
	cmd := exec.Command("go", "tool", "bpf2go", "-output-dir", dir, "-target", "bpfel", "-type", "fp_key", "-type", "fp_fwd",
		"bpf", "fastpath.c", "--", "-O2", "-g", "-Wall", "-Werror", "-I/usr/include/"+string(bytes.TrimSpace(arch))+"-linux-gnu")
	cmd.Env = append(os.Environ(), "GOPACKAGE=fastpath")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}
	for _, f := range []string{"bpf_bpfel.o", "bpf_bpfel.go"} {
		built, err := os.ReadFile(filepath.Join(dir, f))
		must(t, err)
		committed, err := os.ReadFile(f)
		must(t, err)
		if !bytes.Equal(built, committed) {
			t.Errorf("%s is stale: run make bpf and commit it", f)
		}
	}
}

// The program goes only on the interfaces that hold a media address: an
// engine on loopback attaches to nothing, one on 10.77.0.1 to fp0 and not
// to fp1 beside it.
func TestAttachOnlyMediaInterfaces(t *testing.T) {
	l := newLab(t, true)
	if n, err := l.p.AttachAll([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}); err != nil || n != 0 {
		t.Fatalf("AttachAll(loopback) = %d, %v; want none", n, err)
	}
	if n, err := l.p.AttachAll([]netip.Addr{netip.MustParseAddr("10.77.0.1")}); err != nil || n != 1 {
		t.Fatalf("AttachAll(10.77.0.1) = %d, %v; want fp0 only", n, err)
	}
	if a := l.p.Attached(); len(a) != 1 || a[l.ifindex] == "" {
		t.Errorf("attached to %v, want only fp0 (index %d)", a, l.ifindex)
	}
}

// TestProgramChecksumComplete: a NIC that hands the stack CHECKSUM_COMPLETE
// (skb->csum is the sum of the packet after the Ethernet header) gets back a
// packet whose skb->csum still matches its bytes after the rewrite; a wrong
// one is a "hw csum failure" (a kernel warning with a stack trace, and the
// checksum done again in software) wherever the packet is received again,
// as after a redirect into a veth. BPF_F_TEST_SKB_CHECKSUM_COMPLETE (Linux
// 6.16) makes BPF_PROG_TEST_RUN set skb->csum before the run and check it
// after (EBADMSG when it is wrong).
func TestProgramChecksumComplete(t *testing.T) {
	const testSkbChecksumComplete = 1 << 2
	l := newLab(t, true)
	// The lab's IPv6 entry changes the address sum by exactly what the
	// hop limit takes away, which hides a wrong skb->csum: this one does not.
	local6b, peer6b, dst6b := netip.AddrPortFrom(local6.Addr(), 40004), netip.AddrPortFrom(dst6.Addr(), 5004), netip.AddrPortFrom(peer6.Addr(), 6000)
	must(t, l.p.Put(Entry{Local: local6b, Peer: peer6b, Src: src6, Dst: dst6b, PayloadTypes: ptMask(0), Ifindex: l.ifindex, TOS: labTOS}))
	cases := []struct {
		name string
		pkt  []byte
		from netip.AddrPort
		to   netip.AddrPort
	}{
		{"IPv4", udpPacket(peer4, local4, rtp(0), pktOpts{}), src4, dst4},
		{"IPv4 without UDP checksum", udpPacket(peer4, local4, rtp(0), pktOpts{noCsum: true}), src4, dst4},
		{"IPv4 RTCP", udpPacket(rtcpOf(peer4), rtcpOf(local4), []byte{0x81, 201, 0, 1, 1, 2, 3, 4}, pktOpts{}), rtcpOf(src4), rtcpOf(dst4)},
		{"IPv6", udpPacket(peer6, local6, rtp(0), pktOpts{}), src6, dst6},
		{"IPv6, other addresses", udpPacket(peer6b, local6b, rtp(0), pktOpts{ttl: 9}), src6, dst6b},
	}
	for _, c := range cases {
		ctx := make([]byte, 192)
		binary.NativeEndian.PutUint32(ctx[36:], uint32(l.ifindex)) //nolint:gosec // ingress_ifindex
		binary.NativeEndian.PutUint32(ctx[40:], uint32(l.ifindex)) //nolint:gosec // ifindex
		out := make([]byte, len(c.pkt)+256)
		ret, err := l.p.Program().Run(&ebpf.RunOptions{Data: c.pkt, DataOut: out, Context: ctx, Flags: testSkbChecksumComplete})
		if errors.Is(err, unix.EINVAL) {
			t.Skip("this kernel's BPF_PROG_TEST_RUN has no BPF_F_TEST_SKB_CHECKSUM_COMPLETE (6.16)")
		}
		if err != nil {
			t.Errorf("%s: skb->csum after the rewrite: %v (EBADMSG: it no longer matches the packet)", c.name, err)
			continue
		}
		if ret != actRedirect {
			t.Errorf("%s: verdict %d, want TC_ACT_REDIRECT; reasons %v", c.name, ret, l.p.Reasons())
			continue
		}
		checkRewritten(t, c.pkt, out[:len(c.pkt)], c.from, c.to, true)
	}
}

// TestCountersLastAfterClockStep: the last-seen time of an entry is on the
// wall clock as it is when the counters are read, not as it was when the
// program was loaded: a clock stepped after the start (NTP setting the
// clock of a box without an RTC) would otherwise put every kernel-carried
// packet that far in the past, and the inactivity timeout would end every
// call on the kernel path (or, stepped back, none).
func TestCountersLastAfterClockStep(t *testing.T) {
	l := newLab(t, true)
	for _, step := range []time.Duration{time.Hour, -time.Hour} {
		l.p.now = func() time.Time { return time.Now().Add(step) }
		if ret, _ := l.run(t, udpPacket(peer4, local4, rtp(0), pktOpts{})); ret != actRedirect {
			t.Fatalf("verdict %d, want TC_ACT_REDIRECT", ret)
		}
		c, err := l.p.Counters(local4)
		must(t, err)
		if d := l.p.now().Sub(c.Last); d < 0 || d > 5*time.Second {
			t.Errorf("clock stepped by %s: the packet just forwarded was seen %s ago", step, d)
		}
	}
}

// TestRemoveStale: the clsact filter of a process that died stays on the
// interface with its program (the filter holds it); RemoveStale takes it
// away and leaves other filters alone.
func TestRemoveStale(t *testing.T) {
	l := newLab(t, true)
	lb := &Path{objs: l.p.objs, ns: l.p.ns}
	must(t, lb.inNS(func() (err error) { _, err = lb.attachClsact(l.ifindex); return err }))
	other := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: l.ifindex, Parent: netlink.HANDLE_MIN_INGRESS, Handle: 2, Protocol: unix.ETH_P_ALL, Priority: 2},
		Fd:          l.p.objs.UmedgeFastpath.FD(), Name: "someone_else", DirectAction: true,
	}
	must(t, netlink.FilterAdd(other))
	must(t, l.p.objs.Close()) // the process's descriptors go, as when it dies
	lnk, err := netlink.LinkByIndex(l.ifindex)
	must(t, err)
	if fs, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_INGRESS); err != nil || len(fs) != 2 {
		t.Fatalf("filters after the process's descriptors closed: %v, %v; want ours and the other", fs, err)
	}
	n, err := RemoveStale()
	if err != nil || n != 1 {
		t.Fatalf("RemoveStale = %d, %v; want 1", n, err)
	}
	fs, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_INGRESS)
	must(t, err)
	if len(fs) != 1 || fs[0].(*netlink.BpfFilter).Name != "someone_else" {
		t.Errorf("filters left: %v, want only the other one", fs)
	}
	if n, err := RemoveStale(); err != nil || n != 0 {
		t.Errorf("RemoveStale again = %d, %v; want 0", n, err)
	}
}

// Snapshot reads every entry, in batches (more entries than one batch
// holds here, IPv4 and IPv6), with the counters Counters reads one by one.
func TestSnapshot(t *testing.T) {
	l := newLab(t, true)
	const extra = 3*snapshotBatch + 17
	for i := range extra {
		local := netip.AddrPortFrom(local4.Addr(), uint16(20000+2*i)) //nolint:gosec // small
		if i%2 == 1 {
			local = netip.AddrPortFrom(local6.Addr(), uint16(20000+2*i)) //nolint:gosec // small
		}
		peer, src, dst := peer4, src4, dst4
		if i%2 == 1 {
			peer, src, dst = peer6, src6, dst6
		}
		must(t, l.p.Put(Entry{Local: local, Peer: peer, Src: src, Dst: dst, PayloadTypes: ptMask(0), Ifindex: l.ifindex}))
	}
	for range 3 {
		if ret, _ := l.run(t, udpPacket(peer4, local4, rtp(0), pktOpts{})); ret != actRedirect {
			t.Fatalf("verdict %d, want a redirect", ret)
		}
	}
	if ret, _ := l.run(t, udpPacket(peer6, local6, rtp(8), pktOpts{})); ret != actRedirect {
		t.Fatalf("verdict %d, want a redirect", ret)
	}
	snap := Snapshot{netip.MustParseAddrPort("192.0.2.1:1"): {}} // emptied first
	must(t, l.p.Snapshot(snap))
	if len(snap) != extra+3 {
		t.Fatalf("snapshot of %d entries, want %d", len(snap), extra+3)
	}
	for local := range snap {
		want, err := l.p.Counters(local)
		must(t, err)
		got, _ := snap.Get(local)
		if got.Packets != want.Packets || got.Bytes != want.Bytes || got.Last.Sub(want.Last).Abs() > time.Second {
			t.Errorf("%s: snapshot %+v, Counters %+v", local, got, want)
		}
	}
	if c, ok := snap.Get(local4); !ok || c.Packets != 3 || c.Last.IsZero() {
		t.Errorf("%s: %+v, %v; want 3 packets and a last time", local4, c, ok)
	}
	if c, ok := snap.Get(netip.AddrPortFrom(netip.AddrFrom16(local4.Addr().As16()), local4.Port())); !ok || c.Packets != 3 {
		t.Errorf("the IPv4-mapped form of %s not found: %+v, %v", local4, c, ok)
	}
	if c, ok := snap.Get(local6); !ok || c.Packets != 1 {
		t.Errorf("%s: %+v, %v; want 1 packet", local6, c, ok)
	}
	if _, ok := snap.Get(netip.MustParseAddrPort("192.0.2.1:1")); ok {
		t.Error("Snapshot kept what the map held before")
	}
}
