package sipfront

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/mmsg"
	"github.com/umedge/umedge/core/sdk/router"
)

// # Sending over UDP in batches
//
// A UDP reader serves what one recvmmsg read (serveUDP) and most of what
// that makes the front end send leaves while it does: the answers, and the
// B2BUA's messages to the other leg. While a reader of a socket serves a
// batch, the socket's sends are queued (copied, so a sender reuses its
// bytes at once) and the reader writes them with one sendmmsg when its
// batch is done: one system call for a batch's datagrams, ~0.9 µs of the
// ~6 µs a datagram costs here (mmsg's BenchmarkWriter). A send from
// elsewhere (a timer's retransmission) in that time joins the queue; with
// no batch being served a send goes out at once, as before. So a datagram
// waits at most for the rest of one batch (≤ udpBatch datagrams served),
// and order is kept among the sends of one socket.

// udpSocket is a UDP listener's socket: every datagram the front end sends
// leaves through its send, answers and the B2BUA's requests alike.
type udpSocket struct {
	pc    *net.UDPConn
	local netip.AddrPort // the listener's address
	tap   *tap
	log   *slog.Logger
	rc    syscall.RawConn // nil: every send goes out at once

	mu      sync.Mutex
	serving int          // readers serving a batch: sends queue in w
	w       *mmsg.Writer // the queue
}

// udpQueue bounds what one queue holds: a reader's batch (udpBatch
// datagrams) seldom sends more than two datagrams for each read. Its bytes
// hold any UDP datagram (65,507 B at most), so a datagram that does not
// fit what is queued is sent after a flush; only a destination the queue
// does not take (a zone by name) goes out alone.
const (
	udpQueueLen   = 4 * udpBatch
	udpQueueBytes = 64 << 10
)

func newUDPSocket(pc *net.UDPConn, local netip.AddrPort, t *tap, log *slog.Logger) *udpSocket {
	u := &udpSocket{pc: pc, local: local, tap: t, log: log}
	rc, err := pc.SyscallConn()
	if err != nil {
		return u
	}
	_ = rc.Control(func(fd uintptr) {
		f, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) //nolint:gosec // a descriptor
		if err == nil {
			u.rc = rc
			u.w = mmsg.NewWriter(f, udpQueueLen, udpQueueBytes)
		}
	})
	return u
}

// send writes b to dst, or queues it while a reader serves a batch, and
// captures it once the kernel took it.
func (u *udpSocket) send(b []byte, dst netip.AddrPort) error {
	if u.rc != nil {
		u.mu.Lock()
		if u.serving > 0 {
			if !u.w.Fits(len(b)) {
				u.flushLocked()
			}
			if u.w.Add(b, dst) {
				u.mu.Unlock()
				return nil
			}
			// An address the queue does not take (a zone by name), or
			// an empty datagram: this one goes out at once, after what
			// is queued.
			u.flushLocked()
		}
		u.mu.Unlock()
	}
	_, err := u.pc.WriteToUDPAddrPort(b, dst)
	if err == nil {
		u.tap.capture(router.UDP, u.local, dst, b)
	}
	return err
}

// serve marks the start of a reader's batch: sends queue until done.
func (u *udpSocket) serve() {
	if u.rc == nil {
		return
	}
	u.mu.Lock()
	u.serving++
	u.mu.Unlock()
}

// done ends a reader's batch and writes what is queued (other readers'
// sends too: a datagram never waits for more than one batch).
func (u *udpSocket) done() {
	if u.rc == nil {
		return
	}
	u.mu.Lock()
	u.serving--
	u.flushLocked()
	u.mu.Unlock()
}

// flushLocked writes the queue. Called with u.mu held, which it holds
// throughout: sendmmsg does not wait (MSG_DONTWAIT) unless the socket's
// send buffer is full, when a plain send would wait too.
func (u *udpSocket) flushLocked() {
	w := u.w
	for w.Pending() > 0 {
		var from, to int
		var werr error
		err := u.rc.Write(func(fd uintptr) bool {
			from, to, werr = w.Write(int(fd))    //nolint:gosec // a descriptor
			return !errors.Is(werr, unix.EAGAIN) // EAGAIN: wait until the socket is writable
		})
		for i := from; i < to; i++ {
			b, dst := w.Datagram(i)
			u.tap.capture(router.UDP, u.local, dst, b)
		}
		if err != nil {
			// The socket itself failed (closed, or a write deadline),
			// not one datagram, and would fail again at once: what is
			// left is dropped, not retried with u.mu held.
			if !errors.Is(err, net.ErrClosed) {
				u.log.Debug("udp write", "dropped", w.Pending(), "err", err)
			}
			break
		}
		if werr != nil {
			_, dst := w.Datagram(from) // the one that failed, dropped
			u.log.Debug("udp write", "dst", dst, "err", werr)
		}
	}
	w.Reset()
}
