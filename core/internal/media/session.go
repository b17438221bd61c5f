package media

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// Side names a leg of a session.
type Side int

// The two legs: A is the caller's, B the callee's.
const (
	SideA Side = iota
	SideB
)

func (s Side) String() string {
	if s == SideA {
		return "A"
	}
	return "B"
}

func (s Side) other() Side { return 1 - s }

// Security is a leg's media security mode (R-SBC-4, AudioCodes' "SBC Media
// Security Mode").
type Security int

const (
	// SecurityAsIs mirrors the other leg: SRTP passes through untouched
	// (the endpoints' own keys) when both legs are As is, otherwise the leg
	// speaks SRTP with our keys exactly when the other leg does.
	SecurityAsIs Security = iota
	// SecurityRTP ("Not secured") speaks plain RTP; an RTP/SAVP offer is
	// not acceptable, opportunistic crypto (RFC 8643) is declined.
	SecurityRTP
	// SecuritySRTP ("Secured only") requires SRTP: an offer without an
	// acceptable key is not acceptable, offers go out as RTP/SAVP.
	SecuritySRTP
	// SecurityBoth offers SRTP opportunistically (RTP/AVP with a=crypto)
	// and accepts either.
	SecurityBoth
)

func (s Security) String() string {
	switch s {
	case SecurityAsIs:
		return "as is"
	case SecurityRTP:
		return "not secured"
	case SecuritySRTP:
		return "secured only"
	case SecurityBoth:
		return "both"
	}
	return fmt.Sprintf("security(%d)", int(s))
}

// LegProfile is what the peer of one leg gets.
type LegProfile struct {
	Local    netip.Addr // address this leg's media binds and announces (IPv4 or IPv6)
	Security Security
	Codecs   []string // allowed encoding names in preference order, e.g. "PCMU","PCMA","G722"; empty = all offered; telephone-event always kept unless DropDTMF
	DropDTMF bool
	// Ptime is the packetisation of the leg's audio in ms (R-SBC-3): what
	// its peer is asked to send (a=ptime in the SDP sent to it) and what
	// the relay sends it, re-packetising PCMU, PCMA, G722 and G729 from
	// the other leg (repack.go). 0 = as offered; else 10..60.
	Ptime int
}

// Bounds of LegProfile.Ptime, in ms.
const (
	minPtime = 10
	maxPtime = 60
)

// LegStats are the counters of one leg.
type LegStats struct {
	Local        netip.AddrPort // our RTP address on this leg
	Remote       netip.AddrPort // where RTP to the peer goes: the latched source, else the SDP's
	Codec        string         // first codec of the answer
	Secure       bool           // the leg carries SRTP
	PacketsIn    uint64         // RTP and RTCP accepted from the peer
	PacketsOut   uint64         // RTP and RTCP sent to the peer
	BytesIn      uint64
	BytesOut     uint64
	Lost         uint64  // RTP packets lost from the peer (RFC 3550 A.3)
	JitterMs     float64 // interarrival jitter of the peer's RTP (RFC 3550 A.8)
	Strays       uint64  // datagrams dropped: not from the latched source, not RTP, unknown payload type, larger than 2048 bytes
	SRTPFailures uint64  // SRTP/SRTCP packets that failed authentication
	SRTPReplays  uint64  // SRTP/SRTCP packets replayed inside the 64-packet window
	Unprotected  uint64  // plain RTCP on an SRTP leg (no SRTCP index and tag): dropped, not forwarded
	Policed      uint64  // RTP, RTCP or UDPTL from the peer over the leg's cap (Config.Police): dropped, not in PacketsIn
	RTCPIn       uint64  // of PacketsIn: RTCP accepted from the peer
	RTCPOut      uint64  // of PacketsOut: RTCP sent to the peer, relayed or the engine's own
	RTCPOwn      uint64  // of RTCPOut: the engine's own receiver reports (an SRTP leg whose other side sends no RTCP)
	Path         string  // PathKernel when the peer's RTP is forwarded by the kernel fast path, else PathUserspace
	// Of PacketsIn, the packets the kernel fast path forwarded, and those
	// userspace took in after both legs had latched: with the fast path on,
	// the second is what the kernel did not carry although it could have
	// (its entries not in yet, an offer pending, a peer that moved), so
	// PacketsKernel / (PacketsKernel + PacketsLatchedUserspace) is the
	// kernel's share after latching.
	PacketsKernel           uint64
	PacketsLatchedUserspace uint64
	// Ptime is the packetisation in ms of the audio towards this leg's
	// peer (R-SBC-3): the relay's target when it re-packetises
	// (Repacketised), else the leg's profile ptime, else its peer's SDP
	// a=ptime; 0 = none said. PtimeSDP is what the peer's own SDP said.
	Ptime, PtimeSDP int
	// Repacketised: the relay joins or splits the audio it sends this
	// leg's peer (repack.go). Of the RTP it sent here that way,
	// RepackIn is the packets taken, RepackOut the packets made, and
	// RepackIrregular the packets that were not whole frames (passed
	// alone, renumbered).
	Repacketised                         bool
	RepackIn, RepackOut, RepackIrregular uint64
}

// SessionStats are the counters of a session.
type SessionStats struct {
	ID string
	// Legs are the primary stream's: the first audio stream of the call's
	// first answered offer (the one a fax switch may turn into T.38 in its
	// place). While the primary is declined its Local is empty and the
	// rest are its last.
	Legs       [2]LegStats // indexed by Side
	Started    time.Time
	LastPacket time.Time
	// Streams are all the streams the engine anchors now, the primary
	// among them, in m-line order — none when the primary audio stream
	// over RTP, at m-line 0, is all there is: it would repeat Legs, and a
	// record per ended call (the CDR) is mostly that.
	Streams []StreamStats `json:",omitempty"`
	// Declined counts the m-lines of offers declined (port 0) because the
	// session anchored maxStreams already.
	Declined uint64 `json:",omitempty"`
}

// StreamStats are the counters of one anchored stream.
type StreamStats struct {
	Index   int         // its m-line's index
	Media   string      // audio, video, image
	Proto   string      // rtp or udptl
	Primary bool        // the stream of SessionStats.Legs
	Legs    [2]LegStats // indexed by Side
}

// stream is one anchored m-line: a leg (its own port pair) on each side.
type stream struct {
	legs  [2]*leg
	media string
}

// Session is one call's media: two legs and their negotiation.
type Session struct {
	id        string
	e         *Engine
	w         *worker
	onTimeout func()
	started   time.Time

	mu         sync.Mutex
	legs       [2]*leg
	closed     bool
	lastPacket int64 // unix ns of the last datagram read on any leg
	mediaUp    bool  // an answer was applied: the inactivity clock runs
	timedOut   bool
	pending    *negotiation // an offer waiting for its answer
	last       *negotiation // the last answered offer, for a repeated answer (183 then 200)
	origin     [2]origin    // o= of the SDP we send to each side
	// streams are the anchored streams by m-line index as the last answer
	// left them (nil: declined); prim is the primary's index once an
	// answer fixed it (primFixed). The primary's legs are legs, made with
	// the session and kept to its end; their pairs, like another stream's,
	// are released when an answer declines the stream (the legs stay, off)
	// and opened again by an offer that brings it back. Another stream's
	// legs are made by the offer that adds it.
	streams   []*stream
	prim      int
	primFixed bool
	declined  uint64
	// openLeg and freeLeg give a leg added by an offer its ports and take
	// them back; nil: the engine's (tests without sockets replace them).
	openLeg, freeLeg func(*leg) error
	fp               offloadState // the kernel fast path's entries (offload.go)
}

// origin is our o= towards one side: a stable session id, a version bumped
// with each new description.
type origin struct{ id, version uint64 }

// Close stops the session's media and returns its ports; idempotent.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.offloadRemove()
	s.mu.Unlock()
	s.finish()
}

// finish releases the ports of a session just closed and forgets it.
func (s *Session) finish() {
	s.release()
	s.w.mu.Lock()
	s.w.nsess--
	s.w.mu.Unlock()
	s.e.forget(s)
}

// release takes the sockets opened so far out of the worker and keeps
// them idle for a later session (pairpool.go), or closes them and returns
// their ports. The session is closed (or was never published), so no
// worker touches them.
func (s *Session) release() {
	for _, l := range s.legs {
		s.releaseLeg(l)
	}
	for _, st := range s.streams {
		if st != nil && st.legs[SideA] != s.legs[SideA] {
			for _, l := range st.legs {
				s.releaseLeg(l)
			}
		}
	}
	if s.pending != nil {
		s.pending.releaseOpened(s)
	}
}

// releaseLeg gives l's pair back (idle or closed); its sockets are dead to
// the worker from then on.
func (s *Session) releaseLeg(l *leg) {
	if l == nil || l.rtp == nil {
		return
	}
	l.rtp.dead, l.rtcp.dead = true, true
	if s.closed {
		l.endPort = l.rtp.port // the final stats (a CDR) name it
	}
	defer func() { l.rtp, l.rtcp = nil, nil }()
	if s.freeLeg != nil {
		_ = s.freeLeg(l)
		return
	}
	if s.e.keepIdle(l, s.w, time.Now().UnixNano()) {
		return
	}
	for _, k := range []*sock{l.rtp, l.rtcp} {
		s.w.remove(k)
	}
	_ = unix.Close(l.rtp.fd)
	_ = unix.Close(l.rtcp.fd)
	s.e.pool.put(l.rtp.port)
}

// newLeg opens a leg on side for stream idx, added by an offer: its own
// pair, on the session's worker, off until an answer accepts the stream.
// Called with s.mu held.
func (s *Session) newLeg(side Side, idx int) (*leg, error) {
	l := &leg{sess: s, side: side, prof: s.legs[side].prof, idx: idx, off: true}
	l.police(s.e.cfg.Police, "audio") // until an answer says what the stream is
	return l, s.bind(l)
}

// bind gives leg l, off and without sockets, a pair on the session's
// worker: a new stream's, or the primary's again after an answer declined
// it. Called with s.mu held.
func (s *Session) bind(l *leg) error {
	if s.openLeg != nil {
		return s.openLeg(l)
	}
	if err := s.e.openLeg(l, s.w); err != nil {
		return fmt.Errorf("media: session %s: leg %s: %w", s.id, l.side, err)
	}
	for _, k := range []*sock{l.rtp, l.rtcp} {
		if err := s.w.add(k); err != nil {
			s.releaseLeg(l)
			return fmt.Errorf("media: session %s: %w", s.id, err)
		}
	}
	return nil
}

// Stats returns the session's counters.
func (s *Session) Stats() SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offloadSync(nil)
	st := SessionStats{ID: s.id, Started: s.started, LastPacket: time.Unix(0, s.lastPacket), Declined: s.declined}
	for i, l := range s.legs {
		st.Legs[i] = s.legStats(l)
	}
	for i, sm := range s.streams {
		if sm == nil {
			continue
		}
		ss := StreamStats{Index: i, Media: sm.media, Proto: sm.legs[SideA].kind.String(), Primary: sm.legs[SideA] == s.legs[SideA]}
		for j, l := range sm.legs {
			ss.Legs[j] = s.legStats(l)
		}
		st.Streams = append(st.Streams, ss)
	}
	if len(st.Streams) == 1 && st.Streams[0].Primary && st.Streams[0].Index == 0 && st.Streams[0].Media == "audio" && st.Streams[0].Proto == "rtp" {
		st.Streams = nil
	}
	return st
}

// legStats is l's public copy. Called with s.mu held.
func (s *Session) legStats(l *leg) LegStats {
	path := PathUserspace
	if l == s.legs[l.side] {
		path = s.offloadPath(l.side)
	}
	var local netip.AddrPort // none while the stream is declined
	switch {
	case l.rtp != nil:
		local = netip.AddrPortFrom(l.prof.Local, uint16(l.rtp.port)) //nolint:gosec // a port
	case l.endPort != 0:
		local = netip.AddrPortFrom(l.prof.Local, uint16(l.endPort)) //nolint:gosec // a port
	}
	ptime := l.prof.Ptime
	if ptime == 0 {
		ptime = l.sdpPtime
	}
	var rpIn, rpOut, rpOdd uint64
	repack := l.rp != nil && l.rp.target > 0
	if repack {
		ptime = l.rp.target
	}
	if l.rp != nil {
		rpIn, rpOut, rpOdd = l.rp.packetsIn, l.rp.packetsOut, l.rp.irregular
	}
	return LegStats{
		Ptime: ptime, PtimeSDP: l.sdpPtime, Repacketised: repack,
		RepackIn: rpIn, RepackOut: rpOut, RepackIrregular: rpOdd,

		Local:        local,
		Remote:       l.rtpDst(),
		Codec:        l.codec,
		Secure:       l.secure || l.passthrough,
		PacketsIn:    l.stats.packetsIn,
		PacketsOut:   l.stats.packetsOut,
		BytesIn:      l.stats.bytesIn,
		BytesOut:     l.stats.bytesOut,
		Lost:         l.recv.lost(),
		JitterMs:     l.recv.jitterMs(),
		Strays:       l.stats.strays,
		SRTPFailures: l.stats.srtpFailures,
		SRTPReplays:  l.stats.replays,
		Unprotected:  l.stats.unprotected,
		Policed:      l.stats.policed,
		RTCPIn:       l.stats.rtcpIn,
		RTCPOut:      l.stats.rtcpOut,
		RTCPOwn:      l.stats.rtcpOwn,
		Path:         path,

		PacketsKernel:           l.stats.kernelIn,
		PacketsLatchedUserspace: l.stats.latchedIn,
	}
}

// Attach makes sink the receiver of what leg side takes in, in place of the
// relay to the other leg; a nil sink puts the relay back.
func (s *Session) Attach(side Side, sink Sink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.legs[side]
	if sink == nil {
		sink = &l.own
	}
	l.sink = sink
	s.offloadUpdate() // a terminator takes the payload: off the kernel path
}

// Send puts one plain RTP packet out of leg side towards its peer,
// encrypted when the leg speaks SRTP: the way a local terminator (a player)
// sends media.
func (s *Session) Send(side Side, pkt []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	l := s.legs[side]
	dst := l.rtpDst()
	if !dst.IsValid() || l.hold || l.off {
		return fmt.Errorf("%w: session %s: leg %s", ErrNoPeer, s.id, side)
	}
	out := pkt
	if l.secure {
		var err error
		if l.sendBuf == nil {
			l.sendBuf = new([bufSize]byte)
		}
		if out, err = l.tx.EncryptRTP(l.sendBuf[:0], pkt, nil); err != nil {
			return fmt.Errorf("media: session %s: leg %s: encrypt: %w", s.id, side, err)
		}
	}
	if err := sendto(l.rtp.fd, out, dst); err != nil {
		return fmt.Errorf("media: session %s: leg %s: send to %s: %w", s.id, side, dst, err)
	}
	l.stats.packetsOut++
	l.stats.bytesOut += uint64(len(out))
	return nil
}

// latched reports whether both legs have latched their peer's RTP source.
// Called with s.mu held.
func (s *Session) latched() bool {
	return s.legs[SideA].latchRTP.IsValid() && s.legs[SideB].latchRTP.IsValid()
}

func (s *Session) checkInactive(now time.Time, timeout time.Duration, snap fastpath.Snapshot) {
	s.mu.Lock()
	s.offloadSync(snap)
	fire := !s.closed && s.mediaUp && !s.timedOut && now.UnixNano()-s.lastPacket >= int64(timeout)
	if fire {
		s.timedOut = true
	}
	s.mu.Unlock()
	if fire {
		s.e.log.Info("media inactivity timeout", "call_id", s.id, "timeout", timeout)
		if s.onTimeout != nil {
			go s.onTimeout()
		}
	}
}

func randUint63() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("media: crypto/rand: " + err.Error())
	}
	return binary.BigEndian.Uint64(b[:]) >> 1
}
