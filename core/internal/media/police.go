package media

import (
	"errors"
	"fmt"
	"time"

	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// Media policing (R-SBC-8's bandwidth caps; AudioCodes' and Ribbon's "media
// policing", the Lync Edge's per-port bandwidth): what the peer of a leg
// may send, per stream and direction, in packets/s and kbit/s. A latched
// peer (or whoever sends from its address) that sends more is not relayed
// past its cap: the rest is dropped and counted (LegStats.Policed), so a
// flood costs the inside network nothing beyond the cap and the engine a
// read and a few integer operations per packet.
//
// Each leg has two token buckets, one for what it takes in as RTP (or
// UDPTL) and a small one for its RTCP (a quarter of the stream's caps:
// RFC 3550 keeps RTCP to 5 % of the session's bandwidth, AVPF feedback
// under loss to more, a quarter leaves room for both), so that neither
// can starve the other. A bucket holds one second of its rates (the
// burst) and starts full. The caps apply after the source check (the
// latch, or SRTP authentication), so a stranger spraying a port cannot
// use up the peer's allowance: it is a stray, not policed. Sizes are the
// datagram's as it arrived (UDP payload, SRTP tag included).
//
// The kernel fast path forwards without userspace, so userspace's buckets
// see none of it: once per PoliceInterval one goroutine of the engine
// reads the kernel's counters of every offloaded session and runs them
// through the same buckets; a session one of whose legs went over its cap
// is taken off the kernel path for the rest of the call (logged once per
// leg, FastPathStats.Policed) and policed in userspace from then on. A
// flood through the kernel is so bounded to about one interval.

// Police are the caps of one leg's peer; 0 = no cap in that unit.
type Police struct {
	AudioPPS, AudioKbps int // audio and T.38 (image) streams
	VideoPPS, VideoKbps int // video streams
}

// DefaultPoliceInterval is how often the kernel path's counters are
// checked against the caps when Config.PoliceInterval is 0.
const DefaultPoliceInterval = time.Second

// policeBurst is how much of its rates a bucket holds: one second.
const policeBurst = int64(time.Second)

// bucket is a token bucket over packets and bytes. Tokens are counted in
// unit·ns (a packet costs 1e9 of them, a byte 1e9 in the byte bucket), so
// the refill is a multiplication, never a division. Guarded by the
// session's mutex; the zero bucket polices nothing.
type bucket struct {
	pps, bps int64 // packets/s, bytes/s; 0 = no cap in that unit
	pkts     int64 // packet tokens, at most pps·policeBurst
	bytes    int64 // byte tokens, at most bps·policeBurst
	last     int64 // unix ns of the last refill; 0: the bucket starts full
}

// set gives b the rates pps packets/s and kbps kbit/s, keeping its
// tokens up to the new burst.
func (b *bucket) set(pps, kbps int) {
	b.pps, b.bps = int64(pps), int64(kbps)*1000/8
	b.pkts, b.bytes = min(b.pkts, b.pps*policeBurst), min(b.bytes, b.bps*policeBurst)
}

// take reports whether n packets of size bytes in all fit in b at time
// now, and takes them out if they do. No allocation, no syscall: the
// clock is the caller's.
func (b *bucket) take(n, size int64, now int64) bool {
	if b.pps == 0 && b.bps == 0 {
		return true
	}
	el := now - b.last
	if b.last == 0 || el > policeBurst {
		el = policeBurst
	} else if el < 0 {
		el = 0 // the wall clock stepped back
	}
	b.last = now
	// Overflow: el ≤ 1e9 and the rates are validated at most 1e6
	// packets/s and 1.25e9 bytes/s (10 Gbit/s), so a refill stays below
	// 2.5e18.
	b.pkts = min(b.pkts+el*b.pps, b.pps*policeBurst)
	b.bytes = min(b.bytes+el*b.bps, b.bps*policeBurst)
	cp, cb := n*policeBurst, size*policeBurst
	if (b.pps != 0 && b.pkts < cp) || (b.bps != 0 && b.bytes < cb) {
		return false
	}
	if b.pps != 0 {
		b.pkts -= cp
	}
	if b.bps != 0 {
		b.bytes -= cb
	}
	return true
}

// police sets l's buckets from the engine's caps for a stream of media
// (audio, video, image). Called with the session's mutex held.
func (l *leg) police(p Police, media string) {
	pps, kbps := p.AudioPPS, p.AudioKbps
	if media == "video" {
		pps, kbps = p.VideoPPS, p.VideoKbps
	}
	l.inCap.set(pps, kbps)
	l.rtcpCap.set(rtcpShare(pps), rtcpShare(kbps))
}

// rtcpShare is the RTCP bucket's part of a stream's cap: a quarter, at
// least one unit when the stream has a cap (0 stays no cap).
func rtcpShare(n int) int {
	if n == 0 {
		return 0
	}
	return max(n/4, 1)
}

// policing says whether any cap is set.
func (p Police) policing() bool {
	return p.AudioPPS|p.AudioKbps|p.VideoPPS|p.VideoKbps != 0
}

// policeKernel is the engine's one goroutine that runs what the kernel
// fast path forwarded through the legs' buckets (see above).
func (e *Engine) policeKernel() {
	e.everySession(e.cfg.PoliceInterval, func(s *Session, now time.Time, snap fastpath.Snapshot) {
		s.policeOffloaded(now.UnixNano(), snap)
	})
}

// policeOffloaded runs what the kernel forwarded for s since the last
// check through the receiving legs' buckets and takes s off the kernel
// path when one went over; the counters from snap (nil: the map).
func (s *Session) policeOffloaded(now int64, snap fastpath.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fp.entries) == 0 || s.closed {
		return
	}
	var (
		over    *leg
		overCap *bucket
		overIn  fastpath.Entry
		overP   uint64
		overB   uint64
	)
	for i := range s.fp.entries {
		in := &s.fp.entries[i]
		c, ok := s.e.fp.counters(snap, in.e.Local)
		if !ok {
			continue
		}
		dp, db := c.Packets-in.policed.Packets, c.Bytes-in.policed.Bytes
		in.policed = c
		rx := s.legs[in.rx]
		b := &rx.inCap
		if in.e.RTCP {
			b = &rx.rtcpCap
		}
		if !b.take(int64(dp), int64(db), now) { //nolint:gosec // counters of one interval
			b.pkts, b.bytes = 0, 0 // the flood spent them: userspace starts from none
			if over == nil {
				over, overCap, overIn, overP, overB = rx, b, in.e, dp, db
			}
		}
	}
	if over == nil {
		return
	}
	s.fp.policed = true
	s.offloadRemove()
	s.e.fp.policed.Add(1)
	if !over.policeLogged {
		over.policeLogged = true
		s.e.log.Warn("media policing: a peer sends over its cap, its call leaves the kernel fast path",
			"call_id", s.id, "leg", over.side.String(), "peer", overIn.Peer, "rtcp", overIn.RTCP,
			"packets", overP, "bytes", overB, "interval", s.e.cfg.PoliceInterval,
			"cap_pps", overCap.pps, "cap_kbps", overCap.bps*8/1000)
	}
}

// Bounds of a cap: a million packets/s and 10 Gbit/s are above any
// link a media port sees, and keep the buckets' arithmetic in int64.
const (
	maxPolicePPS  = 1_000_000
	maxPoliceKbps = 10_000_000
)

func (p Police) validate() error {
	var errs []error
	for _, c := range []struct {
		name   string
		n, max int
	}{
		{"audio packets/s", p.AudioPPS, maxPolicePPS}, {"audio kbit/s", p.AudioKbps, maxPoliceKbps},
		{"video packets/s", p.VideoPPS, maxPolicePPS}, {"video kbit/s", p.VideoKbps, maxPoliceKbps},
	} {
		if c.n < 0 || c.n > c.max {
			errs = append(errs, fmt.Errorf("%w: police %s %d: not in 0..%d", ErrConfig, c.name, c.n, c.max))
		}
	}
	return errors.Join(errs...)
}
