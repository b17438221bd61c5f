// Package mmsg reads and writes UDP datagrams in batches with recvmmsg(2)
// and sendmmsg(2), for the sockets that serve many datagrams a second: one
// system call (and one wake-up of the Go scheduler) for what has queued,
// instead of one each. x/net's ReadBatch and WriteBatch would do it with a
// net.Addr allocated per datagram; x/sys/unix has neither call.
//
// Linux on 64-bit architectures (the appliance's amd64 and arm64): Hdr
// is struct mmsghdr's layout there.
package mmsg

import (
	"encoding/binary"
	"errors"
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
func Recv(fd int, h []Hdr) (int, error) { return call(unix.SYS_RECVMMSG, fd, h) }

// Send writes the datagrams of h on fd without blocking and returns how
// many the kernel took: fewer than len(h) when the socket's send buffer
// filled (then EAGAIN on the next call) or when datagram n failed (the
// next call, starting at it, returns its error).
func Send(fd int, h []Hdr) (int, error) { return call(unix.SYS_SENDMMSG, fd, h) }

// call is recvmmsg or sendmmsg (trap) on h, without blocking, again when a
// signal interrupted it.
func call(trap uintptr, fd int, h []Hdr) (int, error) {
	for {
		n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&h[0])), //nolint:gosec // the kernel's mmsghdr array
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

// PutAddr writes ap into b as the sockaddr a socket of family (AF_INET or
// AF_INET6) sends to, IPv4 to an AF_INET6 socket in its IPv4-mapped form,
// and returns its length; 0 when ap cannot be sent from such a socket (an
// IPv6 address to an AF_INET socket, or a zone that is no interface index).
func PutAddr(b *[SockaddrLen]byte, family int, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	if family == unix.AF_INET {
		if !a.Unmap().Is4() {
			return 0
		}
		binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		v4 := a.Unmap().As4()
		copy(b[4:8], v4[:])
		clear(b[8:16])
		return unix.SizeofSockaddrInet4
	}
	var scope uint64
	if z := a.Zone(); z != "" {
		var err error
		if scope, err = strconv.ParseUint(z, 10, 32); err != nil {
			return 0
		}
	}
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	clear(b[4:8]) // flow info
	v6 := a.As16()
	copy(b[8:24], v6[:])
	binary.NativeEndian.PutUint32(b[24:], uint32(scope))
	return unix.SizeofSockaddrInet6
}

// Writer is a batch of datagrams for Send: each added datagram is copied
// into the writer's own buffer, so its caller may reuse its bytes at once.
type Writer struct {
	family int
	hdrs   []Hdr
	iovs   []unix.Iovec
	names  [][SockaddrLen]byte
	dsts   []netip.AddrPort
	data   [][]byte // each datagram's bytes in buf
	buf    []byte
	used   int // bytes of buf taken
	n      int // datagrams added
	sent   int // of them, written
}

// NewWriter returns a writer of up to n datagrams of together up to size
// bytes, for a socket of family (AF_INET or AF_INET6).
func NewWriter(family, n, size int) *Writer {
	return &Writer{family: family, hdrs: make([]Hdr, n), iovs: make([]unix.Iovec, n),
		names: make([][SockaddrLen]byte, n), dsts: make([]netip.AddrPort, n), data: make([][]byte, n), buf: make([]byte, size)}
}

// Add queues b to dst and reports whether it did: not when the batch is
// full (write it first) or when dst is no address the socket sends to
// (PutAddr; the caller sends that one alone, to have its error).
func (w *Writer) Add(b []byte, dst netip.AddrPort) bool {
	if w.n == len(w.hdrs) || len(b) > len(w.buf)-w.used || len(b) == 0 {
		return false
	}
	nl := PutAddr(&w.names[w.n], w.family, dst)
	if nl == 0 {
		return false
	}
	d := w.buf[w.used : w.used+len(b)]
	copy(d, b)
	w.data[w.n] = d
	w.iovs[w.n].Base = &d[0]
	w.iovs[w.n].SetLen(len(b))
	h := &w.hdrs[w.n].Msghdr
	h.Name = &w.names[w.n][0]
	h.Namelen = nl
	h.Iov = &w.iovs[w.n]
	h.SetIovlen(1)
	w.dsts[w.n] = dst
	w.used += len(b)
	w.n++
	return true
}

// Fits reports whether a datagram of size bytes would fit the batch now.
func (w *Writer) Fits(size int) bool { return w.n < len(w.hdrs) && size <= len(w.buf)-w.used }

// Pending is how many added datagrams are not written yet.
func (w *Writer) Pending() int { return w.n - w.sent }

// Datagram is added datagram i, its bytes (valid until Reset) and its
// destination.
func (w *Writer) Datagram(i int) ([]byte, netip.AddrPort) {
	return w.data[i], w.dsts[i]
}

// Write writes what is pending on fd without blocking and returns the
// index range [from, to) of the datagrams it wrote. EAGAIN when the
// socket took none (wait until it is writable, then Write again); any
// other error is datagram from's own, which is dropped: the next Write
// goes on with the one after it.
func (w *Writer) Write(fd int) (from, to int, err error) {
	from = w.sent
	if w.sent == w.n {
		return from, from, nil
	}
	n, err := Send(fd, w.hdrs[w.sent:w.n])
	if err != nil {
		if !errors.Is(err, unix.EAGAIN) {
			w.sent++ // datagram from failed: drop it
		}
		return from, from, err
	}
	w.sent += n
	return from, w.sent, nil
}

// Reset empties the writer.
func (w *Writer) Reset() { w.used, w.n, w.sent = 0, 0, 0 }
