package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/umedge/umedge/core/internal/media/fastpath"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The kernel fast path (fastpath, [media] fast_path): once both legs of a
// session are latched and neither needs payload work, the session's
// forwarding is written into the kernel program's map and the kernel relays
// its RTP (and RTCP) without waking a worker. The sockets stay open and
// served: whatever the program passes up (another source, STUN, a payload
// type not answered, a fragment) reaches the leg as before, so re-latching,
// ICE and stray counting work unchanged, and a re-latch or any change of the
// session's media state removes the entries at once and, when the session
// still qualifies, installs new ones.
//
// A session qualifies when the engine has a fast path, media is up and no
// offer waits for its answer, and on both legs: the sink is the relay (no
// terminator attached), no SRTP is terminated (passthrough is fine: the
// packets pass untouched), no DTMF is dropped, the relay re-packetises
// neither way (repack.go), the peer is not on hold, the
// RTP source is latched, rtcp-mux is the same, the addresses are of one
// family, and the firewall's policy (Config.FastPathAllow) accepts packets
// to the leg's ports: offloaded packets never meet netfilter.
//
// The kernel's per-entry counters and last-seen time are folded into the
// legs' counters and the session's last-packet time whenever they are read
// (Stats, the inactivity check, Close), so CDRs, /calls and inactivity
// timeouts see every packet. The RFC 3550 receiver statistics (loss,
// jitter) are of the packets userspace saw.

// Paths a leg's packets take, as LegStats.Path says.
const (
	PathUserspace = "userspace"
	PathKernel    = "kernel"
)

// offloader is the engine's side of the fast path.
type offloader struct {
	path  *fastpath.Path
	allow func(netip.AddrPort) bool
	log   *slog.Logger
	queue chan *Session
	stop  chan struct{}
	done  chan struct{}

	offloads atomic.Uint64 // sessions put on the kernel path
	removals atomic.Uint64 // and taken off it again (any reason, end of call included)
	refused  atomic.Uint64 // sessions that qualified but could not be offloaded (no route, attach failed, map full)
	policed  atomic.Uint64 // sessions taken off it because a leg went over its cap (police.go)

	mu     sync.Mutex
	ifaces map[int]error // ingress interfaces tried: nil = attached
}

// FastPathStats is the engine's fast-path view.
type FastPathStats struct {
	Mode      fastpath.Mode
	Active    bool   // the program is loaded and attached
	Why       string // why not, when !Active and Mode != off
	Attached  map[int]string
	Offloads  uint64 // sessions put on the kernel path
	Removals  uint64
	Refused   uint64
	Policed   uint64 // sessions taken off the kernel path for good because a leg went over its cap (police.go)
	Entries   int    // forwarding entries in the kernel now
	Unavail   uint64
	Reasons   [len(fastpath.Reasons)]uint64 // the program's per-packet verdicts
	Offloaded int                           // sessions on the kernel path now
}

// startFastPath loads and attaches the program as cfg.FastPath says: off
// does nothing; tc fails when the program cannot load or attach; auto logs
// one line saying why and goes on in userspace.
func (e *Engine) startFastPath() error {
	mode := e.cfg.FastPath
	switch mode {
	case "", fastpath.Off:
		return nil
	case fastpath.Auto, fastpath.TC:
	default:
		return fmt.Errorf("%w: fast_path %q: want off, auto or tc", ErrConfig, mode)
	}
	// An edged that died on a kernel without TCX left its program on
	// the interfaces, forwarding its calls: gone before ours goes on.
	if n, err := fastpath.RemoveStale(); n > 0 || err != nil {
		e.log.Warn("media fast path: removed the program an earlier run left", "filters", n, "reason", err)
	}
	p, err := fastpath.Load(e.cfg.PortMax - e.cfg.PortMin + 1)
	if err == nil {
		var n int
		n, err = p.AttachAll(e.cfg.FastPathAddrs)
		if err == nil && n == 0 {
			err = fmt.Errorf("%w: no interface to attach to (none up with an Ethernet header holds a media address %v)", fastpath.ErrUnavailable, e.cfg.FastPathAddrs)
		}
		if err != nil && (mode == fastpath.TC || n == 0) {
			_ = p.Close()
			p = nil
		}
	}
	if err != nil && mode == fastpath.TC {
		return fmt.Errorf("media: fast_path = \"tc\": %w", err)
	}
	if err != nil {
		e.fpUnavailable.Add(1)
		e.fpWhy = err.Error()
		if p == nil {
			// auto asked for the fast path only where it can run: its
			// absence is the expected case on loopback or an old kernel,
			// not a fault (the metric counts it).
			e.log.Info("media fast path off, relaying in userspace", "fast_path", mode, "reason", err)
			return nil
		}
		e.log.Warn("media fast path not on every interface", "fast_path", mode, "reason", err)
	}
	o := &offloader{path: p, allow: e.cfg.FastPathAllow, log: e.log, queue: make(chan *Session, 4096),
		stop: make(chan struct{}), done: make(chan struct{}), ifaces: make(map[int]error)}
	for idx := range p.Attached() {
		o.ifaces[idx] = nil
	}
	e.fp = o
	go o.run()
	e.log.Info("media fast path on", "fast_path", mode, "interfaces", len(o.ifaces))
	return nil
}

func (o *offloader) close() error {
	close(o.stop)
	<-o.done
	return o.path.Close()
}

// run installs the entries of queued sessions: route lookups and attaches
// are netlink round trips, kept off the workers.
func (o *offloader) run() {
	defer close(o.done)
	for {
		select {
		case <-o.stop:
			return
		case s := <-o.queue:
			s.offloadInstall()
		}
	}
}

// ingress attaches the program to the interface packets from peer arrive
// on (the one routing to it) and returns that interface.
func (o *offloader) iface(peer netip.Addr) (int, error) {
	idx, err := o.path.Route(peer)
	if err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err, tried := o.ifaces[idx]; tried {
		return idx, err
	}
	l, err := netlink.LinkByIndex(idx)
	switch {
	case err != nil:
	case l.Attrs().Flags&unix.IFF_LOOPBACK != 0 || l.Attrs().EncapType != "ether":
		err = fmt.Errorf("%w: %s is reached through %s, which has no Ethernet header", fastpath.ErrUnavailable, peer, l.Attrs().Name)
	default:
		if err = o.path.Attach(idx); err != nil {
			o.log.Warn("media fast path: attach failed, calls through it stay in userspace", "interface", l.Attrs().Name, "reason", err)
		}
	}
	o.ifaces[idx] = err
	return idx, err
}

// offloadState is a session's part in the fast path, guarded by its mutex.
type offloadState struct {
	want    []fastpath.Entry // what is installed (Ifindex 0), or was refused
	entries []offloaded      // installed
	queued  bool
	refused bool // want could not be installed: not retried until it changes
	policed bool // a leg went over its cap on the kernel path: userspace polices the call from then on (police.go)
}

// offloaded is one installed entry: packets the leg rx received.
type offloaded struct {
	e       fastpath.Entry
	rx      Side
	base    fastpath.Counters // counters already folded into the legs
	policed fastpath.Counters // counters already run through the legs' buckets (police.go)
}

// offloadWant is the session's forwarding as entries, nil when it does not
// qualify.
func (s *Session) offloadWant() []fastpath.Entry {
	o := s.e.fp
	if o == nil || s.closed || !s.mediaUp || s.pending != nil || s.fp.policed {
		return nil
	}
	a, b := s.legs[SideA], s.legs[SideB]
	if a.mux != b.mux || a.prof.Local.Is4() != b.prof.Local.Is4() {
		return nil
	}
	for _, l := range s.legs {
		// RTP only: the program checks the payload type, which a UDPTL
		// datagram (T.38) has none of, so a primary stream switched to
		// fax stays in userspace; streams beyond the primary always do.
		if l.off || l.kind != kindRTP || l.sink != &l.own || l.secure || l.hold || l.prof.DropDTMF || l.rp != nil || l.ownRTCP || !l.latchRTP.IsValid() ||
			l.latchRTP.Addr().Unmap().Is4() != l.prof.Local.Is4() {
			return nil
		}
		for _, k := range []*sock{l.rtp, l.rtcp} {
			if o.allow != nil && !o.allow(netip.AddrPortFrom(l.prof.Local, uint16(k.port))) { //nolint:gosec // a port
				return nil
			}
		}
	}
	var out []fastpath.Entry
	for _, rx := range s.legs {
		tx := s.legs[rx.side.other()]
		var pts [2]uint64
		for pt, i := range rx.pt.idx {
			if i != 0 || !rx.ptKnown {
				pts[pt>>6] |= 1 << (pt & 63)
			}
		}
		out = append(out, fastpath.Entry{Local: rx.local(rx.rtp), Peer: rx.latchRTP, Src: tx.local(tx.rtp), Dst: tx.rtpDst(), PayloadTypes: pts, TOS: tx.tos})
		if _, dst := tx.rtcpDst(); !rx.mux && rx.latchRTCP.IsValid() && dst.IsValid() {
			out = append(out, fastpath.Entry{Local: rx.local(rx.rtcp), Peer: rx.latchRTCP, Src: tx.local(tx.rtcp), Dst: dst, RTCP: true, TOS: tx.tos})
		}
	}
	return out
}

func (l *leg) local(k *sock) netip.AddrPort {
	return netip.AddrPortFrom(l.prof.Local, uint16(k.port)) //nolint:gosec // a port
}

// offloadUpdate brings the kernel in line with the session's state after
// anything that may change it (a latch, an offer or answer, Attach): if
// the forwarding changed, the old entries go at once and new ones are
// queued for the offloader. Called with s.mu held.
func (s *Session) offloadUpdate() {
	if s.e.fp == nil {
		return
	}
	want := s.offloadWant()
	if slices.Equal(want, s.fp.want) {
		return
	}
	s.offloadRemove()
	s.fp.want, s.fp.refused = want, false
	if want != nil && !s.fp.queued {
		select {
		case s.e.fp.queue <- s:
			s.fp.queued = true
		default: // a burst of thousands of latches: this one stays in userspace until its next change
			s.e.fp.refused.Add(1)
		}
	}
}

// offloadInstall runs on the offloader: it installs the session's wanted
// entries unless the state moved on since it was queued.
func (s *Session) offloadInstall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fp.queued = false
	o := s.e.fp
	want := s.offloadWant()
	if want == nil || len(s.fp.entries) > 0 || s.fp.refused || !slices.Equal(want, s.fp.want) {
		return
	}
	var errs []error
	var done []offloaded
	for _, e := range want {
		if _, err := o.iface(e.Peer.Addr()); err != nil {
			errs = append(errs, err)
			break
		}
		out, err := o.path.Route(e.Dst.Addr())
		if err != nil {
			errs = append(errs, err)
			break
		}
		e.Ifindex = out
		if err := o.path.Put(e); err != nil {
			errs = append(errs, err)
			break
		}
		side := SideA
		if e.Local.Port() != uint16(s.legs[SideA].rtp.port) && e.Local.Port() != uint16(s.legs[SideA].rtcp.port) { //nolint:gosec // ports
			side = SideB
		}
		done = append(done, offloaded{e: e, rx: side})
	}
	if err := errors.Join(errs...); err != nil {
		for _, d := range done {
			_ = o.path.Delete(d.e.Local)
		}
		s.fp.refused = true
		o.refused.Add(1)
		s.e.log.Debug("media fast path: session stays in userspace", "call_id", s.id, "reason", err)
		return
	}
	s.fp.entries = done
	o.offloads.Add(1)
}

// snapshot reads the fast path's counters into snap (made when nil); nil
// when there is no fast path or it could not be read.
func (o *offloader) snapshot(snap fastpath.Snapshot) fastpath.Snapshot {
	if o == nil {
		return nil
	}
	if snap == nil {
		snap = fastpath.Snapshot{}
	}
	if err := o.path.Snapshot(snap); err != nil {
		o.log.Warn("media fast path: counters not read in one snapshot; each session reads its own", "reason", err)
		return nil
	}
	return snap
}

// counters is the kernel's counters of the entry for local: from snap,
// or from the map when snap is nil.
func (o *offloader) counters(snap fastpath.Snapshot, local netip.AddrPort) (fastpath.Counters, bool) {
	if snap != nil {
		return snap.Get(local)
	}
	c, err := o.path.Counters(local)
	return c, err == nil
}

// offloadSync folds what the kernel forwarded since the last read into the
// legs' counters and the session's last-packet time, read from snap (an
// entry put after it is read at the next) or, when snap is nil, from the
// map itself. Called with s.mu held.
func (s *Session) offloadSync(snap fastpath.Snapshot) {
	for i := range s.fp.entries {
		in := &s.fp.entries[i]
		if c, ok := s.e.fp.counters(snap, in.e.Local); ok {
			s.offloadFold(in, c)
		}
	}
}

// offloadFold folds counters c of entry in, read from the kernel, into the
// legs and the session's last-packet time. Called with s.mu held.
func (s *Session) offloadFold(in *offloaded, c fastpath.Counters) {
	dp, db := c.Packets-in.base.Packets, c.Bytes-in.base.Bytes
	rx, tx := s.legs[in.rx], s.legs[in.rx.other()]
	rx.stats.packetsIn += dp
	rx.stats.kernelIn += dp
	rx.stats.bytesIn += db
	tx.stats.packetsOut += dp
	tx.stats.bytesOut += db
	if in.e.RTCP {
		rx.stats.rtcpIn += dp
		tx.stats.rtcpOut += dp
	}
	if !c.Last.IsZero() && c.Last.UnixNano() > s.lastPacket {
		s.lastPacket = c.Last.UnixNano()
	}
	if !in.e.RTCP {
		// What userspace did not see of the peer's stream, for the
		// NAT-rebind check (leg.rebound).
		rx.kernelSeen += dp
		if !c.Last.IsZero() {
			rx.lastIn = max(rx.lastIn, c.Last.UnixNano())
		}
	}
	in.base = c
}

// offloadRemove takes the session's entries out of the kernel, counters
// folded in first. Called with s.mu held.
func (s *Session) offloadRemove() {
	if len(s.fp.entries) == 0 {
		s.fp.want = nil
		return
	}
	for i := range s.fp.entries {
		in := &s.fp.entries[i]
		c, err := s.e.fp.path.Take(in.e.Local)
		if err != nil {
			s.e.log.Warn("media fast path: remove entry", "call_id", s.id, "reason", err)
			continue
		}
		s.offloadFold(in, c)
	}
	s.fp.entries, s.fp.want = nil, nil
	s.e.fp.removals.Add(1)
}

// offloadPath is the path RTP from leg side's peer takes.
func (s *Session) offloadPath(side Side) string {
	for _, in := range s.fp.entries {
		if in.rx == side && !in.e.RTCP {
			return PathKernel
		}
	}
	return PathUserspace
}

// sessionList is a snapshot of the engine's sessions.
func (e *Engine) sessionList() []*Session {
	e.mu.Lock()
	defer e.mu.Unlock()
	ss := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		ss = append(ss, s)
	}
	return ss
}

// FastPath returns the engine's fast-path counters.
func (e *Engine) FastPath() FastPathStats {
	st := FastPathStats{Mode: e.cfg.FastPath, Why: e.fpWhy, Unavail: e.fpUnavailable.Load()}
	if st.Mode == "" {
		st.Mode = fastpath.Off
	}
	o := e.fp
	if o == nil {
		return st
	}
	st.Active = true
	st.Attached = o.path.Attached()
	st.Offloads, st.Removals, st.Refused, st.Policed = o.offloads.Load(), o.removals.Load(), o.refused.Load(), o.policed.Load()
	st.Entries = o.path.Entries()
	st.Reasons = o.path.Reasons()
	for _, s := range e.sessionList() {
		s.mu.Lock()
		if len(s.fp.entries) > 0 {
			st.Offloaded++
		}
		s.mu.Unlock()
	}
	return st
}
