package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/mmsg"
)

// sockaddrLen is room for a sockaddr_in6, the larger of the two families.
const sockaddrLen = unix.SizeofSockaddrInet6

// mmsghdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2) (core/internal/mmsg).
type mmsghdr = mmsg.Hdr

// openUDP opens a non-blocking UDP socket bound to addr:port.
func openUDP(addr netip.Addr, port int) (int, error) {
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("open udp socket: %w", err)
	}
	var sa unix.Sockaddr
	if addr.Is6() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			_ = unix.Close(fd)
			return -1, fmt.Errorf("set IPV6_V6ONLY: %w", err)
		}
		sa = &unix.SockaddrInet6{Port: port, Addr: addr.As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: port, Addr: addr.As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", netip.AddrPortFrom(addr, uint16(port)), err)
	}
	return fd, nil
}

// connectSelf connects fd to ap, its own address: from then on the kernel
// delivers it only datagrams sent from ap, which nobody else can send from
// (pairpool.go).
func connectSelf(fd int, ap netip.AddrPort) error {
	if ap.Addr().Zone() != "" {
		return fmt.Errorf("connect %s: %w", ap, errZoned) // not worth an interface lookup: the pair is closed instead
	}
	var sa [sockaddrLen]byte
	if err := connectRaw(fd, &sa, putSockaddr(&sa, ap)); err != nil {
		return fmt.Errorf("connect %s to itself: %w", ap, err)
	}
	return nil
}

// connectRaw is connect(2) on the sockaddr in sa, without the allocation of
// unix.Connect.
func connectRaw(fd int, sa *[sockaddrLen]byte, n uint32) error {
	e := unix.EINTR
	for e == unix.EINTR {
		_, _, e = unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(n)) //nolint:gosec // a sockaddr the kernel reads during the call
	}
	if e != 0 {
		return e
	}
	return nil
}

// disconnect dissolves fd's connection (connect to AF_UNSPEC, which
// x/sys/unix has no Sockaddr for): it receives from anyone again.
func disconnect(fd int) error {
	var sa [sockaddrLen]byte // sa_family 0 = AF_UNSPEC
	if err := connectRaw(fd, &sa, unix.SizeofSockaddrInet4); err != nil {
		return fmt.Errorf("disconnect: %w", err)
	}
	return nil
}

// putSockaddr writes ap as a sockaddr_in or sockaddr_in6 into b and returns
// its length.
func putSockaddr(b *[sockaddrLen]byte, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	if a.Is4() {
		binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		v4 := a.As4()
		copy(b[4:8], v4[:])
		clear(b[8:16])
		return unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	clear(b[4:8])
	v6 := a.As16()
	copy(b[8:24], v6[:])
	clear(b[24:28])
	return unix.SizeofSockaddrInet6
}

// getSockaddr reads the address recvmmsg wrote into b.
func getSockaddr(b *[sockaddrLen]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[2:])
	switch binary.NativeEndian.Uint16(b[0:]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port)
	}
	return netip.AddrPort{}
}

// recvmmsg reads up to len(h) datagrams from fd without blocking.
func recvmmsg(fd int, h []mmsghdr) (int, error) { return mmsg.Recv(fd, h) }

// sendmmsg writes the datagrams of h on fd without blocking and returns how
// many the kernel took.
func sendmmsg(fd int, h []mmsghdr) (int, error) { return mmsg.Send(fd, h) }

// sendtoRaw writes b from fd to the sockaddr in name without blocking: the
// worker's path for a single datagram.
func sendtoRaw(fd int, b []byte, name *[sockaddrLen]byte, namelen uint32) error {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), //nolint:gosec // a buffer the worker keeps until the call returns
			unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(name)), uintptr(namelen)) //nolint:gosec // and its sockaddr
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return e
		}
		return nil
	}
}

// sendto writes one datagram from fd to ap (the terminator path, off the
// workers).
func sendto(fd int, b []byte, ap netip.AddrPort) error {
	var sa unix.Sockaddr
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	err := unix.Sendto(fd, b, unix.MSG_DONTWAIT, sa)
	if errors.Is(err, unix.EINTR) {
		err = unix.Sendto(fd, b, unix.MSG_DONTWAIT, sa)
	}
	return err
}
