package idlefilter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// lo4 is the tests' IPv4 address: a loopback address of their own, as
// benchmarks on the machine may hold thousands of ports of 127.0.0.1.
var lo4 = netip.MustParseAddr("127.0.0.61")

func load(t *testing.T, portMin, portMax int) *Filter {
	t.Helper()
	f, err := Load(portMin, portMax)
	if err != nil {
		t.Fatalf("Load(%d, %d): %v", portMin, portMax, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// udp opens a UDP socket bound to addr:port (0: a port the kernel
// picks) with a short receive timeout; the error is bind's.
func udp(t *testing.T, addr netip.Addr, port int) (int, int, error) {
	t.Helper()
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, sockaddr(addr, port)); err != nil {
		unix.Close(fd)
		return -1, 0, err
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000}); err != nil {
		t.Fatal(err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return fd, a.Port, nil
	case *unix.SockaddrInet6:
		return fd, a.Port, nil
	}
	t.Fatalf("getsockname: %#v", got)
	return 0, 0, nil
}

// mustUDP is udp that fails the test when bind does.
func mustUDP(t *testing.T, addr netip.Addr, port int) (int, int) {
	t.Helper()
	fd, p, err := udp(t, addr, port)
	if err != nil {
		t.Fatalf("bind %s port %d: %v", addr, port, err)
	}
	return fd, p
}

// freeBase is a base port of 8 below 16384 where sockets at base+off
// bind on addr (other tests and benchmarks of the machine hold many
// ports), with those sockets.
func freeBase(t *testing.T, addr netip.Addr, offs ...int) (int, []int) {
	t.Helper()
	for range 100 {
		base := 10000 + 8*rand.IntN(700)
		var fds []int
		for _, off := range offs {
			fd, _, err := udp(t, addr, base+off)
			if err != nil {
				break
			}
			fds = append(fds, fd)
		}
		if len(fds) == len(offs) {
			return base, fds
		}
		for _, fd := range fds {
			unix.Close(fd) // closed twice at cleanup: EBADF, harmless
		}
	}
	t.Fatalf("no 8 ports on %s below 16384 with %v free", addr, offs)
	return 0, nil
}

func sockaddr(addr netip.Addr, port int) unix.Sockaddr {
	if addr.Is6() {
		return &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
	}
	return &unix.SockaddrInet4{Port: port, Addr: addr.As4()}
}

// arrives sends one datagram of size bytes from fd to addr:port and
// reports whether rfd received it.
func arrives(t *testing.T, from, rfd int, addr netip.Addr, port, size int) bool {
	t.Helper()
	if err := unix.Sendto(from, make([]byte, size), 0, sockaddr(addr, port)); err != nil {
		t.Fatalf("send to port %d: %v", port, err)
	}
	buf := make([]byte, 4096)
	_, _, err := unix.Recvfrom(rfd, buf, 0)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("recv on port %d: %v", port, err)
	}
	return err == nil
}

func drops(t *testing.T, f *Filter) uint64 {
	t.Helper()
	n, err := f.Drops()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFilterReadsTheUDPDestinationPort: on the socket, the program reads
// the UDP header's destination port (skb->data points at the UDP header
// when a UDP socket's filter runs) — not the source port, not the length,
// not an IP header field: parking the sender's port (in the range too)
// drops nothing, parking the receiver's drops every datagram whatever its
// size, and counts each; unparked, they pass again. IPv4 and IPv6.
func TestFilterReadsTheUDPDestinationPort(t *testing.T) {
	for _, addr := range []netip.Addr{lo4, netip.IPv6Loopback()} {
		t.Run(addr.String(), func(t *testing.T) {
			base, fds := freeBase(t, addr, 3, 6)
			f := load(t, base, base+7)
			rfd, rport, sfd, sport := fds[0], base+3, fds[1], base+6
			if err := f.Attach(rfd); err != nil {
				t.Fatal(err)
			}
			if err := f.Attach(sfd); err != nil {
				t.Fatal(err)
			}
			sizes := []int{0, 1, 3, 100, 1400}
			for _, n := range sizes {
				if !arrives(t, sfd, rfd, addr, rport, n) {
					t.Fatalf("nothing parked: a datagram of %d bytes to port %d was dropped", n, rport)
				}
			}
			f.Park(sport)
			for p := base; p <= base+7; p++ {
				if p != rport {
					f.Park(p) // every other port of the range: the index is the destination's alone
				}
			}
			for _, n := range sizes {
				if !arrives(t, sfd, rfd, addr, rport, n) {
					t.Fatalf("the sender's port %d parked: a datagram of %d bytes to port %d was dropped", sport, n, rport)
				}
			}
			if d := drops(t, f); d != 0 {
				t.Errorf("%d drops counted, want 0", d)
			}
			f.Park(rport)
			f.Unpark(sport)
			for _, n := range sizes {
				if arrives(t, sfd, rfd, addr, rport, n) {
					t.Fatalf("port %d parked: a datagram of %d bytes arrived", rport, n)
				}
			}
			if d := drops(t, f); d != uint64(len(sizes)) {
				t.Errorf("%d drops counted, want %d", d, len(sizes))
			}
			// The other direction: the sender's port is not parked now, the
			// reply passes.
			if !arrives(t, rfd, sfd, addr, sport, 10) {
				t.Fatalf("port unparked: the reply was dropped (drops %d, parked %v)", drops(t, f), f.Parked(sport))
			}
			f.Unpark(rport)
			for _, n := range sizes {
				if !arrives(t, sfd, rfd, addr, rport, n) {
					t.Fatalf("unparked: a datagram of %d bytes to port %d was dropped", n, rport)
				}
			}
		})
	}
}

// TestFilterRangeEnd: a range ending at 65535 indexes its last port
// (parked, dropped; unparked, passes), and a socket below the range that
// carries the program passes everything even with every mark set.
func TestFilterRangeEnd(t *testing.T) {
	f := load(t, 65528, 65535)
	rfd, _, err := udp(t, lo4, 65535)
	if err != nil {
		t.Skipf("bind 127.0.0.61 port 65535: %v: another program holds the port this test needs", err)
	}
	below, bport := mustUDP(t, lo4, 0) // the kernel's ephemeral range: below 65528
	sfd, _ := mustUDP(t, lo4, 0)
	for _, fd := range []int{rfd, below} {
		if err := f.Attach(fd); err != nil {
			t.Fatal(err)
		}
	}
	for p := 65528; p <= 65535; p++ {
		f.Park(p)
	}
	f.Park(65536) // outside: ignored
	f.Park(bport)
	if !f.Parked(65535) || f.Parked(65536) || f.Parked(bport) {
		t.Fatalf("parked: 65535 %v, 65536 %v, %d %v; want true, false, false", f.Parked(65535), f.Parked(65536), bport, f.Parked(bport))
	}
	if arrives(t, sfd, rfd, lo4, 65535, 20) {
		t.Error("port 65535 parked: a datagram arrived")
	}
	if !arrives(t, sfd, below, lo4, bport, 20) {
		t.Errorf("port %d, below the range, was dropped", bport)
	}
	f.Unpark(65535)
	if !arrives(t, sfd, rfd, lo4, 65535, 20) {
		t.Error("port 65535 unparked: the datagram was dropped")
	}
	if d := drops(t, f); d != 1 {
		t.Errorf("%d drops, want 1", d)
	}
}

// TestMemoryLayout: the mapped memory is the array the program reads,
// one u32 per port, densely: a store through Park is what the map's value
// holds at 4 × index, an update through the map is what Parked sees.
func TestMemoryLayout(t *testing.T) {
	const n = 1000
	f := load(t, 20000, 20000+n-1)
	value := func() []byte {
		t.Helper()
		b := make([]byte, n*4)
		if err := f.parked.Lookup(uint32(0), &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, i := range []int{0, 1, 7, 511, 512, n - 1} {
		f.Park(20000 + i)
		b := value()
		for j := range n {
			if got, want := binary.NativeEndian.Uint32(b[4*j:]), uint32(0); j == i && got == 0 || j != i && got != want {
				t.Fatalf("Park(%d): the map's u32 %d holds %d", 20000+i, j, got)
			}
		}
		f.Unpark(20000 + i)
		binary.NativeEndian.PutUint32(b[4*i:], 0)
		if !bytes.Equal(value(), b) {
			t.Fatalf("Unpark(%d) left a mark in the map", 20000+i)
		}
		binary.NativeEndian.PutUint32(b[4*i:], 5)
		if err := f.parked.Update(uint32(0), b, 0); err != nil {
			t.Fatal(err)
		}
		if !f.Parked(20000+i) || f.Parked(20000+i+1) || f.Parked(20000+i-1) {
			t.Fatalf("u32 %d set through the map: Parked(%d) %v, neighbours %v %v", i, 20000+i, f.Parked(20000+i), f.Parked(20000+i-1), f.Parked(20000+i+1))
		}
		f.Unpark(20000 + i)
	}
}

// TestClosedFilterKeepsItsCount: after Close, Drops reports the count at
// Close, and Park and Unpark do no harm.
func TestClosedFilterKeepsItsCount(t *testing.T) {
	base, fds := freeBase(t, lo4, 0)
	f := load(t, base, base+1)
	rfd := fds[0]
	sfd, _ := mustUDP(t, lo4, 0)
	if err := f.Attach(rfd); err != nil {
		t.Fatal(err)
	}
	f.Park(base)
	for range 3 {
		arrives(t, sfd, rfd, lo4, base, 8)
	}
	f.Close()
	f.Unpark(base)
	if d := drops(t, f); d != 3 {
		t.Errorf("after Close: %d drops, want 3", d)
	}
	if !arrives(t, sfd, rfd, lo4, base, 8) {
		t.Error("after Close and Unpark a datagram was dropped")
	}
}

func TestLoadRefusesABadRange(t *testing.T) {
	for _, r := range [][2]int{{0, 10}, {100, 99}, {65000, 65536}} {
		if f, err := Load(r[0], r[1]); !errors.Is(err, ErrUnavailable) {
			if f != nil {
				f.Close()
			}
			t.Errorf("Load(%d, %d) = %v, want ErrUnavailable", r[0], r[1], err)
		}
	}
}

// BenchmarkFilter is the program's cost on one datagram, through
// BPF_PROG_TEST_RUN: a port that passes (an active leg's: every media
// datagram pays this) and a parked one (dropped and counted), beside a
// program that only returns, the test run's own cost. The test run starts
// skb->data at the IP header, not the UDP header, so the packet is laid
// out for the load at offset 2 to find the port there.
//
//	go test -run XXX -bench Filter ./core/internal/media/idlefilter
func BenchmarkFilter(b *testing.B) {
	f, err := Load(20000, 20999)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.Park(20001)
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm32(asm.R0, -1), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	for _, bc := range []struct {
		name string
		prog *ebpf.Program
		port uint16
	}{{"empty", empty, 20000}, {"pass", f.prog, 20000}, {"drop", f.prog, 20001}} {
		b.Run(bc.name, func(b *testing.B) {
			pkt := make([]byte, 14+20+8+172)
			pkt[12], pkt[13] = 0x08, 0x00 // IPv4 after the Ethernet header
			pkt[14+2], pkt[14+3] = byte(bc.port>>8), byte(bc.port)
			ret, d, err := bc.prog.Benchmark(pkt, max(b.N, 1000), nil)
			if err != nil {
				b.Fatal(err)
			}
			if (ret == 0) != (bc.name == "drop") {
				b.Fatalf("returned %#x", ret)
			}
			// The kernel's mean over the runs, in whole ns.
			b.ReportMetric(float64(d.Nanoseconds()), "ns/run")
		})
	}
}
