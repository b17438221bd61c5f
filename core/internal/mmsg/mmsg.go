// Package mmsg reads UDP datagrams in batches with recvmmsg(2), for the
// readers that serve many datagrams a second on one socket: one system
// call (and one wake-up of the Go scheduler) for what has queued, instead
// of one each. x/net's ReadBatch would do it with a net.Addr allocated
// per datagram; x/sys/unix has no recvmmsg.
//
// Linux on 64-bit architectures (the appliance's amd64 and arm64): Hdr
// is struct mmsghdr's layout there.
package mmsg

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Hdr is struct mmsghdr of recvmmsg(2)/sendmmsg(2) on 64-bit Linux.
type Hdr struct {
	Msghdr unix.Msghdr
	N      uint32 // msg_len: the bytes the call read or wrote
	_      [4]byte
}

// SockaddrLen is the room of one source address: a sockaddr_in6.
const SockaddrLen = unix.SizeofSockaddrInet6

// Recv reads up to len(h) datagrams from fd without blocking; EAGAIN when
// none is queued.
func Recv(fd int, h []Hdr) (int, error) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&h[0])), //nolint:gosec // the kernel's mmsghdr array
			uintptr(len(h)), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return 0, e
		}
		return int(n), nil
	}
}

// Addr is the address recvmmsg wrote into b: IPv4, or IPv6 as the kernel
// gave it (an IPv4 peer of a dual-stack socket in its IPv4-mapped form,
// as net.UDPConn reads it too), a link-local one with its zone as the
// interface index.
func Addr(b *[SockaddrLen]byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[2:])
	switch binary.NativeEndian.Uint16(b[0:]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16([16]byte(b[8:24]))
		if scope := binary.NativeEndian.Uint32(b[24:28]); scope != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(scope), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// Reader is a batch of datagram buffers for Recv.
type Reader struct {
	hdrs  []Hdr
	iovs  []unix.Iovec
	names [][SockaddrLen]byte
	bufs  [][]byte
	used  int
}

// NewReader returns a reader of up to n datagrams of up to size bytes.
func NewReader(n, size int) *Reader {
	r := &Reader{hdrs: make([]Hdr, n), iovs: make([]unix.Iovec, n), names: make([][SockaddrLen]byte, n), bufs: make([][]byte, n)}
	for i := range n {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		r.hdrs[i].Msghdr.Name = &r.names[i][0]
		r.hdrs[i].Msghdr.Namelen = SockaddrLen
		r.hdrs[i].Msghdr.Iov = &r.iovs[i]
		r.hdrs[i].Msghdr.SetIovlen(1)
	}
	return r
}

// Read reads what is queued on fd, up to the reader's batch, without
// blocking: the datagrams are Datagram(0) … Datagram(n-1) until the next
// Read. EAGAIN when nothing is queued.
func (r *Reader) Read(fd int) (int, error) {
	// recvmmsg writes back the address lengths (and flags) of the entries
	// it filled only: put back the room of those.
	for i := range r.used {
		r.hdrs[i].Msghdr.Namelen = SockaddrLen
		r.hdrs[i].Msghdr.Flags = 0
	}
	n, err := Recv(fd, r.hdrs)
	r.used = n
	return n, err
}

// Datagram is datagram i of the last Read, its source, and whether it was
// larger than the reader's buffers (then cut).
func (r *Reader) Datagram(i int) (b []byte, src netip.AddrPort, truncated bool) {
	h := &r.hdrs[i]
	return r.bufs[i][:h.N], Addr(&r.names[i]), h.Msghdr.Flags&unix.MSG_TRUNC != 0
}
