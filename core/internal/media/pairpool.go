package media

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umedge/umedge/core/internal/media/idlefilter"
	"golang.org/x/sys/unix"
)

// # Idle pairs: bound sockets kept for the next session
//
// Opening a leg's sockets (socket, bind, twice), registering them with a
// worker and closing them again costs about 9 µs a socket here, some 30 µs
// of a two-leg call's, the largest part of a B2BUA call's media cost. So
// a leg whose session ends does not close its RTP/RTCP pair: the pair
// stays bound and in its worker's epoll set, idle, and a later leg on the
// same local address (and, when it can, the same worker) takes it instead
// of opening sockets, with no system call to take it (on its own worker:
// from another, an epoll_ctl each way). The pair's
// ports stay in the one port pool of the core: an idle pair counts as free
// (EngineStats.PortsFree), a leg on another local address that finds no
// other free pair takes its ports (the idle sockets are closed), and
// ErrNoPorts still means that no pair is free at all.
//
// An idle pair is parked: nothing that arrives at it from then on reaches
// its queue. Every media socket the engine opens carries one socket filter
// (package idlefilter: a BPF_PROG_TYPE_SOCKET_FILTER program, loaded once
// per engine, attached with SO_ATTACH_BPF when the socket is opened) that
// reads a datagram's UDP destination port and drops it when the port's
// mark is set in an array the engine shares with the kernel by mmap (one
// u32 per port of the range). Parking a pair is two atomic stores into
// that memory, waking it for its next session two more: no system call.
// The kernel runs the filter before it queues a datagram, so a flood at
// an idle pair costs no queue, no memory and no wake-up of a worker (an
// idle socket never becomes readable); the program counts what it drops
// (a per-CPU counter, read by EngineStats with one syscall, which adds it
// to UnallocatedDrops; the kernel also counts each in Udp InErrors and the
// socket's drops, as for any filter's drop), and no ICMP error answers. Every
// datagram an active leg receives pays the filter: some 10 ns
// (idlefilter.BenchmarkFilter; BenchmarkRelay is unchanged within its
// noise). Measured on this machine (2 vCPUs, Linux 6.18, 2026-12-02;
// BenchmarkIdlePark): a park and wake of a pair costs 12 ns with the
// filter against 4.1–4.7 µs by connect(2) — four syscalls, each a route
// lookup and a rehash of the socket, which a CPU profile of the B2BUA
// benchmark at 4,500 calls/s put at 5.8 % of edged; a two-leg session
// opened and closed on idle pairs (BenchmarkSessionOpenClose/idle-pairs)
// went from 12.3–13.2 to 2.9–4.6 µs of CPU. A pair that is opened, not
// taken from the pool, pays the attach, a setsockopt a socket: some
// 1–2 µs each (a session of four new sockets, 37–41 µs of CPU before,
// 41–48 with the attach, on a noisy machine). An engine that keeps no
// idle pairs (Config.IdlePairs < 0) loads no filter.
//
// Where the program cannot be loaded or a probe socket refuses it (no
// CAP_BPF, an old kernel), the engine says so in one line at start
// (EngineStats.IdleFilter is false) and parks by connect(2); so does a
// pair one of whose sockets refused the filter (one line too). Such an
// idle socket is connected to its own address: the kernel delivers a
// UDP datagram to a connected socket only from the address it is connected
// to, and nobody else can send from a port we hold, so whatever arrives at
// such a pair finds no socket, exactly as at a port with no socket at
// all: no queue, no memory, no wake-up of a worker, an ICMP port
// unreachable, and the kernel's Udp (Udp6) NoPorts counter, which
// EngineStats.UnallocatedDrops reports; waking it is a connect to
// AF_UNSPEC on each socket.
//
// Either way, what was queued before the pair was parked (sent to the
// ended call, not read yet), or raced the parking (a datagram the filter
// was looking at on another CPU as the mark was stored, or whose lookup
// raced the connect), is read and dropped by the worker, which finds the
// socket readable and the pair's mark in its place, and counted there
// too; a pair taken inside its quarantine is drained once more on the way
// out, before it is woken. A pair's ports are unparked when it is woken
// or closed, before they go back to the pool, so that a socket bound to
// them anew receives.
//
// What a reused pair must not carry into its new session:
//
//   - Packets of the old call. A pair is handed out only after
//     Config.IdleQuarantine (DefaultIdleQuarantine, 2 s) since its session
//     ended, oldest first, so that the old peer has stopped sending: what
//     is in flight when the call ends, and what a peer sends until our BYE
//     reaches it, retransmitted after T1 (0.5 s) and again 1 s later when
//     lost (RFC 3261 §17.1.2). The latching window does not bound this: it
//     runs from the new call's answer and bounds how long that call can be
//     re-latched by anybody, which a quarantine of any length does not
//     change. The longer the quarantine, the more pairs a call rate needs
//     idle (rate × 2 legs × quarantine) before the pool serves every leg.
//     Only when no other pair is free does a leg take a pair still in
//     quarantine: a free port is never refused, as a port that had been
//     closed came back at once before the pool (EngineStats.PairsReusedEarly).
//   - State. A session gets new legs: latching, SRTP contexts, ICE
//     credentials, RTCP and receiver statistics, counters start afresh;
//     only the descriptors are kept. The kernel fast path's entries for the
//     pair's ports are deleted before it goes idle (a pair whose entry
//     cannot be deleted is closed instead): the program would otherwise
//     forward a new call's packets by the old call's entry.
//
// The pool is bounded (Config.IdlePairs): by default a quarter of the
// process's descriptor limit (RLIMIT_NOFILE, which the Go runtime raises to
// its hard limit) in pairs of two, at most the range's pairs and
// maxIdlePairs; a pair that does not fit is closed as before (closing the
// oldest idle pair instead would cost the same syscalls and lose an older,
// safer pair). Serving every leg from the pool takes rate × 2 legs ×
// quarantine idle pairs — 16,000 at 4,000 calls/s — which maxIdlePairs
// allows where the range and the limit do: the appliance's init raises
// RLIMIT_NOFILE to fs.nr_open (1,048,576), so there the range bounds it
// (the shipped 16384–32767 holds 8,192 pairs); under a limit of 20,000 a
// quarter is 2,500 pairs. What an idle pair costs: nothing in user space
// but its descriptors, and in the kernel 5.6 KiB, 2.8 KiB a socket —
// measured as the slab growth (/proc/slabinfo) of 10,000 bound UDP sockets
// connected to themselves and in an epoll set (the filter adds nothing per
// socket: the sockets share the one program, and its array is 4 bytes a
// port of the range), three runs 2,777–2,881 B
// by /proc/meminfo's Slab (2026-12-02, Linux 6.x amd64): the UDP sock
// 1,344 B, its inode 832, dentry and file 192 each, the epoll item 128,
// small ones the rest; /proc/net/sockstat's UDP "mem" does not move (it
// counts queued datagrams, of which an idle socket has none). So the
// full default pool of maxIdlePairs costs ~90 MiB of kernel memory, the
// shipped range's 8,192 pairs ~45 MiB; Config.IdlePairs bounds it lower.
// Idle pairs are kept per local address (an IPv4 and an IPv6 leg never
// share one) and per worker. Engine.Close closes them all.

// DefaultIdleQuarantine is how long an idle pair rests before a new session
// may take it; see above.
const DefaultIdleQuarantine = 2 * time.Second

// maxIdlePairs caps the derived bound of the idle pool: 32,768
// descriptors, ~90 MiB of kernel memory (see above); enough for every
// leg of 4,000 calls/s with the default quarantine.
const maxIdlePairs = 16384

// idlePair is one leg's RTP and RTCP sockets, bound, parked, in w's epoll
// set where mark stands for them: a worker that finds one readable (what
// was queued before it was parked, or a datagram that raced the parking)
// drains it.
type idlePair struct {
	local netip.Addr
	port  int    // RTP; RTCP is port+1
	fd    [2]int // RTP, RTCP
	mark  [2]sock
	w     *worker
	freed int64              // unix ns the session ended
	park  *idlefilter.Filter // parked by the filter's marks; nil: connected to itself
}

// idleKey names one queue of idle pairs.
type idleKey struct {
	local netip.Addr
	w     *worker
}

// idlePool holds the idle pairs per local address and worker, oldest
// first.
type idlePool struct {
	max        int
	quarantine time.Duration

	mu     sync.Mutex
	queues map[idleKey][]*idlePair
	n      int
	closed bool

	arrived atomic.Uint64 // datagrams an idle pair taken inside its quarantine still held, dropped
	reused  atomic.Uint64 // legs that took an idle pair
	early   atomic.Uint64 // of reused, pairs taken inside their quarantine (nothing else free)
	opened  atomic.Uint64 // legs that opened their sockets
}

// idleBound is the default bound of the idle pool for a range of pairs
// pairs under a descriptor limit of nofile.
func idleBound(pairs int, nofile uint64) int {
	return int(min(uint64(pairs), nofile/8, maxIdlePairs)) //nolint:gosec // bounded by maxIdlePairs
}

func newIdlePool(cfg Config, pairs int) *idlePool {
	p := &idlePool{max: cfg.IdlePairs, quarantine: cfg.IdleQuarantine, queues: make(map[idleKey][]*idlePair)}
	if p.max == 0 {
		nofile := uint64(1024)
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil {
			nofile = rl.Cur
		}
		p.max = idleBound(pairs, nofile)
	}
	p.max = max(p.max, 0)
	if p.quarantine == 0 {
		p.quarantine = DefaultIdleQuarantine
	}
	return p
}

// idle parks the pair of a closed session: its ports marked for the
// filter (two stores), or, without it, its sockets connected to
// themselves, so that nothing reaches it from here on. What was queued
// before (sent to the ended session, unread) keeps the sockets readable:
// the worker, finding the marks, drains and counts it, long before the
// quarantine is over. It reports whether the pair can be kept; one that
// cannot is left unparked.
func (ip *idlePair) idle() bool {
	if ip.park != nil {
		ip.park.Park(ip.port)
		ip.park.Park(ip.port + 1)
		return true
	}
	for i, fd := range ip.fd {
		if connectSelf(fd, netip.AddrPortFrom(ip.local, uint16(ip.port+i))) != nil { //nolint:gosec // a port
			return false
		}
	}
	return true
}

// wake unparks a pair taken for a new session: it receives from anyone
// again. Two stores, or two disconnects.
func (ip *idlePair) wake() error {
	if ip.park != nil {
		ip.unpark()
		return nil
	}
	for _, fd := range ip.fd {
		if err := disconnect(fd); err != nil {
			return err
		}
	}
	return nil
}

// unpark clears the filter's marks of the pair's ports (nothing when it
// was parked by connect): whatever binds them next receives.
func (ip *idlePair) unpark() {
	if ip.park != nil {
		ip.park.Unpark(ip.port)
		ip.park.Unpark(ip.port + 1)
	}
}

// room reports whether put would keep a pair now.
func (p *idlePool) room() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && p.n < p.max
}

// put keeps ip, made idle, and reports whether it did; when it did not
// (the pool is full or closed) the caller closes the sockets.
func (p *idlePool) put(ip *idlePair) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.n >= p.max {
		return false
	}
	k := idleKey{ip.local, ip.w}
	p.queues[k] = append(p.queues[k], ip)
	p.n++
	return true
}

// take returns the oldest idle pair on local and w that served its
// quarantine at now, else the oldest such pair on local of another worker,
// or nil. With anyPair, what is left when no other pair is free: the
// oldest pair on local whatever its age and worker (the oldest, not w's:
// the younger a pair, the likelier its old call's peer still sends to
// it), and else the oldest pair on another address (the caller closes its
// sockets and binds its ports anew).
func (p *idlePool) take(local netip.Addr, w *worker, now int64, anyPair bool) *idlePair {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		return nil
	}
	served := func(q []*idlePair) bool { return now-q[0].freed >= int64(p.quarantine) }
	if q := p.queues[idleKey{local, w}]; len(q) > 0 && served(q) {
		return p.pop(idleKey{local, w})
	}
	var best idleKey
	var oldest *idlePair
	for k, q := range p.queues {
		if k.local == local && (anyPair || k.w != w && served(q)) && (oldest == nil || q[0].freed < oldest.freed) {
			best, oldest = k, q[0]
		}
	}
	if oldest == nil && anyPair {
		for k, q := range p.queues {
			if oldest == nil || q[0].freed < oldest.freed {
				best, oldest = k, q[0]
			}
		}
	}
	if oldest == nil {
		return nil
	}
	return p.pop(best)
}

// pop takes the head of queue k. Called with p.mu held.
func (p *idlePool) pop(k idleKey) *idlePair {
	q := p.queues[k]
	ip := q[0]
	q[0] = nil
	if len(q) == 1 {
		delete(p.queues, k)
	} else {
		p.queues[k] = q[1:]
	}
	p.n--
	return ip
}

// closeAll closes every idle pair (which takes it out of its epoll set)
// and returns their ports to pool; later puts are refused.
func (p *idlePool) closeAll(pool *portPool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, q := range p.queues {
		for _, ip := range q {
			ip.close()
			pool.put(ip.port)
		}
		delete(p.queues, k)
	}
	p.n = 0
}

// close closes the pair's sockets, which takes them out of their epoll
// set; their marks leave the worker first, so that it never reads a
// descriptor number the process has given to something else. The ports
// are unparked before the caller returns them to the pool, so that the
// sockets bound to them next receive.
func (ip *idlePair) close() {
	for i, fd := range ip.fd {
		ip.w.clearSlot(fd, &ip.mark[i])
		_ = unix.Close(fd)
	}
	ip.unpark()
}

// earlyDrainRounds bounds the drain of a pair taken inside its quarantine:
// 64 reads of 8 datagrams are more than a socket's default receive buffer
// holds of RTP (each datagram costs it ~1 KiB of truesize).
const earlyDrainRounds = 64

// drainSocket reads and drops what is queued on fd, up to rounds reads of
// a few datagrams (0: until it is empty, for a socket nothing reaches any
// more), and returns how many datagrams it read.
func drainSocket(fd int, rounds int) uint64 {
	var (
		buf [64]byte // what a datagram says does not matter: truncated
		iov [8]unix.Iovec
		hdr [8]mmsghdr
	)
	for i := range hdr {
		iov[i].Base = &buf[0]
		iov[i].SetLen(len(buf))
		hdr[i].Msghdr.Iov = &iov[i]
		hdr[i].Msghdr.SetIovlen(1)
	}
	var got uint64
	for r := 0; rounds == 0 || r < rounds; r++ {
		n, err := recvmmsg(fd, hdr[:])
		switch {
		case errors.Is(err, unix.ECONNREFUSED):
			continue // an ICMP error the old session's sends left: read, and cleared
		case err != nil || n == 0:
			return got // EAGAIN: empty
		}
		got += uint64(n) //nolint:gosec // n ≤ len(hdr)
		if n < len(hdr) {
			return got
		}
	}
	return got
}
