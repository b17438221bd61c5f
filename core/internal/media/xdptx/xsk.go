// Package xdptx sends IPv4/UDP datagrams through an AF_XDP socket's TX ring
// instead of a UDP socket: frames built by hand (Ethernet, IPv4, UDP) in a
// UMEM, handed to the driver by descriptor, one sendto kick per batch. In
// copy mode (XDP_COPY, what a veth and most drivers offer) the kernel still
// builds an skb per frame, but skips the UDP socket, the route lookup,
// ip_make_skb, netfilter's OUTPUT and POSTROUTING hooks, the neighbour
// layer and the qdisc: the frame goes to the device's transmit routine.
//
// The media engine's send_path = "xdp" sends latched IPv4 legs through it
// (core/internal/media/sendpath.go); sendpath_test.go measures it against
// UDP sockets ("Send paths measured" in docs/PERFORMANCE.md). An XSK is
// not safe for concurrent use.
package xdptx

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FrameSize is the size of one UMEM frame.
const FrameSize = 2048

// ring is one of the XSK's single-producer single-consumer rings, mapped
// from the kernel.
type ring struct {
	prod, cons *uint32
	mask       uint32
	descs      unsafe.Pointer // XDPDesc (TX) or uint64 (completion) entries
	mem        []byte
}

// XSK is an AF_XDP socket bound to one queue of one interface, with its own
// UMEM, a TX ring and a completion ring (no RX: it only sends).
type XSK struct {
	fd     int
	umem   []byte
	tx     ring
	comp   ring
	free   []uint64 // UMEM frame addresses not in flight
	txNext uint32   // the TX producer index not yet published
	pend   int      // descriptors written since the last kick
}

// Open makes an XSK on ifindex's queue in copy mode with frames UMEM frames
// of FrameSize bytes and TX and completion rings of ringSize entries (powers
// of two). budget, if > 0, is how many frames one kick may send
// (XDP_MAX_TX_SKB_BUDGET; the kernel's default is 32).
//
// sndbuf, if > 0, is the socket's send buffer (SO_SNDBUFFORCE): how many
// bytes of skbs it may have in flight before a kick stops taking frames.
func Open(ifindex, queue, frames, ringSize, budget, sndbuf int) (*XSK, error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_XDP socket: %w", err)
	}
	x := &XSK{fd: fd}
	if sndbuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf); err != nil {
			x.Close()
			return nil, fmt.Errorf("SO_SNDBUFFORCE %d: %w", sndbuf, err)
		}
	}
	if err := x.setup(ifindex, queue, frames, ringSize, budget); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}

func (x *XSK) setup(ifindex, queue, frames, ringSize, budget int) error {
	umem, err := unix.Mmap(-1, 0, frames*FrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap UMEM: %w", err)
	}
	x.umem = umem
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&umem[0]))), Len: uint64(len(umem)), Size: FrameSize} //nolint:gosec // the kernel pins this mapping
	if err := setsockopt(x.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("XDP_UMEM_REG: %w", err)
	}
	// A fill ring is required for bind even when nothing is received.
	for _, o := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(x.fd, unix.SOL_XDP, o, ringSize); err != nil {
			return fmt.Errorf("ring size (option %d): %w", o, err)
		}
	}
	if budget > 0 {
		// New in Linux 6.17: an older kernel (the image's 6.12) keeps its
		// fixed budget (TX_BATCH_SIZE, 32 a kick) and says ENOPROTOOPT.
		if err := unix.SetsockoptInt(x.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, budget); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
			return fmt.Errorf("XDP_MAX_TX_SKB_BUDGET %d: %w", budget, err)
		}
	}
	var off unix.XDPMmapOffsets
	l := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(x.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&l)), 0); e != 0 { //nolint:gosec // out parameters
		return fmt.Errorf("XDP_MMAP_OFFSETS: %w", e)
	}
	if x.tx, err = mapRing(x.fd, unix.XDP_PGOFF_TX_RING, off.Tx, ringSize, unsafe.Sizeof(unix.XDPDesc{})); err != nil {
		return fmt.Errorf("map TX ring: %w", err)
	}
	if x.comp, err = mapRing(x.fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, ringSize, 8); err != nil {
		return fmt.Errorf("map completion ring: %w", err)
	}
	sa := unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ifindex), QueueID: uint32(queue)} //nolint:gosec // small
	if err := unix.Bind(x.fd, &sa); err != nil {
		return fmt.Errorf("bind XSK to ifindex %d queue %d: %w", ifindex, queue, err)
	}
	x.free = make([]uint64, 0, frames)
	for i := frames - 1; i >= 0; i-- {
		x.free = append(x.free, uint64(i*FrameSize)) //nolint:gosec // small
	}
	x.txNext = atomic.LoadUint32(x.tx.prod)
	return nil
}

func mapRing(fd int, pgoff int64, o unix.XDPRingOffset, n int, entry uintptr) (ring, error) {
	size := int(o.Desc) + n*int(entry)
	mem, err := unix.Mmap(fd, pgoff, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, err
	}
	base := unsafe.Pointer(&mem[0])
	return ring{
		prod:  (*uint32)(unsafe.Add(base, o.Producer)),
		cons:  (*uint32)(unsafe.Add(base, o.Consumer)),
		mask:  uint32(n - 1), //nolint:gosec // a ring size
		descs: unsafe.Add(base, o.Desc),
		mem:   mem,
	}, nil
}

func setsockopt(fd, opt int, p unsafe.Pointer, l uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), l, 0); e != 0 {
		return e
	}
	return nil
}

// Close releases the socket and its mappings.
func (x *XSK) Close() {
	for _, m := range [][]byte{x.tx.mem, x.comp.mem, x.umem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	if x.fd >= 0 {
		_ = unix.Close(x.fd)
		x.fd = -1
	}
}

// Frame returns a free UMEM frame to build a datagram in, reaping
// completions first when none is free; ok is false when every frame is in
// flight (the caller kicks and tries again, or falls back).
func (x *XSK) Frame() (addr uint64, b []byte, ok bool) {
	if len(x.free) == 0 {
		x.Reap()
		if len(x.free) == 0 {
			return 0, nil, false
		}
	}
	addr = x.free[len(x.free)-1]
	x.free = x.free[:len(x.free)-1]
	return addr, x.umem[addr : addr+FrameSize : addr+FrameSize], true
}

// Queue puts the frame at addr, n bytes long, on the TX ring (not yet seen
// by the kernel: Kick publishes it). It returns false when the ring is full.
func (x *XSK) Queue(addr uint64, n int) bool {
	if x.txNext-atomic.LoadUint32(x.tx.cons) > x.tx.mask {
		return false
	}
	d := (*unix.XDPDesc)(unsafe.Add(x.tx.descs, uintptr(x.txNext&x.tx.mask)*unsafe.Sizeof(unix.XDPDesc{})))
	d.Addr, d.Len, d.Options = addr, uint32(n), 0 //nolint:gosec // ≤ FrameSize
	x.txNext++
	x.pend++
	return true
}

// Release gives back a frame Frame returned that was not queued.
func (x *XSK) Release(addr uint64) { x.free = append(x.free, addr) }

// Unsent is how many published descriptors the kernel has not taken yet,
// plus the queued ones not published.
func (x *XSK) Unsent() int { return int(x.txNext - atomic.LoadUint32(x.tx.cons)) }

// InFlight is how many frames the kernel has taken and not completed yet
// (as of the last reap: every kick reaps).
func (x *XSK) InFlight() int { return cap(x.free) - len(x.free) - x.Unsent() }

// Taken is the TX ring's consumer index: it moves as the kernel takes
// descriptors (wrapping), so two reads tell whether it took any between.
func (x *XSK) Taken() uint32 { return atomic.LoadUint32(x.tx.cons) }

// Flush publishes the queued descriptors and kicks the kernel without
// waiting for it: a few sendto calls while each takes some; what it does
// not take (a full send buffer or completion ring) stays on the ring for
// the next Flush. It returns the kernel's error when it is not transient.
func (x *XSK) Flush() error {
	for range 4 {
		took, err := x.kickOnce()
		if err != nil || !took {
			return err
		}
	}
	return nil
}

// kickOnce publishes the queued descriptors and, when the kernel has not
// taken all, makes one sendto; took says whether it took any. Completions
// are reaped either way.
func (x *XSK) kickOnce() (took bool, err error) {
	atomic.StoreUint32(x.tx.prod, x.txNext)
	x.pend = 0
	defer x.Reap()
	before := atomic.LoadUint32(x.tx.cons)
	if before == x.txNext {
		return false, nil
	}
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.EINTR:
	default:
		return false, fmt.Errorf("%w: %w", errKick, e)
	}
	return atomic.LoadUint32(x.tx.cons) != before, nil
}

// Pending is how many frames were queued since the last kick.
func (x *XSK) Pending() int { return x.pend }

// errKick is a kick the kernel refused for a reason other than "busy".
var errKick = errors.New("xsk kick")

// Kick publishes the queued descriptors and has the kernel send them: one
// sendto, repeated while the kernel stops at its budget with descriptors
// left. It returns the kernel's error when it is not a transient one.
func (x *XSK) Kick() error {
	// The kernel stops at its budget, and takes no frame while the
	// completion ring is full or the socket's send buffer is: frames sent
	// are charged to it until their skb is freed (over a veth, once the
	// peer has received it).
	var since time.Time
	for stuck := 0; x.Unsent() > 0; stuck++ {
		took, err := x.kickOnce()
		switch {
		case err != nil:
			return err
		case took:
			stuck = 0
		case stuck == 1000:
			since = time.Now()
		case stuck > 1000 && time.Since(since) > time.Second:
			return fmt.Errorf("%w: the kernel took no descriptor for a second (%d left)", errKick, x.Unsent())
		}
	}
	return nil
}

// Reap returns the frames the kernel has finished with to the free list.
func (x *XSK) Reap() {
	cons := atomic.LoadUint32(x.comp.cons)
	prod := atomic.LoadUint32(x.comp.prod)
	for ; cons != prod; cons++ {
		x.free = append(x.free, *(*uint64)(unsafe.Add(x.comp.descs, uintptr(cons&x.comp.mask)*8)))
	}
	atomic.StoreUint32(x.comp.cons, cons)
}

// Stats is the kernel's XDP_STATISTICS of the socket.
func (x *XSK) Stats() (unix.XDPStatistics, error) {
	var s unix.XDPStatistics
	l := uint32(unsafe.Sizeof(s))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(x.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&s)), uintptr(unsafe.Pointer(&l)), 0); e != 0 { //nolint:gosec // out parameters
		return s, e
	}
	return s, nil
}
