package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/media/fastpath"
	"github.com/umedge/umedge/core/internal/media/xdptx"
)

// The send paths of Config.SendPath.
const (
	SendPathSocket = "socket" // every datagram through its leg's UDP socket
	// SendPathXDP: a latched IPv4 leg's datagrams through an AF_XDP
	// socket's TX ring (copy mode) on the egress interface, the rest
	// through the sockets; see "Send path" in doc.go.
	SendPathXDP = "xdp"
)

// xskFrames is the frames of each XSK's UMEM (8 MiB of 2 KiB frames); a
// variable for the test of a UMEM with none free.
var xskFrames = 4096

const (
	xskRing = 2048 // each XSK's TX and completion rings
	// xskSndbuf is an XSK's send buffer: skbs in flight before a kick
	// stops taking frames (over a veth they are in flight until the peer
	// has received them).
	xskSndbuf = 4 << 20
	// hopTTL is how long a resolved next hop is used before it is looked
	// up again (a route or the neighbour's MAC may change); hopRetry how
	// long an unresolved one waits for its next look-up.
	hopTTL   = 5 * time.Second
	hopRetry = time.Second
	// maxHops bounds a worker's next-hop cache: full, it starts again.
	maxHops = 4096
	// xskRetry is how long an interface queue whose XSK failed (to open,
	// or a kick) waits before the next one is opened.
	xskRetry = 10 * time.Second
)

// SendPathStats counts what the XDP send path did (all zero under
// "socket").
type SendPathStats struct {
	Sent uint64 // datagrams sent through an XSK
	// Fallbacks: datagrams of latched legs that went through the socket
	// instead. NoHop: IPv6, no route, a route not over Ethernet, no
	// usable neighbour entry (the socket's send has the kernel resolve
	// it), too large for a frame, or no XSK on the interface; Full: no
	// free UMEM frame or a full TX ring.
	NoHop, Full uint64
	// Lost are the datagrams on an XSK whose kick the kernel refused
	// (the XSK is closed, the sockets take its datagrams, another is
	// opened xskRetry later).
	Lost uint64
}

// xdpPath is the engine's half of the XDP send path: the namespace it
// resolves and opens XSKs in, and the XSKs by interface and queue (two
// workers on one queue share one, under its lock).
type xdpPath struct {
	ns   vnetns.NsHandle
	nl   *netlink.Handle
	log  func(msg string, args ...any) // what fails, once per XSK slot
	info func(msg string, args ...any) // an XSK bound

	mu   sync.Mutex
	xsks map[[2]int]*xskSlot // by ifindex and queue
	// queues is how many queues of an interface an XSK binds to, learnt
	// from the bind that refused the first one past them: netlink tells
	// the queues allocated (a veth has one per CPU), not those in use.
	queues map[int]int

	sent, noHop, full, lost atomic.Uint64

	// The resolver: next hops are looked up (netlink: the route, the link,
	// its neighbour table) and XSKs opened on a goroutine of their own, not
	// on a worker, whose relaying must not wait on the kernel's netlink
	// answers (a neighbour table dump grows with the LAN). A worker asks by
	// reqs and finds the answer on its own results at its next datagram;
	// meanwhile a hop not resolved yet goes through the socket (NoHop) and
	// one due for its refresh keeps its last resolution.
	reqs    chan hopReq
	stop    chan struct{}
	stopped chan struct{}
	neighs  map[int]neighDump // resolver's own: a link's table, dumped at most every neighTTL
}

// hopReq asks the resolver for the next hop from src to dst of worker wx's
// hop h.
type hopReq struct {
	wx       *workerXDP
	h        *hop
	src, dst netip.Addr
}

// hopAnswer is the resolver's answer to a hopReq, looked up at at (unix
// ns): q nil when the hop is not usable (retried hopRetry after at).
type hopAnswer struct {
	h              *hop
	at             int64
	q              *xsk
	srcMAC, dstMAC [6]byte
	mtu            int
}

// neighDump is a link's neighbour table as dumped at at (unix ns).
type neighDump struct {
	at     int64
	neighs []netlink.Neigh
}

const (
	// resolveQueue bounds the requests waiting for the resolver, and
	// each worker's answers: more at once (a burst of new peers) wait
	// for a later datagram of theirs to ask again.
	resolveQueue = 1024
	// neighTTL is how long one dump of a link's neighbour table serves
	// the look-ups of every peer on it.
	neighTTL = 500 * time.Millisecond
)

// xskSlot is an interface queue's XSK, nil while none could be opened:
// tried again at retryAt (unix ns). logged: the failure was logged, not
// again until an XSK opens.
type xskSlot struct {
	q       *xsk
	retryAt int64
	logged  bool
}

// xsk is one XSK and the lock of the workers that share it.
type xsk struct {
	mu       sync.Mutex
	x        *xdptx.XSK
	id       uint16 // the IPv4 identification of its next datagram
	broken   bool   // a kick failed: nothing more goes through it; the slot opens another after xskRetry
	brokenAt int64  // unix ns
	queued   bool   // on the worker's touched list (under mu of the worker that set it)
}

// hop is a worker's resolution of where a datagram from src to dst goes.
type hop struct {
	q              *xsk // nil: unresolved
	srcMAC, dstMAC [6]byte
	mtu            int
	next           int64 // unix ns of the next look-up (or of asking again, when an answer is lost)
}

// hopKey is a hop's cache key.
type hopKey struct{ src, dst netip.Addr }

// workerXDP is a worker's view of the path: its index (which queue its
// XSKs use), its next hops and the XSKs its flush queued frames on.
type workerXDP struct {
	p       *xdpPath
	idx     int
	hops    map[hopKey]*hop
	touched []*xsk
	results chan hopAnswer // the resolver's answers to this worker
	log     func(msg string, args ...any)
}

// startSendPath opens the send path of cfg.SendPath; called by New before
// it starts the workers.
func (e *Engine) startSendPath() error {
	switch e.cfg.SendPath {
	case "", SendPathSocket:
		return nil
	case SendPathXDP:
	default:
		return fmt.Errorf("%w: send path %q: want %q or %q", ErrConfig, e.cfg.SendPath, SendPathSocket, SendPathXDP)
	}
	ns, err := vnetns.Get()
	if err != nil {
		return fmt.Errorf("media: send path xdp: network namespace: %w", err)
	}
	nl, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		_ = ns.Close()
		return fmt.Errorf("media: send path xdp: netlink: %w", err)
	}
	e.xdp = &xdpPath{ns: ns, nl: nl, xsks: make(map[[2]int]*xskSlot), queues: make(map[int]int), log: e.log.Warn, info: e.log.Info,
		reqs: make(chan hopReq, resolveQueue), stop: make(chan struct{}), stopped: make(chan struct{}), neighs: make(map[int]neighDump)}
	go e.xdp.resolver()
	return nil
}

// resolver answers the workers' look-ups until the path closes.
func (p *xdpPath) resolver() {
	defer close(p.stopped)
	for {
		select {
		case <-p.stop:
			return
		case r := <-p.reqs:
			now := time.Now().UnixNano()
			a := hopAnswer{h: r.h, at: now}
			a.q, a.srcMAC, a.dstMAC, a.mtu, _ = p.lookup(r.wx.idx, r.src, r.dst, now)
			select {
			case r.wx.results <- a:
			default: // the worker has more answers waiting than it asked for: it asks again
			}
		}
	}
}

// worker is the path for worker idx; nil under "socket".
func (p *xdpPath) worker(idx int) *workerXDP {
	if p == nil {
		return nil
	}
	return &workerXDP{p: p, idx: idx, hops: make(map[hopKey]*hop), results: make(chan hopAnswer, resolveQueue), log: p.log}
}

// closeSendPath releases the XSKs; called by Close once the workers have
// stopped.
func (e *Engine) closeSendPath() {
	if e.xdp == nil {
		return
	}
	close(e.xdp.stop)
	<-e.xdp.stopped // it may be opening an XSK
	e.xdp.mu.Lock()
	defer e.xdp.mu.Unlock()
	for k, sl := range e.xdp.xsks {
		if sl.q != nil {
			sl.q.close()
		}
		delete(e.xdp.xsks, k)
	}
	e.xdp.nl.Close()
	_ = e.xdp.ns.Close()
}

// SendPath returns the XDP send path's counters.
func (e *Engine) SendPath() SendPathStats {
	if e.xdp == nil {
		return SendPathStats{}
	}
	return SendPathStats{Sent: e.xdp.sent.Load(), NoHop: e.xdp.noHop.Load(), Full: e.xdp.full.Load(), Lost: e.xdp.lost.Load()}
}

// queueXSK is the XSK worker idx uses on ifindex, which has ntx TX queues:
// that of queue idx modulo the queues, opened at its first use in the
// engine's namespace and again xskRetry after it failed; nil while there is
// none (the failure logged once).
func (p *xdpPath) queueXSK(ifindex int, ifname string, idx, ntx int, now int64) *xsk {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if n, ok := p.queues[ifindex]; ok && n < ntx {
			ntx = n
		}
		queue := idx % max(ntx, 1)
		q, err := p.slotXSK(ifindex, ifname, queue, now)
		if queue > 0 && errors.Is(err, unix.EINVAL) {
			// Past the queues in use: the next worker shares a lower one.
			p.queues[ifindex] = queue
			delete(p.xsks, [2]int{ifindex, queue})
			continue
		}
		return q
	}
}

// slotXSK is queueXSK for one queue, with p.mu held; the error is the
// open's that failed now.
func (p *xdpPath) slotXSK(ifindex int, ifname string, queue int, now int64) (*xsk, error) {
	k := [2]int{ifindex, queue}
	sl := p.xsks[k]
	if sl == nil {
		sl = &xskSlot{}
		p.xsks[k] = sl
	}
	if q := sl.q; q != nil {
		q.mu.Lock()
		broken, at := q.broken, q.brokenAt
		q.mu.Unlock()
		if !broken {
			return q, nil
		}
		if now < at+int64(xskRetry) {
			return nil, nil
		}
		q.close()
		sl.q = nil
	} else if now < sl.retryAt {
		return nil, nil
	}
	// The XSK binds an interface of the engine's namespace: opened on a
	// thread there (the one it is on, in edged).
	var x *xdptx.XSK
	err := fastpath.InNS(p.ns, func() error {
		var err error
		x, err = xdptx.Open(ifindex, queue, xskFrames, xskRing, 64, xskSndbuf)
		return err
	})
	if err != nil {
		if !sl.logged && (queue == 0 || !errors.Is(err, unix.EINVAL)) {
			sl.logged = true
			p.log("media: send path xdp: no XSK, this interface's datagrams go through the sockets", "interface", ifname, "ifindex", ifindex, "queue", queue, "err", err)
		}
		sl.retryAt = now + int64(xskRetry)
		return nil, err
	}
	sl.q, sl.logged = &xsk{x: x}, false
	p.info("media: send path xdp: XSK bound", "interface", ifname, "ifindex", ifindex, "queue", queue)
	return sl.q, nil
}

// close releases q's XSK; nothing goes through it from then on.
func (q *xsk) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.broken = true
	if q.x != nil {
		q.x.Close()
		q.x = nil
	}
}

// hopFor is the next hop from src to dst: the resolver is asked when it is
// due, and its answers are taken in first. An answer's next look-up counts
// from when the resolver made it, not from when it is read (a peer's next
// datagram may come much later).
func (wx *workerXDP) hopFor(src, dst netip.Addr, now int64) *hop {
	for len(wx.results) > 0 {
		a := <-wx.results
		h := a.h
		if a.q == nil {
			h.q, h.next = nil, a.at+int64(hopRetry)
			continue
		}
		h.q, h.srcMAC, h.dstMAC, h.mtu, h.next = a.q, a.srcMAC, a.dstMAC, a.mtu, a.at+int64(hopTTL)
	}
	k := hopKey{src, dst}
	h := wx.hops[k]
	if h == nil {
		if len(wx.hops) >= maxHops {
			clear(wx.hops) // an answer to a hop dropped here lands on it unread
		}
		h = &hop{}
		wx.hops[k] = h // allocated once per peer address, at its first packet
	}
	if now >= h.next {
		// Asked once: the answer sets the next look-up; an answer lost
		// (a full results queue) or a resolver behind (a full request
		// queue) has the hop asked again a hopRetry later.
		h.next = now + int64(hopRetry)
		select {
		case wx.p.reqs <- hopReq{wx: wx, h: h, src: src, dst: dst}:
		default:
		}
	}
	return h
}

// errNoHop is a next hop the path cannot send to.
var errNoHop = errors.New("no usable next hop")

// lookup looks the route from src to dst and its next hop's neighbour
// entry up (netlink, in the engine's namespace) and picks the XSK of the
// egress interface's queue for worker idx. The resolver's only: the
// neighbour dumps it keeps are its own.
func (p *xdpPath) lookup(idx int, src, dst netip.Addr, now int64) (q *xsk, srcMAC, dstMAC [6]byte, mtu int, err error) {
	nl := p.nl
	routes, err := nl.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{SrcAddr: src.AsSlice()})
	if err != nil || len(routes) == 0 {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: route to %s: %v", errNoHop, dst, err)
	}
	r := routes[0]
	if r.Type != unix.RTN_UNICAST || r.LinkIndex <= 0 {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: route to %s is of type %d", errNoHop, dst, r.Type)
	}
	nh := dst
	if a, ok := netip.AddrFromSlice(r.Gw); ok && a.Unmap().IsValid() && !a.IsUnspecified() {
		nh = a.Unmap()
	}
	link, err := nl.LinkByIndex(r.LinkIndex)
	if err != nil {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: link %d: %w", errNoHop, r.LinkIndex, err)
	}
	la := link.Attrs()
	if la.EncapType != "ether" || len(la.HardwareAddr) != 6 {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: %s is not Ethernet", errNoHop, la.Name)
	}
	d, ok := p.neighs[r.LinkIndex]
	if !ok || now-d.at >= int64(neighTTL) {
		neighs, err := nl.NeighList(r.LinkIndex, unix.AF_INET)
		if err != nil {
			return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: neighbours of %s: %w", errNoHop, la.Name, err)
		}
		if len(p.neighs) >= maxHops {
			clear(p.neighs)
		}
		d = neighDump{at: now, neighs: neighs}
		p.neighs[r.LinkIndex] = d
	}
	var mac net.HardwareAddr
	for _, n := range d.neighs {
		a, ok := netip.AddrFromSlice(n.IP)
		// STALE is not good enough: the kernel confirms an entry only when
		// its own output uses it, which this path bypasses. The socket
		// send that takes this datagram instead has it probe the entry
		// (DELAY, PROBE, REACHABLE), and the look-up after hopRetry finds
		// it confirmed.
		if ok && a.Unmap() == nh && len(n.HardwareAddr) == 6 &&
			n.State&(netlink.NUD_REACHABLE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
			mac = n.HardwareAddr
			break
		}
	}
	if mac == nil {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: no confirmed neighbour entry for %s on %s", errNoHop, nh, la.Name)
	}
	if q = p.queueXSK(r.LinkIndex, la.Name, idx, la.NumTxQueues, now); q == nil {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: no XSK on %s", errNoHop, la.Name)
	}
	copy(srcMAC[:], la.HardwareAddr)
	copy(dstMAC[:], mac)
	return q, srcMAC, dstMAC, la.MTU, nil
}

// send puts one datagram on the XSK of its next hop; false: it goes
// through the socket (counted).
func (wx *workerXDP) send(src, dst netip.AddrPort, b []byte, now int64) bool {
	if !dst.Addr().Is4() || !src.Addr().Is4() {
		wx.p.noHop.Add(1)
		return false
	}
	h := wx.hopFor(src.Addr(), dst.Addr(), now)
	q := h.q
	if q == nil || 20+8+len(b) > h.mtu || xdptx.HeaderLen+len(b) > xdptx.FrameSize {
		wx.p.noHop.Add(1)
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.broken {
		// Its slot opens another XSK (xskRetry after the failure): look
		// the hop up again at the next datagram.
		h.q, h.next = nil, now
		wx.p.noHop.Add(1)
		return false
	}
	addr, f, ok := q.x.Frame()
	if !ok {
		wx.p.full.Add(1)
		return false
	}
	q.id++
	if !q.x.Queue(addr, xdptx.BuildUDP4(f, h.dstMAC, h.srcMAC, src, dst, q.id, b, false)) {
		q.x.Release(addr)
		wx.p.full.Add(1)
		return false
	}
	if !q.queued {
		q.queued = true
		wx.touched = append(wx.touched, q) // its room stays: no allocation once it held every XSK
	}
	if q.x.Pending() >= 64 {
		wx.kick(q)
	}
	wx.p.sent.Add(1)
	return true
}

// kick hands q's queued frames to the kernel; called with q.mu held. A
// kick the kernel refuses breaks q: what it held is counted lost.
func (wx *workerXDP) kick(q *xsk) {
	if err := q.x.Flush(); err != nil {
		q.broken, q.brokenAt = true, time.Now().UnixNano()
		wx.p.lost.Add(uint64(max(q.x.Unsent(), 1))) //nolint:gosec // ≥ 1
		wx.log("media: send path xdp: kick failed, the sockets take this XSK's datagrams", "err", err)
	}
}

// flush kicks the XSKs this worker queued frames on since the last flush.
func (wx *workerXDP) flush() {
	for i, q := range wx.touched {
		q.mu.Lock()
		q.queued = false
		if !q.broken {
			wx.kick(q)
		}
		q.mu.Unlock()
		wx.touched[i] = nil
	}
	wx.touched = wx.touched[:0]
}

// backlog says whether an XSK this worker may use holds frames the kernel
// has not taken yet (a full send buffer at the last kick): the worker then
// waits at most a millisecond for its next round, which kicks again
// (retry).
func (wx *workerXDP) backlog() bool { return wx.unsent(false) }

// retry kicks every XSK with frames the kernel has not taken.
func (wx *workerXDP) retry() { wx.unsent(true) }

// unsent says whether an XSK holds frames the kernel has not taken, and
// kicks each that does when kick.
func (wx *workerXDP) unsent(kick bool) bool {
	wx.p.mu.Lock()
	defer wx.p.mu.Unlock()
	left := false
	for _, sl := range wx.p.xsks {
		q := sl.q
		if q == nil {
			continue
		}
		q.mu.Lock()
		if !q.broken && q.x.Unsent() > 0 {
			left = true
			if kick {
				wx.kick(q)
			}
		}
		q.mu.Unlock()
		if left && !kick {
			return true
		}
	}
	return left
}
