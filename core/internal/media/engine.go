package media

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umedge/umedge/core/internal/media/fastpath"
	"github.com/umedge/umedge/core/internal/media/idlefilter"
	"golang.org/x/sys/unix"
)

// Config is the [media] table of the core's configuration.
type Config struct {
	PortMin, PortMax  int           // RTP/RTCP range: even start, RTCP = RTP+1
	Workers           int           // event-loop workers; 0 = GOMAXPROCS
	LatchWindow       time.Duration // after each answer, how long a new source with a new SSRC re-latches a plain-RTP leg
	InactivityTimeout time.Duration // no packet from either leg this long calls the session's onTimeout; 0 = off
	FastPath          fastpath.Mode // the kernel fast path (offload.go); "" = off
	SendPath          string        // SendPathSocket (also "") or SendPathXDP (sendpath.go)
	// FastPathAddrs are the local addresses media binds to: the program
	// goes on the interfaces that hold them (a wildcard: every Ethernet
	// interface), so an engine on loopback touches no interface at all.
	FastPathAddrs []netip.Addr
	// FastPathAllow is the firewall's policy: whether a packet to a local
	// media port is accepted. Offloaded packets bypass netfilter, so a leg
	// whose ports it refuses is not offloaded. Nil accepts all.
	FastPathAllow func(local netip.AddrPort) bool
	// ReportInterval is how long a leg where the engine terminates SRTP
	// goes without RTCP towards it before the engine sends its own
	// receiver report (rtcp.go); 0 = DefaultReportInterval, < 0 = never.
	ReportInterval time.Duration
	// IdlePairs bounds the RTP/RTCP socket pairs kept bound for the next
	// session after theirs ended (pairpool.go); 0 derives it from the
	// descriptor limit and the range, < 0 keeps none.
	IdlePairs int
	// IdleQuarantine is how long an idle pair rests before a new session
	// may take it; 0 = DefaultIdleQuarantine.
	IdleQuarantine time.Duration
	// Police caps what each leg's peer may send (police.go); the zero
	// value caps nothing.
	Police Police
	// PoliceInterval is how often the kernel fast path's counters are run
	// through the caps; 0 = DefaultPoliceInterval.
	PoliceInterval time.Duration
	// DSCP marks what the engine sends, by media (dscp.go); the zero
	// value marks nothing.
	DSCP DSCP

	// parkByConnect skips the idle pairs' socket filter and parks them by
	// connect(2), the fallback (pairpool.go): for tests.
	parkByConnect bool
}

// Engine is the media engine: the port pool, the workers and the sessions.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	pool    *portPool
	idle    *idlePool // bound pairs of ended sessions, free in pool's count (pairpool.go)
	workers []*worker
	wg      sync.WaitGroup
	stop    chan struct{}

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool

	noPorts0 uint64 // the kernel's UDP NoPorts counter when the engine started

	markWarned atomic.Bool // a socket refused its DSCP marking: said once

	// park is the socket filter that parks idle pairs (pairpool.go); nil:
	// they are parked by connect(2).
	park       *idlefilter.Filter
	parkWarned atomic.Bool // a socket refused the filter: said once

	fp            *offloader // nil: no kernel fast path
	fpWhy         string     // why not, when the mode wanted one
	fpUnavailable atomic.Uint64

	xdp *xdpPath // nil: send path "socket" (sendpath.go)
}

// EngineStats is the engine-wide view.
type EngineStats struct {
	PortsInUse, PortsFree int // ports, two per pair
	Sessions              int
	Wakeups               uint64 // epoll wake-ups of all workers
	Datagrams             uint64 // datagrams the workers read
	TxDrops               uint64 // datagrams the kernel did not take
	// UnallocatedDrops counts UDP datagrams that reached no socket since
	// the engine started: the kernel's Udp NoPorts and Udp6NoPorts counters
	// of the network namespace (/proc/thread-self/net/snmp and snmp6),
	// which include the media ports not
	// handed out. Such a port has no socket, so a flood there costs the
	// engine nothing: no wake-up, no read; the kernel counts and drops.
	// Datagrams sent to an idle pair (pairpool.go) are added: those its
	// socket filter dropped (the program's own counter), or, where idle
	// pairs are parked by connect(2), those that found no socket (counted
	// in NoPorts already); and what an ended session left unread in its
	// queue, read and dropped by a worker.
	UnallocatedDrops uint64
	// IdleFilter: idle pairs are parked by the socket filter, not by
	// connect(2) (pairpool.go).
	IdleFilter bool
	// IdlePairs are the pairs kept bound for the next session (counted in
	// PortsFree); of the legs since the start, PairsReused took one (and
	// PairsReusedEarly of those one inside its quarantine, nothing else
	// being free), PairsOpened opened their sockets.
	IdlePairs                     int
	PairsReused, PairsReusedEarly uint64
	PairsOpened                   uint64
}

// New starts an engine with cfg.Workers event loops.
func New(cfg Config, log *slog.Logger) (*Engine, error) {
	pool, err := newPortPool(cfg.PortMin, cfg.PortMax)
	if err != nil {
		return nil, err
	}
	if cfg.LatchWindow <= 0 {
		return nil, fmt.Errorf("%w: latch window %s: must be positive", ErrConfig, cfg.LatchWindow)
	}
	if cfg.IdleQuarantine < 0 {
		return nil, fmt.Errorf("%w: idle pair quarantine %s: must not be negative", ErrConfig, cfg.IdleQuarantine)
	}
	if err := cfg.Police.validate(); err != nil {
		return nil, err
	}
	if err := cfg.DSCP.validate(); err != nil {
		return nil, err
	}
	if cfg.PoliceInterval < 0 {
		return nil, fmt.Errorf("%w: police interval %s: must not be negative", ErrConfig, cfg.PoliceInterval)
	}
	if cfg.PoliceInterval == 0 {
		cfg.PoliceInterval = DefaultPoliceInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	e := &Engine{cfg: cfg, log: log, pool: pool, idle: newIdlePool(cfg, pool.total), stop: make(chan struct{}), sessions: make(map[*Session]struct{})}
	e.noPorts0, _ = udpNoPorts()
	if err := e.startSendPath(); err != nil {
		return nil, err
	}
	e.startIdleFilter()
	for range n {
		w, err := newWorker()
		if err != nil {
			_ = e.Close()
			return nil, err
		}
		w.xdp = e.xdp.worker(len(e.workers))
		e.workers = append(e.workers, w)
		e.wg.Go(w.run)
	}
	if err := e.startFastPath(); err != nil {
		_ = e.Close()
		return nil, err
	}
	if cfg.ReportInterval == 0 {
		e.cfg.ReportInterval = DefaultReportInterval
	}
	if e.fp != nil && cfg.Police.policing() {
		e.wg.Go(e.policeKernel)
	}
	if cfg.InactivityTimeout > 0 || e.cfg.ReportInterval > 0 {
		e.wg.Go(e.housekeep)
	}
	return e, nil
}

// Close ends every session and stops the workers.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.idle.closeAll(e.pool) // and the pairs of the sessions below are closed, not kept
	ss := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		ss = append(ss, s)
	}
	e.mu.Unlock()
	for _, s := range ss {
		s.Close()
	}
	close(e.stop)
	for _, w := range e.workers {
		w.stop()
	}
	e.wg.Wait()
	for _, w := range e.workers {
		w.closeFDs()
	}
	if e.park != nil {
		_ = e.park.Close()
	}
	e.closeSendPath()
	if e.fp != nil {
		return e.fp.close()
	}
	return nil
}

// startIdleFilter loads the socket filter that parks idle pairs
// (pairpool.go); where it cannot, it says why in one line, and they are
// parked by connect(2). An engine that keeps no idle pairs has no use for
// it: its sockets are spared the attach and the filter's run.
func (e *Engine) startIdleFilter() {
	if e.cfg.parkByConnect || e.idle.max == 0 {
		return
	}
	f, err := idlefilter.Load(e.cfg.PortMin, e.cfg.PortMax)
	if err != nil {
		e.log.Info("media: idle pairs parked by connect(2), the socket filter is unavailable", "reason", err)
		return
	}
	e.park = f
}

// attachPark puts the idle filter on a new pair's sockets and reports
// whether both carry it; a pair without it is parked by connect(2).
func (e *Engine) attachPark(fds ...int) bool {
	if e.park == nil {
		return false
	}
	for _, fd := range fds {
		if err := e.park.Attach(fd); err != nil {
			if !errors.Is(err, idlefilter.ErrClosed) && !e.parkWarned.Swap(true) { // ErrClosed: the engine is closing
				e.log.Warn("media: a socket refused the idle filter; its pair and others like it are parked by connect(2)", "reason", err)
			}
			return false
		}
	}
	return true
}

// Stats returns the engine-wide counters.
func (e *Engine) Stats() EngineStats {
	e.idle.mu.Lock()
	idle := e.idle.n
	inUse, free := e.pool.counts() // an idle pair is out of pool's ring: free all the same
	e.idle.mu.Unlock()
	st := EngineStats{PortsInUse: 2 * (inUse - idle), PortsFree: 2 * (free + idle), IdlePairs: idle,
		PairsReused: e.idle.reused.Load(), PairsReusedEarly: e.idle.early.Load(), PairsOpened: e.idle.opened.Load()}
	e.mu.Lock()
	st.Sessions = len(e.sessions)
	e.mu.Unlock()
	for _, w := range e.workers {
		st.Wakeups += w.wakeups.Load()
		st.Datagrams += w.reads.Load()
		st.TxDrops += w.txDrops.Load()
	}
	if n, err := udpNoPorts(); err == nil && n >= e.noPorts0 {
		st.UnallocatedDrops = n - e.noPorts0
	}
	if e.park != nil {
		st.IdleFilter = true
		if n, err := e.park.Drops(); err == nil {
			st.UnallocatedDrops += n
		}
	}
	st.UnallocatedDrops += e.idle.arrived.Load()
	for _, w := range e.workers {
		st.UnallocatedDrops += w.idleReads.Load()
	}
	return st
}

// NewSession allocates the ports of both legs (ErrNoPorts when the pool is
// empty) and places the session on the least loaded worker. onTimeout is
// called once, on its own goroutine, when no packet came from either leg
// for the configured inactivity timeout after media started.
func (e *Engine) NewSession(id string, a, b LegProfile, onTimeout func()) (*Session, error) {
	for side, p := range []LegProfile{a, b} {
		if !p.Local.IsValid() || p.Local.IsUnspecified() {
			return nil, fmt.Errorf("%w: session %s: leg %s: local address %q: want a unicast address", ErrConfig, id, Side(side), p.Local)
		}
		if p.Ptime != 0 && (p.Ptime < minPtime || p.Ptime > maxPtime) {
			return nil, fmt.Errorf("%w: session %s: leg %s: ptime %d ms: want 0 or %d..%d", ErrConfig, id, Side(side), p.Ptime, minPtime, maxPtime)
		}
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.mu.Unlock()

	w := e.workers[0]
	for _, o := range e.workers[1:] {
		if o.load() < w.load() {
			w = o
		}
	}
	s := &Session{id: id, e: e, w: w, onTimeout: onTimeout, started: time.Now()}
	s.lastPacket = s.started.UnixNano()
	s.origin = [2]origin{{id: randUint63()}, {id: randUint63()}}
	for side, p := range []LegProfile{a, b} {
		l := &leg{sess: s, side: Side(side), prof: p}
		l.police(e.cfg.Police, "audio") // until an answer says what the stream is
		if err := e.openLeg(l, w); err != nil {
			s.release()
			return nil, fmt.Errorf("media: session %s: leg %s: %w", id, Side(side), err)
		}
		s.legs[side] = l
	}
	for side, l := range s.legs {
		l.own = relay{to: s.legs[1-side], w: w}
		l.sink = &l.own
	}
	for _, l := range s.legs {
		for _, k := range []*sock{l.rtp, l.rtcp} {
			if err := w.add(k); err != nil {
				s.mu.Lock()
				s.closed = true // the worker may already serve the sockets added
				s.mu.Unlock()
				s.release()
				return nil, fmt.Errorf("media: session %s: %w", id, err)
			}
		}
	}
	w.mu.Lock()
	w.nsess++
	w.mu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		s.Close()
		return nil, ErrClosed
	}
	e.sessions[s] = struct{}{}
	e.mu.Unlock()
	return s, nil
}

// openLeg gives l, of a session on worker w, a port pair: an idle pair on
// its local address that served its quarantine (w's first), else a closed
// free pair bound anew (skipping pairs another program holds: they go back
// to the end of the queue), else, when nothing else is free, an idle pair
// still in quarantine or one of another local address (pairpool.go).
func (e *Engine) openLeg(l *leg, w *worker) error {
	local := l.prof.Local
	now := time.Now().UnixNano()
	if ip := e.idle.take(local, w, now, false); ip != nil && e.reuse(l, w, ip, false) {
		return nil
	}
	var busy []int
	defer func() {
		for _, p := range busy {
			e.pool.put(p)
		}
	}()
	for {
		port, ok := e.pool.get()
		if !ok {
			ip := e.idle.take(local, w, now, true)
			if ip == nil {
				return fmt.Errorf("%w: %d ports of %d-%d in use", ErrNoPorts, e.Stats().PortsInUse, e.cfg.PortMin, e.cfg.PortMax)
			}
			if ip.local == local {
				// Early unless it served its quarantine since the take above.
				early := now-ip.freed < int64(e.idle.quarantine)
				if e.reuse(l, w, ip, early) {
					if early {
						e.idle.early.Add(1)
					}
					return nil
				}
				continue // its port went back to the pool
			}
			// Bound to another address: the ports are this leg's.
			ip.close()
			port = ip.port
		}
		rfd, err := openUDP(local, port)
		if err != nil {
			busy = append(busy, port)
			if errors.Is(err, unix.EADDRINUSE) {
				continue
			}
			return err
		}
		cfd, err := openUDP(local, port+1)
		if err != nil {
			_ = unix.Close(rfd)
			busy = append(busy, port)
			if errors.Is(err, unix.EADDRINUSE) {
				continue
			}
			return err
		}
		e.idle.opened.Add(1)
		filtered := e.attachPark(rfd, cfd)
		l.rtp = &sock{fd: rfd, port: port, leg: l, filtered: filtered}
		l.rtcp = &sock{fd: cfd, port: port + 1, rtcp: true, leg: l, filtered: filtered}
		l.tos = 0
		l.mark(e.cfg.DSCP, "audio") // until an answer says what the stream is
		return nil
	}
}

// reuse gives l, of a session on worker w, the idle pair ip: out of its
// worker's epoll set when that is another, unparked (a store when the
// filter parked it, else a disconnect); early (in its quarantine) it is
// drained first, as its worker may not have been yet. When that fails the
// pair is closed, its port returned, and l gets none.
func (e *Engine) reuse(l *leg, w *worker, ip *idlePair, early bool) bool {
	if ip.w != w {
		for i, fd := range ip.fd {
			ip.w.clearSlot(fd, &ip.mark[i])
			_ = unix.EpollCtl(ip.w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		}
	}
	if early {
		for i, fd := range ip.fd {
			ip.w.clearSlot(fd, &ip.mark[i]) // its worker no longer drains it
			// Still parked, so only what queued before is there (or, by
			// connect(2), a flood forging the pair's own address as its
			// source, on loopback): bounded by what a receive buffer
			// holds, not by how long the flood lasts.
			e.idle.arrived.Add(drainSocket(fd, earlyDrainRounds))
		}
	}
	if err := ip.wake(); err != nil {
		e.log.Warn("media: idle pair closed", "port", ip.port, "reason", err)
		ip.close()
		e.pool.put(ip.port)
		return false
	}
	e.idle.reused.Add(1)
	// Until the session's sockets take the marks' places (NewSession), a
	// datagram arriving is drained by the worker like one at an idle pair.
	filtered := ip.park != nil
	l.rtp = &sock{fd: ip.fd[0], port: ip.port, leg: l, registered: ip.w == w, filtered: filtered}
	l.rtcp = &sock{fd: ip.fd[1], port: ip.port + 1, rtcp: true, leg: l, registered: ip.w == w, filtered: filtered}
	l.tos = e.cfg.DSCP.tos("audio") // an idle pair's marking (keepIdle)
	return true
}

// keepIdle makes l's pair idle (pairpool.go), in its place in the epoll set
// of the session's worker w, and reports whether it did. The kernel fast
// path's entries for its ports go first: a pair whose entry stays is not
// kept, nor one whose marking cannot go back to audio's (a video
// stream's: an idle pair is marked as a new one is).
func (e *Engine) keepIdle(l *leg, w *worker, now int64) bool {
	if !l.rtp.registered || !l.rtcp.registered || !e.idle.room() {
		return false
	}
	if tos := e.cfg.DSCP.tos("audio"); l.tos != tos {
		if l.setTOS(tos) != nil {
			return false
		}
		l.tos = tos
	}
	if e.fp != nil {
		for _, k := range []*sock{l.rtp, l.rtcp} {
			if err := e.fp.path.Delete(l.local(k)); err != nil {
				e.log.Warn("media fast path: entry of an ended leg stays, its ports are closed", "port", k.port, "reason", err)
				return false
			}
		}
	}
	fds := [2]int{l.rtp.fd, l.rtcp.fd}
	ip := &idlePair{local: l.prof.Local, port: l.rtp.port, fd: fds, w: w, freed: now}
	if l.rtp.filtered && l.rtcp.filtered {
		ip.park = e.park
	}
	for i, fd := range fds {
		ip.mark[i] = sock{fd: fd, port: l.rtp.port + i, registered: true}
		w.setSlot(fd, &ip.mark[i])
	}
	if !ip.idle() || !e.idle.put(ip) {
		ip.unpark()
		for i, fd := range fds {
			w.clearSlot(fd, &ip.mark[i])
		}
		return false
	}
	return true
}

func (w *worker) load() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nsess
}

// housekeep calls the onTimeout of sessions whose media went quiet and
// sends the own RTCP reports that are due (rtcp.go).
func (e *Engine) housekeep() {
	tick := time.Second
	if to := e.cfg.InactivityTimeout; to > 0 {
		tick = min(to/4, tick)
	}
	if ri := e.cfg.ReportInterval; ri > 0 {
		tick = min(ri/4, tick)
	}
	e.everySession(tick, func(s *Session, now time.Time, snap fastpath.Snapshot) {
		if e.cfg.InactivityTimeout > 0 {
			s.checkInactive(now, e.cfg.InactivityTimeout, snap)
		}
		if e.cfg.ReportInterval > 0 {
			s.checkReports(now, e.cfg.ReportInterval)
		}
	})
}

// everySession calls fn for each session every tick until the engine
// closes, with a snapshot of the kernel fast path's counters taken at the
// tick (nil without the fast path, or when it could not be read: the
// sessions then read their own entries).
func (e *Engine) everySession(tick time.Duration, fn func(*Session, time.Time, fastpath.Snapshot)) {
	t := time.NewTicker(tick)
	defer t.Stop()
	var snap fastpath.Snapshot
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			snap = e.fp.snapshot(snap)
			for _, s := range e.sessionList() {
				fn(s, now, snap)
			}
		}
	}
}

func (e *Engine) forget(s *Session) {
	e.mu.Lock()
	delete(e.sessions, s)
	e.mu.Unlock()
}

var errNoCounter = errors.New("media: no Udp NoPorts in /proc/thread-self/net/snmp")

// udpNoPorts reads Udp NoPorts of the calling thread's network namespace,
// plus Udp6NoPorts (IPv6's datagrams are counted there only; absent when
// the kernel has no IPv6). Not /proc/net: that follows the main thread,
// which a test (or a future namespace-aware caller) may have moved to
// another namespace.
func udpNoPorts() (uint64, error) {
	n, err := udp4NoPorts()
	if err != nil {
		return 0, err
	}
	return n + udp6NoPorts(), nil
}

// udp6NoPorts reads Udp6NoPorts of the calling thread's network
// namespace, 0 when there is none.
func udp6NoPorts() uint64 {
	b, err := os.ReadFile("/proc/thread-self/net/snmp6")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := bytes.Fields(sc.Bytes()); len(f) == 2 && string(f[0]) == "Udp6NoPorts" {
			n, _ := strconv.ParseUint(string(f[1]), 10, 64)
			return n
		}
	}
	return 0
}

// udp4NoPorts reads Udp NoPorts of the calling thread's network namespace.
func udp4NoPorts() (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 0 || string(f[0]) != "Udp:" {
			continue
		}
		if names == nil {
			for _, n := range f {
				names = append(names, string(n))
			}
			continue
		}
		for i, v := range f {
			if i < len(names) && names[i] == "NoPorts" {
				return strconv.ParseUint(string(v), 10, 64)
			}
		}
	}
	return 0, errNoCounter
}
