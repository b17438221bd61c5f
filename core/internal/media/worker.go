package media

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"golang.org/x/sys/unix"
)

const (
	// coalesce is the longest rest of a worker between two rounds. A
	// packet that finds the worker asleep in epoll_wait is served at once;
	// the ones that arrive while it works or rests wait for the next
	// round. The cost of a relay is the wake-up, not the copy: at 100
	// calls a wake-up per packet is 10,000 a second, one per millisecond
	// serves ten packets each.
	coalesce = time.Millisecond
	// fullRound is the number of datagrams that makes a round worth its
	// wake-up without a rest: the wake-up costs a few µs, under 0.3 µs a
	// packet shared by 64.
	fullRound = 64

	batch   = 32   // datagrams per recvmmsg/sendmmsg
	bufSize = 2048 // one datagram: a 1500-byte MTU plus SRTP tag and headroom
	events  = 128  // epoll events per wake-up
)

// sock is one of a leg's two sockets.
type sock struct {
	fd   int
	port int
	rtcp bool // the RTCP socket (RTP+1); RTCP may also arrive on the RTP one (rtcp-mux)
	leg  *leg // nil: the mark of an idle pair's socket (pairpool.go)
	// registered: the socket is in the epoll set of its session's worker
	// (an idle pair taken on the worker it idled on is already).
	registered bool
	// filtered: the socket carries the engine's idle filter
	// (pairpool.go), so its pair is parked by a store, not by connect(2).
	filtered bool
	// dead: the session released the socket while it goes on (a stream
	// declined by a re-INVITE); set under the session's lock, so a worker
	// that looked the socket up before never reads the descriptor again.
	dead bool
}

// worker is one event loop: an epoll set over the sockets of its sessions.
// Everything below mu is touched only by the worker goroutine.
type worker struct {
	epfd, wakefd int

	mu      sync.Mutex
	socks   []*sock // by descriptor
	nsess   int     // sessions placed here, for balancing
	closing bool

	wakeups   atomic.Uint64 // epoll_wait returns that had events
	idleReads atomic.Uint64 // datagrams drained from idle pairs (pairpool.go)
	reads     atomic.Uint64 // datagrams read
	txDrops   atomic.Uint64 // datagrams the kernel refused (full send buffer)

	ev      [events]unix.EpollEvent
	rhdr    [batch]mmsghdr
	riov    [batch]unix.Iovec
	rname   [batch][sockaddrLen]byte
	rbuf    [batch][bufSize]byte
	rused   int                  // rhdr entries the last recvmmsg may have written
	plain   [batch][bufSize]byte // decrypted SRTP, valid until the batch is flushed
	hdr     rtp.Header           // scratch for pion/srtp, reused
	rtcpHdr rtcp.Header          // likewise for SRTCP

	tx    [batch]txItem
	ntx   int
	thdr  [batch]mmsghdr
	tiov  [batch]unix.Iovec
	tname [batch][sockaddrLen]byte
	tbuf  [batch][bufSize]byte // encrypted output and STUN answers
	rpbuf [batch][bufSize]byte // re-packetised RTP (repack.go), a buffer a queue slot

	xdp *workerXDP // the XDP send path (sendpath.go); nil: sockets only

	now  int64  // unix ns of the batch being served: the sinks' clock
	pend []*leg // legs whose repacker holds audio, each once (leg.rpQueued)
	due  int64  // unix ns when the first of pend's audio is due; 0 = none
}

// txItem is one datagram queued for the flush at the end of a read.
type txItem struct {
	fd  int
	dst netip.AddrPort
	b   []byte
	// src is the socket's address when the datagram may take the XDP
	// send path (a latched leg's, sendpath.go); zero: the socket's.
	src netip.AddrPort
	tos uint8 // the socket's TOS byte, for the XDP path's frame
}

func newWorker() (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("media: eventfd: %w", err)
	}
	w := &worker{epfd: epfd, wakefd: wakefd}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("media: epoll add eventfd: %w", err)
	}
	for i := range w.rhdr {
		w.riov[i].Base = &w.rbuf[i][0]
		w.riov[i].SetLen(bufSize)
		w.rhdr[i].Msghdr.Iov = &w.riov[i]
		w.rhdr[i].Msghdr.SetIovlen(1)
		w.rhdr[i].Msghdr.Name = &w.rname[i][0]
		w.rhdr[i].Msghdr.Namelen = sockaddrLen
		w.thdr[i].Msghdr.Iov = &w.tiov[i]
		w.thdr[i].Msghdr.SetIovlen(1)
		w.thdr[i].Msghdr.Name = &w.tname[i][0]
	}
	return w, nil
}

func (w *worker) closeFDs() {
	_ = unix.Close(w.wakefd)
	_ = unix.Close(w.epfd)
}

// add registers s with the worker's epoll set, or, when it is there
// already (an idle pair's, pairpool.go), puts it in its mark's place.
func (w *worker) add(s *sock) error {
	w.setSlot(s.fd, s)
	if s.registered {
		return nil
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, s.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)}); err != nil {
		w.remove(s)
		return fmt.Errorf("media: epoll add port %d: %w", s.port, err)
	}
	s.registered = true
	return nil
}

// setSlot makes s what the worker serves for descriptor fd.
func (w *worker) setSlot(fd int, s *sock) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fd >= len(w.socks) {
		w.socks = append(w.socks, make([]*sock, fd+1-len(w.socks))...)
	}
	w.socks[fd] = s
}

// clearSlot forgets descriptor fd if s is what the worker serves for it.
// After it returns the worker no longer touches fd for s.
func (w *worker) clearSlot(fd int, s *sock) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fd < len(w.socks) && w.socks[fd] == s {
		w.socks[fd] = nil
	}
}

// remove takes s out of the epoll set; the caller closes its descriptor.
func (w *worker) remove(s *sock) {
	w.mu.Lock()
	// Or the mark of the idle pair s came from, when the session that
	// took it ended before its sockets took the marks' places.
	if s.fd < len(w.socks) && w.socks[s.fd] != nil && (w.socks[s.fd] == s || w.socks[s.fd].leg == nil) {
		w.socks[s.fd] = nil
	}
	w.mu.Unlock()
	// ENOENT when add failed half-way: nothing to undo.
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
}

// stop wakes the loop and makes it return.
func (w *worker) stop() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	var one [8]byte
	one[0] = 1 // eventfd takes a native-endian uint64; 1 in any byte order is non-zero
	_, _ = unix.Write(w.wakefd, one[:])
}

// run is the event loop: rounds, each followed by a rest (restFor) so that
// the next round finds several packets waiting instead of waking for each.
func (w *worker) run() {
	for {
		served, took, closing := w.round()
		if closing {
			return
		}
		if w.xdp != nil {
			w.xdp.flush() // the round's frames
			w.xdp.retry() // and what a full send buffer left on an XSK before
		}
		w.expire(time.Now().UnixNano())
		if w.xdp != nil {
			w.xdp.flush() // the expired audio's
		}
		if rest := restFor(served, took); rest > 0 {
			time.Sleep(rest) // a Go timer: the worker's P runs other goroutines meanwhile
		}
	}
}

// round waits until a socket is ready, then serves every ready socket: more
// than one epoll_wait when more are ready than one returns, so that a
// busy worker never leaves sockets to the round after its rest. It returns
// the datagrams read, the time it took from its wake-up, and whether the
// worker is to stop.
func (w *worker) round() (served int, took time.Duration, closing bool) {
	n, err := w.wait(w.timeout())
	for errors.Is(err, unix.EINTR) {
		n, err = w.wait(w.timeout())
	}
	woke := time.Now()
	now := woke.UnixNano()
	w.wakeups.Add(1)
	for {
		if err != nil && !errors.Is(err, unix.EINTR) {
			panic(fmt.Sprintf("media: epoll_wait: %v", err)) // EBADF/EINVAL: a bug, not a runtime condition
		}
		for i := range n {
			fd := w.ev[i].Fd
			if int(fd) == w.wakefd {
				w.mu.Lock()
				closing = w.closing
				w.mu.Unlock()
				if closing {
					return served, time.Since(woke), true
				}
				continue
			}
			w.mu.Lock()
			var s *sock
			if int(fd) < len(w.socks) {
				s = w.socks[fd]
			}
			if s != nil && s.leg == nil {
				// An idle pair's socket took a datagram whose lookup
				// raced its connect, or one taken by a session not
				// published yet (pairpool.go): drained under mu, which
				// the pool holds to take or close the pair; a few reads
				// at a time, so that a flood at a pair just disconnected
				// cannot keep the worker (and mu) here.
				w.idleReads.Add(drainSocket(s.fd, 4))
				s = nil
			}
			w.mu.Unlock()
			if s != nil {
				served += w.serve(s, now)
			}
		}
		if n < len(w.ev) && err == nil {
			return served, time.Since(woke), false
		}
		n, err = w.wait(0)
		// A busy round can last (a sustained flood): keep the clock of
		// latching, jitter and inactivity current.
		now = time.Now().UnixNano()
	}
}

// restFor is how long a worker rests after a round that served n datagrams
// and took took: the rest of coalesce after a small round, none after a
// full one. A full round paid its wake-up over enough packets already; a
// rest after it would only hold the next ones back, and at high load that
// wait is what the p99 is made of.
func restFor(n int, took time.Duration) time.Duration {
	if n >= fullRound {
		return 0
	}
	return coalesce - took
}

// wait is epoll_wait. The blocking wait goes through the Go scheduler's
// syscall path, so that the worker's P runs other goroutines while it
// waits; a poll (timeout 0) returns at once and skips that.
func (w *worker) wait(timeout int) (int, error) {
	if timeout != 0 {
		return unix.EpollWait(w.epfd, w.ev[:], timeout)
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(w.epfd), uintptr(unsafe.Pointer(&w.ev[0])), //nolint:gosec // the worker's event array
		uintptr(len(w.ev)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// serve reads one batch from s, runs it through s's leg, and flushes what it
// produced, all under the session's lock so that Close cannot close the
// descriptors in between. It returns the number of datagrams read. One
// batch, not all that is queued: epoll is level-triggered, so a socket with
// more left is served again at the next wait, after the other ready ones (a
// flood at one port cannot starve the others).
func (w *worker) serve(s *sock, now int64) int {
	ss := s.leg.sess
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed || s.dead {
		return 0
	}
	// recvmmsg writes back only the address lengths (and msg_len) of the
	// entries it filled: put back the room of those, not of all.
	for i := range w.rused {
		w.rhdr[i].Msghdr.Namelen = sockaddrLen
	}
	n, err := recvmmsg(s.fd, w.rhdr[:])
	w.rused = n // a failed entry is left as it was
	if err != nil || n == 0 {
		return 0 // EAGAIN: another wake-up took it; an ICMP error surfaced as ECONNREFUSED: nothing to read
	}
	w.reads.Add(uint64(n))
	w.now = now
	for i := range n {
		if w.rhdr[i].Msghdr.Flags&unix.MSG_TRUNC != 0 {
			// Larger than bufSize (a jumbo or reassembled datagram): what
			// was read is cut, so nothing of it is relayed or parsed.
			s.leg.stats.strays++
			continue
		}
		src := getSockaddr(&w.rname[i])
		s.leg.receive(w, s, i, w.rbuf[i][:w.rhdr[i].N], src, now)
	}
	w.flush()
	return n
}

// room makes room for one more datagram in the current flush, sending what
// is queued when it is full: a read queues one datagram for each it took,
// but a re-packetiser that splits queues more (repack.go). What was queued
// points into buffers that stay valid until the batch ends.
func (w *worker) room() {
	if w.ntx == len(w.tx) {
		w.flush()
	}
}

// scratch is the buffer of a packet a repacker makes, for the next queue
// slot.
func (w *worker) scratch() []byte {
	w.room()
	return w.rpbuf[w.ntx][:]
}

// pending puts l on the list of legs whose repacker holds audio, when it
// does; called with l's session locked.
func (w *worker) pending(l *leg) {
	if l.rp.n == 0 {
		return
	}
	if !l.rpQueued {
		l.rpQueued = true
		w.pend = append(w.pend, l) // its room stays: none allocated once the list had its longest
	}
	if w.due == 0 || l.rp.due < w.due {
		w.due = l.rp.due
	}
}

// timeout is how long a round may wait for a socket, in ms for epoll_wait:
// until the first pending audio is due, or for ever.
func (w *worker) timeout() int {
	t := w.pendTimeout()
	if (t < 0 || t > 1) && w.xdp != nil && w.xdp.backlog() {
		return 1
	}
	return t
}

// pendTimeout is timeout for the pending audio alone.
func (w *worker) pendTimeout() int {
	if len(w.pend) == 0 {
		return -1
	}
	d := w.due - time.Now().UnixNano()
	if d <= 0 {
		return 0
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// expire sends the pending audio that is due at now (repack.go: no audio
// waits past its time for a packet that does not come). Each session is
// locked while its packets go out, as in serve.
func (w *worker) expire(now int64) {
	if len(w.pend) == 0 || now < w.due {
		return
	}
	keep := w.pend[:0]
	w.due = 0
	for _, l := range w.pend {
		s := l.sess
		s.mu.Lock()
		if !s.closed && l.rp != nil && !l.off && l.rtp != nil && !l.rtp.dead && l.rp.expire(now, l) {
			keep = append(keep, l)
			if w.due == 0 || l.rp.due < w.due {
				w.due = l.rp.due
			}
		} else {
			l.rpQueued = false
		}
		w.flush()
		s.mu.Unlock()
	}
	clear(w.pend[len(keep):])
	w.pend = keep
}

// queue adds a datagram to the current flush; room makes sure it has
// one.
func (w *worker) queue(fd int, dst netip.AddrPort, b []byte) {
	w.queueFrom(fd, netip.AddrPort{}, dst, b, 0)
}

// queueFrom is queue for a datagram that may take the XDP send path from
// src, the address of fd.
func (w *worker) queueFrom(fd int, src, dst netip.AddrPort, b []byte, tos uint8) {
	if w.ntx == len(w.tx) {
		w.txDrops.Add(1)
		return
	}
	w.tx[w.ntx] = txItem{fd: fd, dst: dst, b: b, src: src, tos: tos}
	w.ntx++
}

// flush sends the queued datagrams: those of latched legs through an XSK
// under send_path "xdp" (sendpath.go), the others with one sendmmsg per
// run of the same socket.
func (w *worker) flush() {
	n := w.ntx
	if w.xdp != nil {
		w.ntx = w.flushXDP()
	}
	for start := 0; start < w.ntx; {
		end := start + 1
		for end < w.ntx && w.tx[end].fd == w.tx[start].fd {
			end++
		}
		for i := start; i < end; i++ {
			it := &w.tx[i]
			w.tiov[i].Base = unsafe.SliceData(it.b) //nolint:gosec // iovec of a buffer the worker keeps until sendmmsg returns
			w.tiov[i].SetLen(len(it.b))
			w.thdr[i].Msghdr.Namelen = putSockaddr(&w.tname[i], it.dst)
		}
		if end == start+1 {
			// One datagram for this socket, the usual case (a socket
			// takes 50 packets a second): sendto skips the msghdr copy.
			if sendtoRaw(w.tx[start].fd, w.tx[start].b, &w.tname[start], w.thdr[start].Msghdr.Namelen) != nil {
				w.txDrops.Add(1)
			}
			start = end
			continue
		}
		for start < end {
			sent, err := sendmmsg(w.tx[start].fd, w.thdr[start:end])
			switch {
			case err != nil:
				// The first datagram failed (no route, EAGAIN): drop it,
				// try the rest.
				w.txDrops.Add(1)
				start++
			case sent == 0:
				w.txDrops.Add(uint64(end - start))
				start = end
			default:
				start += sent
			}
		}
	}
	clear(w.tx[:n]) // drop references into session buffers
	w.ntx = 0
}

// flushXDP queues the datagrams the XDP path takes on their XSKs and
// keeps the others, in their order, at the front of the queue; it returns
// how many it kept. The XSKs are kicked once a round (run), not per
// socket served: one system call for the round's frames.
func (w *worker) flushXDP() int {
	kept := 0
	for i := range w.ntx {
		it := &w.tx[i]
		if it.src.IsValid() && w.xdp.send(it.src, it.dst, it.tos, it.b, w.now) {
			continue
		}
		if kept != i {
			w.tx[kept] = *it
		}
		kept++
	}
	if kept > 0 {
		// What goes through the sockets now must not pass what is queued
		// on an XSK before it: kick those first.
		w.xdp.flush()
	}
	return kept
}
