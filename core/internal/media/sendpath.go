package media

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
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
	// SendPathXDP: a latched leg's datagrams through an AF_XDP
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
	// up again (besides the neighbour, route and link changes the
	// resolver follows); hopRetry how long an unresolved one waits for
	// its next look-up.
	hopTTL   = 5 * time.Second
	hopRetry = time.Second
	// maxHops bounds a worker's next-hop cache: full, it starts again.
	maxHops = 4096
	// xskRetry is how long an interface queue whose XSK failed (to open,
	// or a kick) waits before the next one is opened.
	xskRetry = 10 * time.Second
	// xskStall is how long kicks may take nothing from an XSK while frames
	// wait before it counts as broken: the kernel silently sends nothing
	// from a queue past the TX queues in use (a NIC with more RX channels
	// than TX), while a full completion ring or send buffer clears within
	// a NIC's interrupt or a veth peer's read.
	xskStall = 250 * time.Millisecond
)

// SendPathStats counts what the XDP send path did (all zero under
// "socket").
type SendPathStats struct {
	Sent uint64 // datagrams sent through an XSK
	// Fallbacks: datagrams of latched legs that went through the socket
	// instead. NoHop: a link-local IPv6 peer or source, no route, a
	// route not over Ethernet, no usable neighbour entry (the socket's
	// send has the kernel resolve it), too large for a frame, or no XSK
	// on the interface; Full: no free UMEM frame or a full TX ring.
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

	// gen counts the changes that may make a resolved hop wrong: a MAC the
	// resolver handed out that the kernel's neighbour table changed or
	// dropped, any route or link change. A hop resolved at an older
	// generation goes through the socket until it is looked up again, so
	// a gateway's failover (a gratuitous ARP) moves the media at once, not
	// a hopTTL later.
	gen       atomic.Uint64
	macs      map[neighKey][6]byte // the resolver's: MACs it handed out
	neighEv   chan netlink.NeighUpdate
	routeEv   chan netlink.RouteUpdate
	linkEv    chan netlink.LinkUpdate
	subDone   chan struct{}     // closed: the subscriptions end
	subLogged bool              // a lost subscription was logged
	force     bool              // the subscriptions' receive buffers forced (CAP_NET_ADMIN)
	links     map[int]linkState // the resolver's: what it last saw of each link
	retired   []*xdptx.XSK      // the resolver's: XSKs out of use, to close without the locks

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
	neighs  map[neighDumpKey]neighDump // resolver's own: a link's table of a family, dumped at most every neighTTL
	txq     map[int]int                // resolver's own: TX queues in use by ifindex (txQueues)
}

// hopReq asks the resolver for the next hop from src to dst of worker wx's
// hop h.
type hopReq struct {
	wx       *workerXDP
	h        *hop
	src, dst netip.Addr
}

// neighKey is a neighbour entry's key.
type neighKey struct {
	ifindex int
	ip      netip.Addr
}

// hopAnswer is the resolver's answer to a hopReq, looked up at at (unix
// ns): q nil when the hop is not usable (retried hopRetry after at).
type hopAnswer struct {
	h              *hop
	at             int64
	gen            uint64
	q              *xsk
	srcMAC, dstMAC [6]byte
	mtu            int
}

// neighDump is a link's neighbour table of one family as dumped at at
// (unix ns).
type neighDump struct {
	at     int64
	neighs []netlink.Neigh
}

// neighDumpKey is a neighbour dump's key: the link and the family (ARP's
// and neighbour discovery's tables are dumped apart).
type neighDumpKey struct{ ifindex, family int }

// neighFamily is the neighbour table family of a (unmapped).
func neighFamily(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
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
	ifname   string
	queue    int
	id       uint16 // the IPv4 identification of its next datagram
	broken   bool   // a kick failed: nothing more goes through it; the slot opens another after xskRetry
	brokenAt int64  // unix ns
	stalled  bool   // broken because the kernel took nothing from it for xskStall
	taken    uint32 // the TX ring's consumer at the last kick
	stuckAt  int64  // unix ns since which kicks took nothing while frames waited; 0: moving
	queued   bool   // on the worker's touched list (under mu of the worker that set it)
}

// hop is a worker's resolution of where a datagram from src to dst goes.
type hop struct {
	q              *xsk // nil: unresolved
	srcMAC, dstMAC [6]byte
	mtu            int
	gen            uint64 // xdpPath.gen it was resolved at
	exp            int64  // unix ns after which it is not used, refreshed or not (2·hopTTL)
	next           int64  // unix ns of the next look-up (or of asking again, when an answer is lost)
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
	p := &xdpPath{ns: ns, nl: nl, xsks: make(map[[2]int]*xskSlot), queues: make(map[int]int), log: e.log.Warn, info: e.log.Info,
		reqs: make(chan hopReq, resolveQueue), stop: make(chan struct{}), stopped: make(chan struct{}), neighs: make(map[neighDumpKey]neighDump), txq: make(map[int]int),
		macs: make(map[neighKey][6]byte), links: make(map[int]linkState)}
	p.force = mayForceBuffers()
	_ = p.subscribe() // one that fails has its channel closed: the resolver makes them again
	e.xdp = p
	go p.resolver()
	return nil
}

// eventBuffer is the receive buffer of each netlink subscription: a
// neighbour table's churn on a big LAN in a burst; an overflow ends the
// subscription (and is taken as a change of everything). Forced past
// rmem_max where the process may (CAP_NET_ADMIN), else what rmem_max
// allows.
const eventBuffer = 1 << 20

// subscribe follows the namespace's neighbour, route and link changes on
// fresh channels, which close when a subscription ends (an overflow, an
// error) or the path stops. A subscription that could not be made has its
// channel closed here (the library starts no reader for it): the
// resolver takes it as lost.
func (p *xdpPath) subscribe() error {
	neigh, route, link := make(chan netlink.NeighUpdate, 256), make(chan netlink.RouteUpdate, 64), make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{}) // ends all three: one lost, the others are made again with it
	ns := &p.ns
	errN := netlink.NeighSubscribeWithOptions(neigh, done, netlink.NeighSubscribeOptions{Namespace: ns, ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: p.force})
	if errN != nil {
		close(neigh)
	}
	errR := netlink.RouteSubscribeWithOptions(route, done, netlink.RouteSubscribeOptions{Namespace: ns, ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: p.force})
	if errR != nil {
		close(route)
	}
	errL := netlink.LinkSubscribeWithOptions(link, done, netlink.LinkSubscribeOptions{Namespace: ns, ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: p.force})
	if errL != nil {
		close(link)
	}
	p.neighEv, p.routeEv, p.linkEv, p.subDone = neigh, route, link, done
	return errors.Join(errN, errR, errL)
}

// mayForceBuffers says whether the process has CAP_NET_ADMIN, which
// forcing a socket buffer past rmem_max needs (asked first: the library
// leaks the socket of a subscription whose buffer it cannot set).
func mayForceBuffers() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0
}

// resubscribeAfter is how long after a lost subscription the resolver
// subscribes again (meanwhile a hop lives its hopTTL, as without events).
const resubscribeAfter = time.Second

// resolver answers the workers' look-ups and follows the changes that make
// a resolved hop wrong until the path closes.
func (p *xdpPath) resolver() {
	defer close(p.stopped)
	defer func() {
		close(p.subDone)
		go drainEvents(p.neighEv)
		go drainEvents(p.routeEv)
		go drainEvents(p.linkEv)
	}()
	var resub <-chan time.Time
	lost := func() {
		// A subscription ended (or could not be made): anything may have
		// changed meanwhile.
		p.gen.Add(1)
		close(p.subDone)
		p.subDone = make(chan struct{})
		// The library's goroutines end once they have handed over what
		// they read: drained here until they close.
		go drainEvents(p.neighEv)
		go drainEvents(p.routeEv)
		go drainEvents(p.linkEv)
		p.neighEv, p.routeEv, p.linkEv = nil, nil, nil
		if !p.subLogged {
			p.subLogged = true
			p.log("media: send path xdp: a netlink subscription ended; next hops are looked up every hopTTL until it is back", "retry", resubscribeAfter)
		}
		resub = time.After(resubscribeAfter)
	}
	for {
		p.closeRetired()
		select {
		case <-p.stop:
			return
		case <-resub:
			resub = nil
			close(p.subDone)
			_ = p.subscribe() // one that fails has its channel closed: lost again
			p.resync()
		case u, ok := <-p.neighEv:
			if !ok {
				lost()
				continue
			}
			p.neighChanged(u)
		case u, ok := <-p.routeEv:
			if !ok {
				lost()
				continue
			}
			if routeMatters(u) {
				p.gen.Add(1)
			}
		case u, ok := <-p.linkEv:
			if !ok {
				lost()
				continue
			}
			p.linkChanged(u)
		case r := <-p.reqs:
			now := time.Now().UnixNano()
			a := hopAnswer{h: r.h, at: now, gen: p.gen.Load()}
			a.q, a.srcMAC, a.dstMAC, a.mtu, _ = p.lookup(r.wx.idx, r.src, r.dst, now)
			select {
			case r.wx.results <- a:
			default: // the worker has more answers waiting than it asked for: it asks again
			}
			// A burst of look-ups (every hop after a route change, or the
			// refreshes of calls that began together) must not hold the
			// workers back for its whole length where they share a CPU
			// with the resolver (one P): they run between two look-ups.
			runtime.Gosched()
		}
	}
}

// routeMatters says whether a route change may move a resolved hop: an
// IPv4 or IPv6 route outside the local table (which holds the box's own
// addresses, and IPv6's multicast and anycast routes), except IPv6's
// link-local (fe80::/10) and multicast (ff00::/8) routes, which come and
// go with every link's up and DAD: the path takes no peer of theirs (a
// link-local gateway is named by the routes through it, which do count).
func routeMatters(u netlink.RouteUpdate) bool {
	if u.Table == unix.RT_TABLE_LOCAL {
		return false
	}
	switch u.Family {
	case unix.AF_INET:
		return true
	case unix.AF_INET6:
		if u.Dst == nil {
			return true // a default route
		}
		a, ok := netip.AddrFromSlice(u.Dst.IP)
		ones, _ := u.Dst.Mask.Size()
		churn := ok && (a.IsLinkLocalUnicast() && ones >= 10 || a.IsMulticast() && ones >= 8)
		return !churn
	}
	return false
}

// linkState is what of a link a resolved hop depends on.
type linkState struct {
	flags  uint32
	mtu    int
	mac    string
	master int
	oper   netlink.LinkOperState
}

// linkChanged takes a link message in. Only an interface's own (not a
// bridge port's AF_BRIDGE ones) whose flags, MTU, MAC, master or
// operational state changed, or its deletion, makes the hops resolved
// before go through the socket until looked up again: a link message
// also comes for statistics, a wireless scan or a carrier elsewhere,
// and each would send every hop to the socket for a look-up.
func (p *xdpPath) linkChanged(u netlink.LinkUpdate) {
	if u.Family != unix.AF_UNSPEC {
		return
	}
	ifindex := int(u.Index)
	if u.Header.Type == unix.RTM_DELLINK {
		delete(p.links, ifindex)
		p.forgetLink(ifindex)
		p.closeLink(ifindex)
		p.gen.Add(1)
		return
	}
	if u.Link == nil {
		return
	}
	old, seen := p.links[ifindex]
	if p.noteLink(ifindex, u.Link.Attrs()) != old && seen {
		p.forgetLink(ifindex)
		p.gen.Add(1)
	}
}

// noteLink records what a hop over link ifindex depends on and returns it.
func (p *xdpPath) noteLink(ifindex int, la *netlink.LinkAttrs) linkState {
	st := linkState{flags: la.RawFlags, mtu: la.MTU, mac: string(la.HardwareAddr), master: la.MasterIndex, oper: la.OperState}
	if _, seen := p.links[ifindex]; !seen && len(p.links) >= maxHops {
		clear(p.links)
	}
	p.links[ifindex] = st
	return st
}

// forgetLink drops what the resolver keeps of a link: its neighbour dump,
// its TX queue count and the queue cap a stall or a refused bind set.
func (p *xdpPath) forgetLink(ifindex int) {
	delete(p.neighs, neighDumpKey{ifindex, unix.AF_INET})
	delete(p.neighs, neighDumpKey{ifindex, unix.AF_INET6})
	delete(p.txq, ifindex)
	p.mu.Lock()
	delete(p.queues, ifindex)
	p.mu.Unlock()
}

// resync follows a new subscription: what changed while there was none is
// not known, so every hop is looked up again, the caches go, and the XSKs
// of links gone meanwhile are closed.
func (p *xdpPath) resync() {
	clear(p.neighs)
	clear(p.txq)
	clear(p.links)
	p.mu.Lock()
	clear(p.queues)
	var links []int
	for k := range p.xsks {
		links = append(links, k[0])
	}
	p.mu.Unlock()
	for _, ifindex := range links {
		if _, err := p.nl.LinkByIndex(ifindex); err != nil {
			var gone netlink.LinkNotFoundError
			if errors.As(err, &gone) {
				p.closeLink(ifindex)
			}
		}
	}
	p.gen.Add(1)
}

// drainEvents reads ch until it closes (nil: at once).
func drainEvents[T any](ch chan T) {
	if ch == nil {
		return
	}
	for range ch {
	}
}

// neighChanged takes a neighbour table change in: one of a MAC the
// resolver handed out (another MAC, the entry gone or failed) makes every
// hop resolved before it go through the socket until looked up again, so
// a gateway's failover (a gratuitous ARP) moves the media at once, not a
// hopTTL later. Other changes (an entry going STALE, a probe confirming
// it) leave the hops alone.
func (p *xdpPath) neighChanged(u netlink.NeighUpdate) {
	a, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return
	}
	k := neighKey{u.LinkIndex, a.Unmap()}
	dk := neighDumpKey{u.LinkIndex, neighFamily(k.ip)}
	changed := func(mac []byte) bool {
		return u.Type == unix.RTM_DELNEIGH || !bytes.Equal(u.HardwareAddr, mac) ||
			u.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0
	}
	if mac, handed := p.macs[k]; handed {
		if changed(mac[:]) {
			delete(p.macs, k)
			delete(p.neighs, dk)
			p.gen.Add(1)
		}
		return
	}
	// Not handed out yet, but the link's cached dump may say otherwise:
	// the next look-up must not hand out what it had.
	if d, ok := p.neighs[dk]; ok {
		for _, n := range d.neighs {
			if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == k.ip {
				if changed(n.HardwareAddr) {
					delete(p.neighs, dk)
				}
				break
			}
		}
	}
}

// closeLink closes the XSKs of an interface that is gone (a VLAN taken
// out of the config): its ifindex never comes back, so nothing else would.
func (p *xdpPath) closeLink(ifindex int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, sl := range p.xsks {
		if k[0] == ifindex {
			p.retire(sl.q)
			delete(p.xsks, k)
		}
	}
	delete(p.queues, ifindex)
}

// retire takes q (nil: none) out of use at once and has the resolver close
// its XSK after it let go of the locks: a close waits for the kernel's
// RCU grace period, which a worker taking p.mu or q.mu must not.
func (p *xdpPath) retire(q *xsk) {
	if q == nil {
		return
	}
	if x := q.detach(); x != nil {
		p.retired = append(p.retired, x)
	}
}

// closeRetired closes the XSKs retire took out of use; the resolver's,
// without p.mu.
func (p *xdpPath) closeRetired() {
	for i, x := range p.retired {
		x.Close()
		p.retired[i] = nil
	}
	p.retired = p.retired[:0]
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
	e.xdp.closeRetired()
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
		if queue > 0 && (errors.Is(err, unix.EINVAL) || errors.Is(err, errStalledQueue)) {
			// Past the queues in use (the bind refused, or the kernel
			// sent nothing from it): this worker and the next share a
			// lower one, and the XSKs of this queue and above go.
			p.queues[ifindex] = queue
			for k, sl := range p.xsks {
				if k[0] == ifindex && k[1] >= queue {
					p.retire(sl.q)
					delete(p.xsks, k)
				}
			}
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
		broken, stalled, at := q.broken, q.stalled, q.brokenAt
		q.mu.Unlock()
		if !broken {
			return q, nil
		}
		if stalled && queue > 0 {
			p.retire(q)
			sl.q = nil
			return nil, errStalledQueue
		}
		if now < at+int64(xskRetry) {
			return nil, nil
		}
		p.retire(q)
		sl.q = nil
	} else if now < sl.retryAt {
		return nil, nil
	}
	// The XSK binds an interface of the engine's namespace: opened on a
	// thread there (the one it is on, in edged). Without p.mu, which
	// every worker takes each round: an open (an 8 MiB UMEM registered)
	// takes milliseconds. Only the resolver opens, adds or drops slots.
	var x *xdptx.XSK
	var err error
	func() {
		p.mu.Unlock()
		defer p.mu.Lock()
		err = fastpath.InNS(p.ns, func() error {
			var err error
			x, err = openXSK(ifindex, queue, xskFrames, xskRing, 64, xskSndbuf)
			return err
		})
	}()
	if err != nil {
		if !sl.logged && (queue == 0 || !errors.Is(err, unix.EINVAL)) {
			sl.logged = true
			p.log("media: send path xdp: no XSK, this interface's datagrams go through the sockets", "interface", ifname, "ifindex", ifindex, "queue", queue, "err", err)
		}
		sl.retryAt = now + int64(xskRetry)
		return nil, err
	}
	sl.q, sl.logged = &xsk{x: x, ifname: ifname, queue: queue}, false
	p.info("media: send path xdp: XSK bound", "interface", ifname, "ifindex", ifindex, "queue", queue)
	return sl.q, nil
}

// detach marks q broken for good and hands its XSK over to be closed (nil
// if it was already).
func (q *xsk) detach() *xdptx.XSK {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.broken = true
	x := q.x
	q.x = nil
	return x
}

// close releases q's XSK; nothing goes through it from then on.
func (q *xsk) close() {
	if x := q.detach(); x != nil {
		x.Close()
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
		h.q, h.srcMAC, h.dstMAC, h.mtu, h.gen, h.next, h.exp = a.q, a.srcMAC, a.dstMAC, a.mtu, a.gen, a.at+int64(hopTTL), a.at+2*int64(hopTTL)
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
	if h.q != nil && (h.gen != wx.p.gen.Load() || now > h.exp) {
		// The neighbour, a route or a link changed since it was resolved,
		// or its refreshes were lost (a resolver behind): the socket until
		// the resolver answers again.
		h.q, h.next = nil, now
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

// txQueues is how many TX queues link (ifindex) has in use: what the
// driver says (ethtool channels), 1 when it does not, at most what netlink
// says were allocated. The resolver's only; forgotten at a link change.
func (p *xdpPath) txQueues(ifindex int, la *netlink.LinkAttrs) int {
	if n, ok := p.txq[ifindex]; ok {
		return n
	}
	n := 1
	_ = fastpath.InNS(p.ns, func() error {
		if m, err := txQueuesOf(la.Name); err == nil && m > 0 {
			n = m
		}
		return nil
	})
	if la.NumTxQueues > 0 {
		n = min(n, la.NumTxQueues)
	}
	if len(p.txq) >= maxHops {
		clear(p.txq)
	}
	p.txq[ifindex] = n
	return n
}

// txQueuesOf asks the driver for an interface's TX queues in use (a
// variable for the test of a driver that miscounts).
var txQueuesOf = xdptx.TXQueues

// openXSK opens an XSK (a variable for the test of a slow open).
var openXSK = xdptx.Open

// errStalledQueue is an interface queue whose XSK the kernel took nothing
// from (xskStall).
var errStalledQueue = errors.New("the kernel sends nothing from this queue")

// linkCannotSend says whether a link in operational state s sends nothing
// (RFC 2863: down, its lower layer down, not present, dormant).
func linkCannotSend(s netlink.LinkOperState) bool {
	switch s {
	case netlink.OperDown, netlink.OperLowerLayerDown, netlink.OperNotPresent, netlink.OperDormant:
		return true
	}
	return false
}

// errNoHop is a next hop the path cannot send to.
var errNoHop = errors.New("no usable next hop")

// lookup looks the route from src to dst (both IPv4 or both IPv6,
// unmapped) and its next hop's neighbour entry up (netlink, in the
// engine's namespace: ARP's table or neighbour discovery's) and picks the
// XSK of the egress interface's queue for worker idx. The resolver's
// only: the neighbour dumps it keeps are its own.
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
	if _, seen := p.links[r.LinkIndex]; !seen {
		// What a hop over it depends on, for the link's next message to
		// be compared with (the first one after the path started would
		// otherwise be taken as how it always was).
		p.noteLink(r.LinkIndex, la)
	}
	if la.Flags&net.FlagUp == 0 || la.RawFlags&unix.IFF_LOWER_UP == 0 || linkCannotSend(la.OperState) {
		// No carrier (a cable out, a veth's peer down; IFF_LOWER_UP goes
		// at once, the operational state after the kernel's linkwatch
		// work), or not allowed to send yet (802.1X before its
		// authentication: dormant): the route stays, and a frame on the
		// XSK would be dropped by the device yet counted as sent; the
		// socket's send is counted by the kernel as dropped, and the
		// link's change brings the hop back.
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: %s is down (%s)", errNoHop, la.Name, la.OperState)
	}
	// The route's MTU (a locked route metric, a tunnel's, a PMTU learnt
	// from an ICMP "fragmentation needed") bounds a frame as the
	// device's does: the socket fragments what exceeds it. A PMTU learnt
	// comes with no netlink event: the hop's next look-up (≤ hopTTL)
	// takes it, its frames meanwhile DF and too big for the path.
	mtu = la.MTU
	if r.MTU > 0 {
		mtu = min(mtu, r.MTU)
	}
	dk := neighDumpKey{r.LinkIndex, neighFamily(nh)}
	d, ok := p.neighs[dk]
	if !ok || now-d.at >= int64(neighTTL) {
		neighs, err := nl.NeighList(r.LinkIndex, dk.family)
		if err != nil {
			return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: neighbours of %s: %w", errNoHop, la.Name, err)
		}
		if len(p.neighs) >= maxHops {
			clear(p.neighs)
		}
		d = neighDump{at: now, neighs: neighs}
		p.neighs[dk] = d
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
	if q = p.queueXSK(r.LinkIndex, la.Name, idx, p.txQueues(r.LinkIndex, la), now); q == nil {
		return nil, srcMAC, dstMAC, 0, fmt.Errorf("%w: no XSK on %s", errNoHop, la.Name)
	}
	copy(srcMAC[:], la.HardwareAddr)
	copy(dstMAC[:], mac)
	if len(p.macs) >= maxHops {
		clear(p.macs)
		p.gen.Add(1)
	}
	p.macs[neighKey{r.LinkIndex, nh}] = dstMAC
	return q, srcMAC, dstMAC, mtu, nil
}

// send puts one datagram on the XSK of its next hop; false: it goes
// through the socket (counted). src and dst are both IPv4 (a v4-mapped
// address is IPv4) or both IPv6; a link-local IPv6 one goes through the
// socket: its zone, which the route look-up needs, is the socket's.
func (wx *workerXDP) send(src, dst netip.AddrPort, tos uint8, b []byte, now int64) bool {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	v4 := da.Is4()
	if sa.Is4() != v4 || !v4 && (da.IsLinkLocalUnicast() || sa.IsLinkLocalUnicast()) {
		wx.p.noHop.Add(1)
		return false
	}
	ipLen, hdrLen := 20+8, xdptx.HeaderLen
	if !v4 {
		ipLen, hdrLen = 40+8, xdptx.HeaderLen6
	}
	h := wx.hopFor(sa, da, now)
	q := h.q
	if q == nil || ipLen+len(b) > h.mtu || hdrLen+len(b) > xdptx.FrameSize {
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
	src, dst = netip.AddrPortFrom(sa, src.Port()), netip.AddrPortFrom(da, dst.Port())
	var n int
	if v4 {
		q.id++
		n = xdptx.BuildUDP4(f, h.dstMAC, h.srcMAC, src, dst, q.id, tos, b, false)
	} else {
		n = xdptx.BuildUDP6(f, h.dstMAC, h.srcMAC, src, dst, tos, b)
	}
	if !q.x.Queue(addr, n) {
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
// kick the kernel refuses breaks q, and so do kicks that take nothing for
// xskStall while frames wait: what it held is counted lost.
func (wx *workerXDP) kick(q *xsk) {
	err := q.x.Flush()
	if err == nil && q.x.Unsent() > 0 {
		now := time.Now().UnixNano()
		switch taken := q.x.Taken(); {
		case taken != q.taken || q.stuckAt == 0 || q.x.InFlight() > 0:
			// Moving, or backpressure: the kernel holds frames it took
			// (a full send buffer, a paused link) and takes more as they
			// complete. A queue it sends nothing from never takes one.
			q.taken, q.stuckAt = taken, now
		case now-q.stuckAt >= int64(xskStall):
			q.stalled = true
			err = fmt.Errorf("the kernel took no frame for %v (a queue past the interface's TX queues?)", time.Duration(now-q.stuckAt))
		}
	} else {
		q.stuckAt = 0
	}
	if err != nil {
		q.broken, q.brokenAt = true, time.Now().UnixNano()
		wx.p.lost.Add(uint64(max(q.x.Unsent(), 1))) //nolint:gosec // ≥ 1
		wx.log("media: send path xdp: kick failed, the sockets take this XSK's datagrams", "interface", q.ifname, "queue", q.queue, "err", err)
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
