package media

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/pion/srtp/v3"
)

// leg is one side of a session. All fields are guarded by the session's
// mutex.
type leg struct {
	sess *Session
	side Side
	prof LegProfile
	rtp  *sock
	rtcp *sock
	sink Sink
	own  relay // the relay sink towards the other leg of the stream
	// endPort is the RTP port Close released, for the stats read after it
	// (the CDR); 0 while the leg is open or was declined before.
	endPort int

	// The stream the leg carries: its m-line's index, how it is carried,
	// and off while it is declined (port 0) or, for a stream an offer just
	// added, not answered yet: an off leg takes nothing in (strays) and
	// sends nothing. A declined stream's legs have no sockets (rtp and rtcp
	// nil) from the answer that declined it on.
	idx  int
	kind streamKind
	off  bool

	// What the peer's SDP says (zero until an answer made it current).
	sdpRTP, sdpRTCP netip.AddrPort
	peerSDP         netip.AddrPort // the last RTP address of an SDP not on hold: who the peer is
	hold            bool           // c=0.0.0.0: send nothing
	mux             bool           // RTCP on the RTP port, both ways
	pt              ptTable
	ptKnown         bool // pt was filled from SDP; other payload types are strays
	// relearn: the latch was dropped for a new peer (apply): ssrc is the
	// old peer's. (Here, in pt's padding, not among the latch's fields:
	// a leg, with the 8-byte header Go gives an object of pointers above
	// 512 B, fits 1,152 bytes.)
	relearn bool
	tos     uint8 // the TOS byte its sockets send with (dscp.go), in pt's padding too
	codec   string
	// a=ptime and a=maxptime of the peer's SDP in ms, 0 = not said: what
	// it asked to receive and, by custom, sends (repack.go).
	sdpPtime, sdpMaxptime int

	// Latching (RFC 7362).
	latchRTP, latchRTCP netip.AddrPort
	ssrc                uint32
	learnUntil          int64          // unix ns; a new SSRC from a new source re-latches before this
	dropped             netip.AddrPort // the RTP source the latch had when apply dropped it
	lastIn              int64          // unix ns of the last RTP packet taken from the peer, by either path
	kernelSeen          uint64         // RTP packets of the peer the kernel forwarded since userspace took one

	// SRTP. rx decrypts what the peer sends, tx encrypts what we send it.
	// passthrough: both legs As is and the offer was SRTP: the keys are the
	// endpoints' own and packets pass untouched.
	secure      bool
	passthrough bool
	rx, tx      *srtp.Context
	rxKey       sdesKey // the peer's key, to keep rx (ROC, replay window) across a repeated answer
	txKey       sdesKey
	ownKeys     *[len(suites)]sdesKey // drawn at their first need (ownKey): nil for a leg that never offers or terminates SRTP

	ice *iceCreds // ICE-lite: our credentials on this leg; nil when the leg's offer had no ICE

	stats legCounters
	recv  recvStats
	// The caps on what the peer sends (police.go): RTP or UDPTL, and RTCP.
	inCap, rtcpCap bucket
	policeLogged   bool        // the kernel path's withdrawal of this leg was logged
	report         reportState // the engine's own RTCP towards an SRTP peer (rtcp.go)

	// rp re-packetises what the relay sends this leg's peer (repack.go);
	// nil: packets pass as they came. ownRTCP: the stream re-packetises
	// either way, so RTCP is not relayed and the peer gets the engine's
	// own reports (rtcp.go). rpQueued: on the worker's list of legs with
	// audio pending (worker.expire).
	rp       *repacker
	ownRTCP  bool
	rpQueued bool

	sendBuf *[bufSize]byte // terminator path (Session.Send), made on its first use: a relayed leg never needs it
}

// ptInfo is what the SDP said about one payload type.
//
// The clock comes first: 8 bytes, not 12, so that a leg (16 of them in
// its ptTable) fits the 1,280-byte size class instead of 1,408, 256 B less
// per active call.
type ptInfo struct {
	clock uint32
	known bool
	codec frameKind // how the relay re-packetises it (repack.go)
}

// ptTable is what the SDP said about each of the 128 payload types: a
// byte per type indexing the few distinct ptInfos an m-line makes. A
// ptInfo per type (1.5 KiB) was most of a leg's memory, which every
// active call holds twice a stream.
type ptTable struct {
	idx   [128]uint8 // 0: not in the SDP; ptKnownBare: known, nothing more; else infos[idx-1]
	infos [maxPTInfos]ptInfo
	n     uint8
}

// maxPTInfos bounds the distinct (clock, codec) pairs a leg keeps; an
// SDP with more (none real has) gets the rest known without a clock.
const (
	maxPTInfos  = 16
	ptKnownBare = 0xff
)

// get is what the SDP said about payload type pt (0..127).
func (t *ptTable) get(pt uint8) ptInfo {
	switch i := t.idx[pt&0x7f]; i {
	case 0:
		return ptInfo{}
	case ptKnownBare:
		return ptInfo{known: true}
	default:
		return t.infos[i-1]
	}
}

// set records p (known) for payload type pt (0..127).
func (t *ptTable) set(pt int, p ptInfo) {
	for i := range t.n {
		if t.infos[i] == p {
			t.idx[pt] = i + 1
			return
		}
	}
	if int(t.n) == maxPTInfos {
		t.idx[pt] = ptKnownBare
		return
	}
	t.infos[t.n] = p
	t.n++
	t.idx[pt] = t.n
}

// legCounters are the leg's raw counters; LegStats is their public copy.
type legCounters struct {
	packetsIn, packetsOut uint64
	bytesIn, bytesOut     uint64
	strays                uint64
	srtpFailures          uint64
	replays               uint64
	kernelIn              uint64 // of packetsIn, those the kernel fast path forwarded
	latchedIn             uint64 // of packetsIn, those userspace took after both legs had latched
	rtcpIn, rtcpOut       uint64 // of packetsIn/packetsOut: RTCP
	rtcpOwn               uint64 // of rtcpOut: the engine's own reports (rtcp.go)
	unprotected           uint64 // plain RTCP on an SRTP leg, dropped (rtcp.go)
	policed               uint64 // accepted from the peer but over its cap: dropped (police.go)
}

// receive runs one datagram read on s through the leg. i is the datagram's
// index in the worker's batch (its plain buffer).
func (l *leg) receive(w *worker, s *sock, i int, pkt []byte, src netip.AddrPort, now int64) {
	if l.off {
		l.stats.strays++
		return
	}
	if l.kind == kindUDPTL {
		l.receiveUDPTL(w, s, pkt, src, now)
		return
	}
	if len(pkt) < 4 {
		l.stats.strays++
		return
	}
	switch b0 := pkt[0]; {
	case b0 < 4:
		l.stun(w, s, pkt, src)
	case b0>>6 == 2 && (s.rtcp || (pkt[1] >= 192 && pkt[1] <= 223)): // RFC 5761 §4
		l.receiveRTCP(w, i, pkt, src, now)
	case b0>>6 == 2:
		l.receiveRTP(w, i, pkt, src, now)
	default: // DTLS, ZRTP, garbage
		l.stats.strays++
	}
}

func (l *leg) receiveRTP(w *worker, i int, pkt []byte, src netip.AddrPort, now int64) {
	if len(pkt) < 12 {
		l.stats.strays++
		return
	}
	pt := pkt[1] & 0x7f
	if l.ptKnown && !l.pt.get(pt).known {
		l.stats.strays++
		return
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	latched := l.sess.latched()
	plain := pkt
	if l.secure {
		if l.rx == nil {
			l.stats.strays++
			return
		}
		out, err := l.rx.DecryptRTP(w.plain[i][:0], pkt, &w.hdr)
		if err != nil {
			l.countSRTPError(err)
			return
		}
		plain = out
		// An authenticated packet is the peer's wherever it comes from.
		l.latch(src, ssrc)
	} else if !l.accept(src, ssrc, binary.BigEndian.Uint16(pkt[2:]), now) {
		l.stats.strays++
		return
	}
	l.sess.lastPacket = now // strays do not keep a call alive
	l.lastIn, l.kernelSeen = now, 0
	if l.recv.ssrc != ssrc || !l.recv.started {
		l.recv.reset(ssrc)
	}
	l.recv.update(binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]),
		(now-l.sess.started.UnixNano())/1e3, l.pt.get(pt).clock)
	if !l.inCap.take(1, int64(len(pkt)), now) {
		// The peer's own packet (the receiver statistics count it: it
		// arrived, it is not loss), but over the leg's cap: dropped.
		l.stats.policed++
		return
	}
	l.stats.packetsIn++
	l.stats.bytesIn += uint64(len(pkt))
	if latched {
		l.stats.latchedIn++
	}
	l.sink.RTP(plain)
}

// receiveUDPTL takes one datagram of a T.38 stream. UDPTL is not RTP: no
// demultiplexing (its first byte is a sequence number's, often 0, which
// would read as STUN), no header check, no SRTP. It has no SSRC either: it
// latches by source address as an RTP peer that keeps one SSRC does (see
// accept), and the +1 socket takes nothing (strays). It is relayed only
// while the leg's sink is the relay.
func (l *leg) receiveUDPTL(w *worker, s *sock, pkt []byte, src netip.AddrPort, now int64) {
	if s.rtcp || len(pkt) == 0 || !l.accept(src, 0, 0, now) {
		l.stats.strays++
		return
	}
	l.sess.lastPacket = now // the inactivity clock counts fax too
	l.lastIn = now
	if !l.inCap.take(1, int64(len(pkt)), now) {
		l.stats.policed++
		return
	}
	l.stats.packetsIn++
	l.stats.bytesIn += uint64(len(pkt))
	// A terminator in the relay's place (Attach) takes RTP: the fax goes
	// neither to it nor past it to the other side.
	if to := l.own.to; l.sink == &l.own && !to.off {
		to.send(w, to.rtp.fd, to.rtpDst(), pkt, false)
	}
}

// A NAT that rebinds (its mapping timed out, was flushed or the router
// restarted) sends the peer's stream on from a new port of the same
// address: the leg follows it at any time, not only in the learning window,
// once the latched source has been quiet for rebindQuiet (so two live
// sources cannot take turns) and the packet goes on with the latched
// stream: its SSRC, and a sequence number at most rebindSeqAhead past the
// last one (about 10 s of loss at 50 packets/s). A stranger would need the
// peer's address, its SSRC and where its sequence is.
const (
	rebindQuiet    = 100 * time.Millisecond
	rebindSeqAhead = 512
)

// accept decides whether a plain RTP packet from src with ssrc and
// sequence number seq is the peer's, latching or re-latching as R-SBC-2
// says.
func (l *leg) accept(src netip.AddrPort, ssrc uint32, seq uint16, now int64) bool {
	switch {
	case !l.latchRTP.IsValid() && l.relearn && ssrc == l.ssrc && now < l.learnUntil && src != l.sdpRTP &&
		(src.Addr() != l.dropped.Addr() || src == l.dropped):
		// A new peer (a re-offer from another address) is learnt afresh,
		// but inside the window not from the old peer's stream sent from
		// elsewhere, nor going on from where it came: the new SDP address
		// has the window to be heard first. A new port of the old source's
		// address with that stream is the peer itself behind its NAT,
		// re-offering from a new socket (its SDP names its private
		// address); after the window the first packet latches, as at the
		// call's start (a peer that went to another network keeps its
		// SSRC: refusing it for good would leave the call without media).
		return false
	case !l.latchRTP.IsValid():
		// The first packet: nothing to protect yet.
	case src == l.latchRTP:
		l.ssrc = ssrc // the same source with a new SSRC (a new stream of the same peer)
		return true
	case now < l.learnUntil && (ssrc != l.ssrc || src == l.sdpRTP || src.Addr() == l.latchRTP.Addr()):
		// A new source with a new SSRC while learning: re-latch. So does
		// the address the peer's latest SDP names, whatever the SSRC: a
		// peer that moved its media by re-INVITE goes on with its stream
		// (RFC 3550 keeps the SSRC), and signalling said it would be
		// there; and a new port of the latched address (a NAT that
		// forgot the mapping while the peer was quiet, say on hold,
		// however the stream goes on). After the window a stranger cannot take the leg over,
		// not even while the peer is quiet (on hold): the next
		// offer/answer reopens the window.
	case l.rebound(src, ssrc, seq, now):
	default:
		return false
	}
	l.latch(src, ssrc)
	return true
}

// rebound says whether a packet from src is the latched stream coming on
// from a NAT's new port (see rebindQuiet). While the kernel carries the
// leg userspace sees none of the stream: its counters (read here, a rare
// packet's cost) say how far the sequence went and when the last packet
// came.
func (l *leg) rebound(src netip.AddrPort, ssrc uint32, seq uint16, now int64) bool {
	if src.Addr() != l.latchRTP.Addr() || ssrc != l.ssrc || !l.recv.started || l.recv.ssrc != ssrc {
		return false
	}
	if len(l.sess.fp.entries) > 0 {
		l.sess.offloadSync(nil)
	}
	if now-l.lastIn < int64(rebindQuiet) {
		return false
	}
	if l.kernelSeen >= 1<<16-rebindSeqAhead {
		return true // the sequence wrapped in the kernel: the SSRC and the address must do
	}
	ahead := uint64(seq - l.recv.maxSeq)
	return ahead != 0 && ahead <= rebindSeqAhead+l.kernelSeen
}

func (l *leg) latch(src netip.AddrPort, ssrc uint32) {
	l.relearn = false
	if src != l.latchRTP {
		l.latchRTP = src
		if l.latchRTCP.IsValid() && l.latchRTCP.Addr() != src.Addr() {
			l.latchRTCP = netip.AddrPort{} // the peer moved: learn its RTCP source again
		}
		l.sess.offloadUpdate()
	}
	l.ssrc = ssrc
}

func (l *leg) receiveRTCP(w *worker, i int, pkt []byte, src netip.AddrPort, now int64) {
	if len(pkt) < 8 {
		l.stats.strays++
		return
	}
	latched := l.sess.latched()
	plain := pkt
	if l.secure {
		if l.rx == nil {
			l.stats.strays++
			return
		}
		out, err := l.rx.DecryptRTCP(w.plain[i][:0], pkt, &w.rtcpHdr)
		if err != nil {
			if !errors.Is(err, errReplay) && plainRTCP(pkt) {
				l.stats.unprotected++ // the peer leaking plain RTCP, not a forgery (rtcp.go)
				return
			}
			l.countSRTPError(err)
			return
		}
		plain = out
		l.latchRTCP = src
		l.report.noteSR(plain, now)
	} else {
		switch {
		case src == l.latchRTCP:
		case !l.latchRTCP.IsValid(), l.latchRTP.IsValid() && src.Addr() == l.latchRTP.Addr() &&
			(now < l.learnUntil || binary.BigEndian.Uint32(pkt[4:]) == l.ssrc):
			// First RTCP, or the latched RTP peer's address (a NAT may map
			// its RTCP port anywhere): inside the learning window, or
			// sending as the peer's stream (RFC 3550: the first report's
			// SSRC is the sender's). Anyone else behind that address
			// would get the other side's reports, which name the peer's
			// SSRC and how far its sequence went: all leg.rebound asks.
			l.latchRTCP = src
			l.sess.offloadUpdate()
		default:
			l.stats.strays++
			return
		}
		if l.ownRTCP {
			l.report.noteSR(plain, now) // for the engine's own reports (repack.go)
		}
	}
	l.sess.lastPacket = now
	if !l.rtcpCap.take(1, int64(len(pkt)), now) {
		l.stats.policed++
		return
	}
	l.stats.packetsIn++
	l.stats.rtcpIn++
	l.stats.bytesIn += uint64(len(pkt))
	if latched {
		l.stats.latchedIn++
	}
	l.sink.RTCP(plain)
}

var errReplay = replayError()

// replayError captures pion/srtp's unexported sentinel for a replayed packet
// by replaying one, so the hot path tells replays from forgeries without
// formatting the error.
func replayError() error {
	key, salt := make([]byte, 16), make([]byte, 14)
	enc, err1 := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80)
	dec, err2 := srtp.CreateContext(key, salt, srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.SRTPReplayProtection(64))
	if err1 != nil || err2 != nil {
		panic("media: srtp self-test: " + errors.Join(err1, err2).Error())
	}
	p, err := enc.EncryptRTP(nil, []byte{0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}, nil)
	if err != nil {
		panic("media: srtp self-test: " + err.Error())
	}
	if _, err := dec.DecryptRTP(nil, p, nil); err != nil {
		panic("media: srtp self-test: " + err.Error())
	}
	_, err = dec.DecryptRTP(nil, p, nil)
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	panic("media: srtp self-test: a replayed packet was accepted")
}

func (l *leg) countSRTPError(err error) {
	if errors.Is(err, errReplay) {
		l.stats.replays++
	} else {
		l.stats.srtpFailures++
	}
}

// rtpDst is where RTP to the peer goes: the latched source, else the SDP.
func (l *leg) rtpDst() netip.AddrPort {
	if l.latchRTP.IsValid() {
		return l.latchRTP
	}
	return l.sdpRTP
}

func (l *leg) rtcpDst() (fd int, dst netip.AddrPort) {
	if l.mux {
		return l.rtp.fd, l.rtpDst()
	}
	if l.latchRTCP.IsValid() {
		return l.rtcp.fd, l.latchRTCP
	}
	return l.rtcp.fd, l.sdpRTCP
}

// sendRTP queues a plain RTP packet towards the peer of l.
func (l *leg) sendRTP(w *worker, pkt []byte) {
	if !l.off { // an off leg may have no sockets (a declined primary)
		l.send(w, l.rtp.fd, l.rtpDst(), pkt, false)
	}
}

// sendRTCP queues a plain RTCP packet towards the peer of l.
func (l *leg) sendRTCP(w *worker, pkt []byte) {
	if l.off {
		return
	}
	fd, dst := l.rtcpDst()
	l.send(w, fd, dst, pkt, true)
}

// send queues pkt to dst from fd, encrypted first on an SRTP leg.
func (l *leg) send(w *worker, fd int, dst netip.AddrPort, pkt []byte, rtcp bool) {
	if !dst.IsValid() || l.hold || l.off {
		return
	}
	w.room()
	out := pkt
	if l.secure {
		if l.tx == nil {
			return
		}
		var err error
		if rtcp {
			out, err = l.tx.EncryptRTCP(w.tbuf[w.ntx][:0], pkt, &w.rtcpHdr)
		} else {
			out, err = l.tx.EncryptRTP(w.tbuf[w.ntx][:0], pkt, &w.hdr)
		}
		if err != nil {
			return
		}
	}
	l.stats.packetsOut++
	l.stats.bytesOut += uint64(len(out))
	if rtcp {
		l.stats.rtcpOut++
	}
	var src netip.AddrPort
	if w.xdp != nil && (dst == l.latchRTP || dst == l.latchRTCP) {
		// A latched peer: the XDP send path may take it (sendpath.go).
		k := l.rtp
		if fd != k.fd {
			k = l.rtcp
		}
		src = l.local(k)
	}
	w.queueFrom(fd, src, dst, out, l.tos)
}
