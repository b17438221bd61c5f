package xdptx

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/netnstest"
)

// lab is two namespaces joined by a veth: srv (the sender, the engine's
// side) on srvIf with srvAddr, peer on peerIf with peerAddr.
type lab struct {
	srv, peer         netnstest.NS
	srvIf, peerIf     string
	srvAddr, peerAddr netip.Addr
	srvMAC, peerMAC   [6]byte
	srvIndex          int
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabFamily(t, false)
}

// newLabFamily is the lab on IPv6 addresses (no DAD) when v6.
func newLabFamily(t *testing.T, v6 bool) *lab {
	t.Helper()
	netnstest.Available(t)
	tag := fmt.Sprintf("%04x", rand.IntN(1<<16))
	x := rand.IntN(250) + 1
	addr, plen := "10.251.%d.%d", "/24"
	if v6 {
		addr, plen = "fd00:251:%x::%x", "/64"
	}
	l := &lab{srv: netnstest.NS("xt-s-" + tag), peer: netnstest.NS("xt-p-" + tag), srvIf: "x0", peerIf: "x1",
		srvAddr:  netip.MustParseAddr(fmt.Sprintf(addr, x, 1)),
		peerAddr: netip.MustParseAddr(fmt.Sprintf(addr, x, 2))}
	netnstest.Add(t, l.srv, l.peer)
	l.srv.Run(t, "link", "add", l.srvIf, "type", "veth", "peer", "name", l.peerIf, "netns", string(l.peer))
	l.srv.Run(t, "addr", "add", l.srvAddr.String()+plen, "dev", l.srvIf, "nodad")
	l.peer.Run(t, "addr", "add", l.peerAddr.String()+plen, "dev", l.peerIf, "nodad")
	l.srv.Run(t, "link", "set", l.srvIf, "up")
	l.peer.Run(t, "link", "set", l.peerIf, "up")
	l.srv.Do(t, func() {
		ifc, err := net.InterfaceByName(l.srvIf)
		if err != nil {
			t.Error(err)
			return
		}
		l.srvIndex = ifc.Index
		copy(l.srvMAC[:], ifc.HardwareAddr)
	})
	l.peer.Do(t, func() {
		ifc, err := net.InterfaceByName(l.peerIf)
		if err != nil {
			t.Error(err)
			return
		}
		copy(l.peerMAC[:], ifc.HardwareAddr)
	})
	if t.Failed() {
		t.FailNow()
	}
	// The socket paths need the peer's neighbour entry: a permanent one,
	// so no ARP exchange falls into anything measured.
	l.srv.Run(t, "neigh", "replace", l.peerAddr.String(), "lladdr", net.HardwareAddr(l.peerMAC[:]).String(), "dev", l.srvIf, "nud", "permanent")
	return l
}

// TestXSKDelivers sends datagrams of several sizes (odd ones too) from
// several source ports through the XSK, over IPv4 (UDP checksum computed
// and not) and IPv6, and has the peer's UDP sockets receive them:
// byte-exact payloads from the right source address and port. The peer's
// veth has rx checksum offload off, so that no device may mark a frame
// verified and the peer's kernel checks each: a wrong IPv4 or UDP
// checksum, length or MAC would have it drop them, and a frame whose UDP
// checksum is spoilt, sent first to port 20000, proves it does (it would
// arrive as that port's first datagram).
func TestXSKDelivers(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { testXSKDelivers(t, v6) })
	}
}

func testXSKDelivers(t *testing.T, v6 bool) {
	l := newLabFamily(t, v6)
	l.peer.Exec(t, "", "ethtool", "-K", l.peerIf, "rx", "off")
	const ports = 3
	var rx [ports]int
	var err error
	l.peer.Do(t, func() { err = openReceivers(l, rx[:]) })
	for _, fd := range rx {
		if fd > 0 {
			t.Cleanup(func() { _ = unix.Close(fd) })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		port    int
		payload []byte
	}
	var want [ports][]sent
	build := func(b []byte, src, dst netip.AddrPort, n int, p []byte) int {
		if v6 {
			return BuildUDP6(b, l.peerMAC, l.srvMAC, src, dst, uint8(n), p) //nolint:gosec // small
		}
		return BuildUDP4(b, l.peerMAC, l.srvMAC, src, dst, uint16(n), 0, p, n%2 == 1) //nolint:gosec // small
	}
	l.srv.Do(t, func() {
		x, e := Open(l.srvIndex, 0, 64, 64, 0, 0)
		if e != nil {
			err = e
			return
		}
		defer x.Close()
		// The spoilt one: the peer's kernel must drop it.
		addr, b, _ := x.Frame()
		k := build(b, netip.AddrPortFrom(l.srvAddr, 30000), netip.AddrPortFrom(l.peerAddr, 20000), 0, []byte("spoilt"))
		b[k-7] ^= 0x40 // the UDP checksum's low byte (the payload's 6 bytes after it)
		x.Queue(addr, k)
		for n, size := range []int{1, 12, 171, 172, 173, 1400} {
			for i := range ports {
				p := make([]byte, size)
				for j := range p {
					p[j] = byte(n*31 + i*7 + j)
				}
				addr, b, ok := x.Frame()
				if !ok {
					err = fmt.Errorf("no free frame")
					return
				}
				src := netip.AddrPortFrom(l.srvAddr, uint16(30000+i*2)) //nolint:gosec // small
				dst := netip.AddrPortFrom(l.peerAddr, uint16(20000+i))  //nolint:gosec // small
				if !x.Queue(addr, build(b, src, dst, n, p)) {
					err = fmt.Errorf("TX ring full")
					return
				}
				want[i] = append(want[i], sent{30000 + i*2, p})
			}
			if err = x.Kick(); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i, fd := range rx {
		for k, w := range want[i] {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				t.Fatalf("port %d, datagram %d of %d: %v", 20000+i, k+1, len(want[i]), err)
			}
			var fa netip.Addr
			var fp int
			switch sa := from.(type) {
			case *unix.SockaddrInet4:
				fa, fp = netip.AddrFrom4(sa.Addr), sa.Port
			case *unix.SockaddrInet6:
				fa, fp = netip.AddrFrom16(sa.Addr), sa.Port
			}
			if fa != l.srvAddr || fp != w.port {
				t.Errorf("port %d, datagram %d: from %+v, want %s:%d", 20000+i, k+1, from, l.srvAddr, w.port)
			}
			if !bytes.Equal(buf[:n], w.payload) {
				t.Errorf("port %d, datagram %d: %d bytes (%q), not the %d sent", 20000+i, k+1, n, buf[:min(n, 8)], len(w.payload))
			}
		}
	}
}

// openReceivers binds a blocking UDP socket (2 s receive timeout) to
// ports 20000, 20001, ... of the peer's address for each entry of fds.
func openReceivers(l *lab, fds []int) error {
	for i := range fds {
		family := unix.AF_INET
		var sa unix.Sockaddr
		if l.peerAddr.Is6() {
			family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: 20000 + i, Addr: l.peerAddr.As16()}
		} else {
			sa = &unix.SockaddrInet4{Port: 20000 + i, Addr: l.peerAddr.As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds[i] = fd
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(2 * time.Second))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
	}
	return nil
}

// The send-path cost measurement: packets per run, destinations.
const (
	costPackets = 300_000
	costLegs    = 1000
	payloadLen  = 172
)

// TestSendPathCost measures the sending process's CPU per packet (getrusage
// RUSAGE_SELF, utime+stime) of three ways to send 172-byte datagrams from
// 1,000 source ports to 1,000 destination ports of the peer namespace,
// round-robin, 1–8 datagrams per leg per round, 50 legs a round, a 1 ms
// rest between rounds (the engine's): (a) bound UDP sockets, sendmmsg with a destination per
// message; (b) the same sockets connect()ed; (c) an AF_XDP socket in copy
// mode, frames built here (UDP checksum computed; (c0) without), one kick
// per 64 frames. The peer counts arrivals with an nftables counter in
// prerouting (and drops them there: no ICMP back); every run must see all
// its packets (a run where the receiving CPU's backlog queue overflowed,
// softnet_stat, is repeated). A CPU measurement wants a quiet machine, so it runs only
// when asked:
//
//	go test -c -o /tmp/xdptx.test ./core/internal/media/xdptx
//	UMEDGE_SENDPATH_BENCH=3 taskset -c 1 /tmp/xdptx.test -test.run SendPathCost -test.v
//
// (UMEDGE_SENDPATH_BENCH is the number of runs). The peer's receive is
// steered to CPU 0 (RPS on its veth), as mediabench -netns does.
//
// Measured 2026-12-02 21:29–21:30 UTC (kernel 6.18, 2 vCPUs, a shared
// machine), sender CPU µs per packet, medians of three runs: with RPS
// (a) 5.31, (b) 4.04, (c) 1.52 (0.29× a), (c0) 1.51; without, (a) 3.92,
// (b) 3.34, (c) 1.69 (0.43× a), (c0) 1.77. See "Send paths measured" in
// docs/PERFORMANCE.md.
func TestSendPathCost(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("UMEDGE_SENDPATH_BENCH"))
	if runs <= 0 {
		t.Skip("a CPU measurement for a quiet machine: set UMEDGE_SENDPATH_BENCH=<runs> (see the comment)")
	}
	l := newLab(t)
	switch {
	case os.Getenv("UMEDGE_SENDPATH_RPS") == "0":
		t.Log("UMEDGE_SENDPATH_RPS=0: the peer's receive is not steered (it runs in the sender's softirq, on its CPU)")
	case onlyCPU1():
		l.peer.Exec(t, "", "sh", "-c", "echo 1 > /sys/class/net/"+l.peerIf+"/queues/rx-0/rps_cpus")
	default:
		t.Log("not pinned to CPU 1 alone (taskset -c 1): the peer's receive is not steered")
	}
	l.peer.Exec(t, `table ip cnt {
	counter got { }
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		udp dport 20000-20999 counter name "got" drop
	}
}
`, "nft", "-f", "-")
	plan := makePlan(costPackets)
	ways := []string{"a sockets", "b connected", "c xdp", "c0 xdp nosum"}
	if w := os.Getenv("UMEDGE_SENDPATH_WAYS"); w != "" { // a, b, c, c0: one way, for a profile
		ways = slices.DeleteFunc(ways, func(way string) bool { return !slices.Contains(strings.Split(w, ","), strings.Fields(way)[0]) })
	}
	res := make(map[string][]float64)
	for r := range runs {
		for _, way := range ways {
			var cpu time.Duration
			var n int
			for attempt := 1; ; attempt++ {
				l.peer.Exec(t, "", "nft", "reset", "counter", "ip", "cnt", "got")
				drops := backlogDrops(t)
				var err error
				l.srv.Do(t, func() {
					switch way[:2] {
					case "a ", "b ":
						cpu, n, err = sendSockets(l, plan, way[0] == 'b')
					default:
						cpu, n, err = sendXSK(l, plan, way == "c0 xdp nosum")
					}
				})
				if err != nil {
					t.Fatalf("%s: %v", way, err)
				}
				time.Sleep(50 * time.Millisecond)
				got, dropped := counted(t, l), backlogDrops(t)-drops
				if got == n {
					break
				}
				// A full backlog queue on the receiving CPU (busy with
				// something else) is the receiver's loss, not the sender's:
				// such a run is repeated, any other loss fails.
				if int64(n-got) != dropped || attempt == 5 {
					t.Fatalf("run %d, %s: the peer counted %d of %d packets (%d dropped by a full backlog queue: softnet_stat)", r+1, way, got, n, dropped)
				}
				t.Logf("run %d, %s: %d of %d packets dropped by the receiving CPU's full backlog queue: run again", r+1, way, dropped, n)
			}
			us := float64(cpu.Nanoseconds()) / 1e3 / float64(n)
			res[way] = append(res[way], us)
			t.Logf("run %d %-14s %d packets, CPU %v, %.3f µs/packet", r+1, way, n, cpu, us)
		}
	}
	a := median(res[ways[0]])
	for _, way := range ways {
		m := median(res[way])
		t.Logf("median %-14s %.3f µs/packet (%.2f× a) runs %.3f", way, m, m/a, res[way])
	}
}

// legsPerRound is how many legs (the next ones, round-robin) a round
// serves before the 1 ms rest: ~225 datagrams a round, ~200,000 a second
// at most, where the engine at 500 calls relays 50,000 a second.
const legsPerRound = 50

// step is one leg's batch in a round.
type step struct {
	leg uint16
	k   uint8 // datagrams, 1–8
}

// plan is the rounds: the batches of each.
type plan [][]step

func makePlan(total int) plan {
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // a load pattern
	var p plan
	leg := 0
	for n := 0; n < total; {
		r := make([]step, legsPerRound)
		for i := range r {
			r[i] = step{uint16(leg), uint8(1 + rng.IntN(8))} //nolint:gosec // < costLegs, 1–8
			n += int(r[i].k)
			leg = (leg + 1) % costLegs
		}
		p = append(p, r)
	}
	return p
}

func rusage() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mmsghdr is struct mmsghdr on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// sendSockets is ways (a) and (b): one bound UDP socket per leg, one
// sendmmsg per leg per round.
func sendSockets(l *lab, p plan, connect bool) (time.Duration, int, error) {
	fds := make([]int, costLegs)
	defer func() {
		for _, fd := range fds {
			if fd > 0 {
				_ = unix.Close(fd)
			}
		}
	}()
	names := make([]unix.RawSockaddrInet4, costLegs)
	hdrs := make([][8]mmsghdr, costLegs)
	var payloads [8][payloadLen]byte
	iovs := make([]unix.Iovec, 8)
	for j := range iovs {
		iovs[j].Base = &payloads[j][0]
		iovs[j].SetLen(payloadLen)
	}
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, 0, err
		}
		fds[i] = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 30000 + i, Addr: l.srvAddr.As4()}); err != nil {
			return 0, 0, err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20); err != nil {
			return 0, 0, err
		}
		names[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: l.peerAddr.As4()}
		port := uint16(20000 + i) //nolint:gosec // small
		names[i].Port = port>>8 | port<<8
		if connect {
			if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 20000 + i, Addr: l.peerAddr.As4()}); err != nil {
				return 0, 0, err
			}
		}
		for j := range hdrs[i] {
			h := &hdrs[i][j].hdr
			h.Iov = &iovs[j]
			h.SetIovlen(1)
			if !connect {
				h.Name = (*byte)(unsafe.Pointer(&names[i]))
				h.Namelen = unix.SizeofSockaddrInet4
			}
		}
	}
	n := 0
	start := rusage()
	for r, round := range p {
		for j := range payloads {
			payloads[j][2], payloads[j][3] = byte(r), byte(j) // a sequence number, as a relay's would change
		}
		for _, st := range round {
			i, k := st.leg, st.k
			sent, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fds[i]), uintptr(unsafe.Pointer(&hdrs[i][0])), uintptr(k), unix.MSG_DONTWAIT, 0, 0)
			if e != 0 || int(sent) != int(k) {
				return 0, 0, fmt.Errorf("sendmmsg leg %d: %d of %d: %v", i, sent, k, e)
			}
			n += int(k)
		}
		time.Sleep(time.Millisecond)
	}
	return rusage() - start, n, nil
}

// sendXSK is way (c): the same datagrams as frames through an XSK on
// queue 0 of the sender's veth, a kick per 64 frames.
func sendXSK(l *lab, p plan, noSum bool) (time.Duration, int, error) {
	x, err := Open(l.srvIndex, 0, 4096, 2048, 64, 4<<20)
	if err != nil {
		return 0, 0, err
	}
	defer x.Close()
	src := make([]netip.AddrPort, costLegs)
	dst := make([]netip.AddrPort, costLegs)
	for i := range src {
		src[i] = netip.AddrPortFrom(l.srvAddr, uint16(30000+i))  //nolint:gosec // small
		dst[i] = netip.AddrPortFrom(l.peerAddr, uint16(20000+i)) //nolint:gosec // small
	}
	var payloads [8][payloadLen]byte
	n := 0
	id := uint16(0)
	start := rusage()
	for r, round := range p {
		for j := range payloads {
			payloads[j][2], payloads[j][3] = byte(r), byte(j)
		}
		for _, st := range round {
			i, k := st.leg, st.k
			for j := range int(k) {
				addr, b, ok := x.Frame()
				for tries := 0; !ok; tries++ {
					if err := x.Kick(); err != nil {
						return 0, 0, err
					}
					if tries > 1000 {
						return 0, 0, fmt.Errorf("no UMEM frame comes back")
					}
					addr, b, ok = x.Frame()
				}
				id++
				if !x.Queue(addr, BuildUDP4(b, l.peerMAC, l.srvMAC, src[i], dst[i], id, 0, payloads[j][:], noSum)) {
					return 0, 0, fmt.Errorf("TX ring full")
				}
				n++
				if x.Pending() == 64 {
					if err := x.Kick(); err != nil {
						return 0, 0, err
					}
				}
			}
		}
		if err := x.Kick(); err != nil {
			return 0, 0, err
		}
		time.Sleep(time.Millisecond)
	}
	cpu := rusage() - start
	if st, err := x.Stats(); err == nil && st.Tx_invalid_descs != 0 {
		return 0, 0, fmt.Errorf("%d invalid TX descriptors", st.Tx_invalid_descs)
	}
	return cpu, n, nil
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

func counted(t *testing.T, l *lab) int {
	t.Helper()
	out := l.peer.Output(t, "nft", "list", "counter", "ip", "cnt", "got")
	m := packetsRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("nft counter: %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// backlogDrops is the packets the CPUs' backlog queues (RPS, veth
// delivery) have dropped so far: /proc/net/softnet_stat's second column.
func backlogDrops(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 {
			v, _ := strconv.ParseInt(f[1], 16, 64)
			n += v
		}
	}
	return n
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// onlyCPU1 reports whether this process is pinned to CPU 1 alone.
func onlyCPU1() bool {
	var set unix.CPUSet
	return unix.SchedGetaffinity(0, &set) == nil && set.Count() == 1 && set.IsSet(1)
}

// TestXSKBypass pins down what an XSK's frames skip on the sending host:
// netfilter's OUTPUT and POSTROUTING hooks (an nftables counter there
// stays at 0 while the peer receives them) and the packet taps: an
// AF_PACKET socket on the sending interface, what tcpdump opens, does not
// see them (__dev_direct_xmit does not pass frames to the taps), while it
// sees a UDP socket's datagram.
func TestXSKBypass(t *testing.T) {
	l := newLab(t)
	l.srv.Exec(t, `table ip out {
	counter seen { }
	chain output {
		type filter hook output priority 0; policy accept;
		udp dport 20000 counter name "seen"
	}
	chain post {
		type filter hook postrouting priority 0; policy accept;
		udp dport 20000 counter name "seen"
	}
}
`, "nft", "-f", "-")
	var rx [1]int
	var tap int
	var err error
	l.peer.Do(t, func() { err = openReceivers(l, rx[:]) })
	if rx[0] > 0 {
		t.Cleanup(func() { _ = unix.Close(rx[0]) })
	}
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	l.srv.Do(t, func() {
		proto := int(htons(unix.ETH_P_ALL))
		if tap, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto); err != nil {
			return
		}
		if err = unix.Bind(tap, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: l.srvIndex}); err != nil {
			return
		}
		var x *XSK
		if x, err = Open(l.srvIndex, 0, 64, 64, 0, 0); err != nil {
			return
		}
		defer x.Close()
		for i := range n {
			addr, b, _ := x.Frame()
			x.Queue(addr, BuildUDP4(b, l.peerMAC, l.srvMAC, netip.AddrPortFrom(l.srvAddr, 30000), netip.AddrPortFrom(l.peerAddr, 20000), uint16(i), 0, []byte("xsk"), false))
		}
		err = x.Kick()
	})
	if tap > 0 {
		t.Cleanup(func() { _ = unix.Close(tap) })
	}
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := range n {
		if _, _, err := unix.Recvfrom(rx[0], buf, 0); err != nil {
			t.Fatalf("datagram %d: %v", i+1, err)
		}
	}
	out := l.srv.Output(t, "nft", "list", "counter", "ip", "out", "seen")
	if m := packetsRE.FindStringSubmatch(out); m == nil || m[1] != "0" {
		t.Errorf("netfilter on the sending host saw the XSK's frames: %s", out)
	}
	if k := tapped(tap, buf, "xsk"); k != 0 {
		t.Errorf("a packet tap on the sending interface saw %d of the %d frames", k, n)
	}
	// The same datagram through a UDP socket: both see it (the tap and
	// the counter work).
	l.srv.Do(t, func() {
		var fd int
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return
		}
		defer func() { _ = unix.Close(fd) }()
		err = unix.Sendto(fd, []byte("udp"), 0, &unix.SockaddrInet4{Port: 20000, Addr: l.peerAddr.As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := unix.Recvfrom(rx[0], buf, 0); err != nil {
		t.Fatal(err)
	}
	out = l.srv.Output(t, "nft", "list", "counter", "ip", "out", "seen")
	if m := packetsRE.FindStringSubmatch(out); m == nil || m[1] != "2" {
		t.Errorf("OUTPUT and POSTROUTING did not both count the socket's datagram: %s", out)
	}
	if k := tapped(tap, buf, "udp"); k != 1 {
		t.Errorf("the tap saw the socket's datagram %d times, want 1", k)
	}
}

// tapped counts the outgoing frames on tap whose UDP payload is payload.
func tapped(tap int, buf []byte, payload string) int {
	k := 0
	for {
		m, from, err := unix.Recvfrom(tap, buf, 0)
		if err != nil {
			return k
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING && m >= HeaderLen && string(buf[HeaderLen:m]) == payload {
			k++
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
