package mmsg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func fdOf(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil { //nolint:gosec // a descriptor
		t.Fatal(err)
	}
	return fd
}

// A batch reads what queued, in order, each datagram with its bytes and
// its sender, up to the batch; the rest at the next read; then EAGAIN.
func TestReaderBatch(t *testing.T) {
	for _, c := range []struct{ listen, from string }{
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"[::1]:0", "[::1]:0"},
		{"[::]:0", "127.0.0.1:0"}, // dual-stack: the IPv4 sender in its mapped form
	} {
		t.Run(c.listen+"<-"+c.from, func(t *testing.T) {
			ln, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(c.listen)))
			if err != nil {
				t.Skipf("no %s here: %v", c.listen, err)
			}
			defer ln.Close()
			to := netip.AddrPortFrom(netip.MustParseAddrPort(c.from).Addr(), ln.LocalAddr().(*net.UDPAddr).AddrPort().Port())
			snd, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(c.from)))
			if err != nil {
				t.Fatal(err)
			}
			defer snd.Close()
			const sent = 7
			for i := range sent {
				if _, err := snd.WriteToUDPAddrPort(fmt.Appendf(nil, "datagram %d %s", i, make([]byte, i*100)), to); err != nil {
					t.Fatal(err)
				}
			}
			want := snd.LocalAddr().(*net.UDPAddr).AddrPort()
			r := NewReader(4, 2048)
			fd := fdOf(t, ln)
			got := 0
			for _, batch := range []int{4, 3} {
				n, err := r.Read(fd)
				if err != nil || n != batch {
					t.Fatalf("read %d, %v; want %d", n, err, batch)
				}
				for i := range n {
					b, src, cut := r.Datagram(i)
					if w := fmt.Appendf(nil, "datagram %d %s", got, make([]byte, got*100)); string(b) != string(w) || cut {
						t.Fatalf("datagram %d: %d bytes %.12q (cut %v), want %d bytes", got, len(b), b, cut, len(w))
					}
					if src.Port() != want.Port() || src.Addr().Unmap() != want.Addr().Unmap() {
						t.Fatalf("datagram %d from %s, sent from %s", got, src, want)
					}
					if ln.LocalAddr().(*net.UDPAddr).IP.To4() == nil && c.from == "127.0.0.1:0" && !src.Addr().Is4In6() {
						t.Fatalf("dual-stack socket: source %s, want the IPv4-mapped form", src)
					}
					got++
				}
			}
			if n, err := r.Read(fd); !errors.Is(err, unix.EAGAIN) {
				t.Fatalf("empty socket: read %d, %v; want EAGAIN", n, err)
			}
		})
	}
}

// A datagram larger than the buffers is cut and says so.
func TestReaderTruncated(t *testing.T) {
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := ln.WriteToUDPAddrPort(make([]byte, 3000), ln.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	r := NewReader(2, 1000)
	if n, err := r.Read(fdOf(t, ln)); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	if b, _, cut := r.Datagram(0); len(b) != 1000 || !cut {
		t.Fatalf("%d bytes, cut %v; want 1000 and cut", len(b), cut)
	}
}

// A link-local IPv6 source keeps its interface as the zone, which
// net.UDPConn takes back to reply to it.
func TestAddrZone(t *testing.T) {
	var b [SockaddrLen]byte
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], 5060)
	a := netip.MustParseAddr("fe80::1").As16()
	copy(b[8:24], a[:])
	binary.NativeEndian.PutUint32(b[24:28], 3)
	if got, want := Addr(&b), netip.MustParseAddrPort("[fe80::1%3]:5060"); got != want {
		t.Fatalf("%s, want %s", got, want)
	}
	binary.NativeEndian.PutUint16(b[0:], unix.AF_UNIX)
	if got := Addr(&b); got.IsValid() {
		t.Fatalf("a non-IP address read as %s", got)
	}
}
