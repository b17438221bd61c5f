package sipload

import (
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpSocket is a UDP socket the Go runtime does not poll. The UAC and
// the UAS read their sockets on their own tick with recvmmsg and never
// wait in them; a socket of package net would sit in the runtime's epoll
// set all the same, and every datagram arriving while the process is
// idle would wake it for nothing: against a server on another core that
// cost the generator a third of its CPU.
type udpSocket struct {
	fd   int
	addr netip.AddrPort // where it is bound
}

// listenUDP binds a UDP socket to ap (port 0: any) with udpBuffer both
// ways, past rmem_max and wmem_max where allowed (SO_RCVBUFFORCE needs
// CAP_NET_ADMIN, as edged's does).
func listenUDP(ap netip.AddrPort) (*udpSocket, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("sipload: udp socket: %w", err)
	}
	for _, o := range [][2]int{{unix.SO_RCVBUF, unix.SO_RCVBUFFORCE}, {unix.SO_SNDBUF, unix.SO_SNDBUFFORCE}} {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], udpBuffer)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], udpBuffer)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	} else {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("sipload: bind udp %s: %w", ap, err)
	}
	s := &udpSocket{fd: fd, addr: ap}
	if bound, err := unix.Getsockname(fd); err == nil {
		switch b := bound.(type) {
		case *unix.SockaddrInet4:
			s.addr = netip.AddrPortFrom(netip.AddrFrom4(b.Addr), uint16(b.Port))
		case *unix.SockaddrInet6:
			s.addr = netip.AddrPortFrom(netip.AddrFrom16(b.Addr), uint16(b.Port))
		}
	}
	return s, nil
}

// close closes the socket; no recv or send may run on it then.
func (s *udpSocket) close() { _ = unix.Close(s.fd) }

// recv reads what has come in, up to len(m.hs) datagrams, without
// waiting: it returns how many came, or the errno (EAGAIN: none).
func (s *udpSocket) recv(m *mmsgs) (int, syscall.Errno) { return m.recv(uintptr(s.fd)) }

// sockaddr is a destination for sendmmsg.
type sockaddr struct {
	p *unix.RawSockaddrAny
	n uint32
}

// toSockaddr is ap as the kernel takes it.
func toSockaddr(ap netip.AddrPort) sockaddr {
	raw := new(unix.RawSockaddrAny)
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		// #nosec G103 -- RawSockaddrAny holds any sockaddr.
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(raw))
		sa.Family = unix.AF_INET
		sa.Addr = ap.Addr().Unmap().As4()
		putPort(&sa.Port, ap.Port())
		return sockaddr{raw, unix.SizeofSockaddrInet4}
	}
	// #nosec G103 -- as above.
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(raw))
	sa.Family = unix.AF_INET6
	sa.Addr = ap.Addr().As16()
	putPort(&sa.Port, ap.Port())
	return sockaddr{raw, unix.SizeofSockaddrInet6}
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	// #nosec G103 -- a uint16 is two bytes.
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// sendBatch is the buffers of sendmmsg calls of up to len(hs) datagrams.
type sendBatch struct {
	hs   []mmsghdr
	iovs []unix.Iovec
	msgs [][]byte // for the caller to fill
}

func newSendBatch(n int) sendBatch {
	return sendBatch{hs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), msgs: make([][]byte, n)}
}

// send writes msgs whole with sendmmsg, msgs[k] to to[k], or all to def
// when to is nil, waiting while the socket buffer is full. A datagram the
// kernel refuses is skipped (lost as if on the wire; the timers send it
// again); send returns the first such error.
func (s *udpSocket) send(b *sendBatch, msgs [][]byte, to []sockaddr, def sockaddr) error {
	var first error
	for k0 := 0; k0 < len(msgs); {
		n := min(len(msgs)-k0, len(b.hs))
		for j := range n {
			msg, dst := msgs[k0+j], def
			if to != nil {
				dst = to[k0+j]
			}
			b.iovs[j].Base = &msg[0] // a SIP message is never empty
			b.iovs[j].SetLen(len(msg))
			b.hs[j].hdr = unix.Msghdr{Iov: &b.iovs[j], Namelen: dst.n}
			b.hs[j].hdr.SetIovlen(1)
			// #nosec G103 -- the address outlives the call.
			b.hs[j].hdr.Name = (*byte)(unsafe.Pointer(dst.p))
		}
		// #nosec G103 -- hs outlives the call; the kernel reads only within its lengths.
		sent, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.hs[0])), uintptr(n), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			if first == nil {
				first = e
			}
			sent = 1
		}
		k0 += int(sent)
	}
	clear(b.msgs)
	return first
}
