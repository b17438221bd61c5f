package media

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/pion/rtcp"
)

// # RTCP through the engine
//
// RTCP is relayed end to end, as a transport translator relays it (RFC
// 7667 §3.3.1): the engine forwards RTP one for one with its SSRC,
// sequence numbers and timestamps unchanged, so a sender report or a
// reception report of one endpoint is still true of what the other one
// sends and receives, and the engine leaves it as it is. Where a leg speaks
// SRTP the engine decrypts the peer's SRTCP with the peer's key (with its
// own 64-packet replay window, RFC 3711 §3.3.2) and encrypts what it sends
// with its own key and its own SRTCP index (§3.4): a leg's SRTCP never
// carries the other leg's protection.
//
// A leg where the engine terminates SRTP also gets the engine's own
// reports when the other side sends none (a plain-RTP gateway or SIPp
// often sends no RTCP at all): after ReportInterval without RTCP towards
// it, the leg's peer receives a receiver report from an SSRC of the
// engine's own (a pure receiver, RFC 3550 §6.4.2), with one report block
// on the stream the engine received from that peer — loss, extended
// highest sequence number, jitter and the LSR/DLSR of the peer's last
// sender report — and an SDES CNAME (§6.5.1) naming no inside host.
// That is the hop the engine sees; it is the one an SBC's peer (a phone
// behind a NAT, a trunk) shares with it. The engine sends no sender
// report: it originates no RTP of its own, and an SR from its SSRC would
// describe a stream that does not exist. A plain leg gets no own reports:
// there the engine stays transparent, as it is for RTCP it relays.
//
// A stream the relay re-packetises (repack.go) is the exception to both:
// its packets are the relay's, numbered anew, so the other side's reports
// would not be true of what the peer sent. RTCP is not relayed between
// its legs, either way, and each leg's peer, plain or SRTP, gets the
// engine's receiver reports every ReportInterval.
//
// On an SRTP leg the peer's RTCP must be SRTCP. A datagram that fails
// authentication but is a well-formed plain RTCP compound packet (its
// headers chain to exactly its length, no SRTCP index, no tag) is counted
// as unprotected, not as a failure: it is the peer leaking plain RTCP — as
// baresip 1.0 does with the RTCP APP it sends before its SRTP is up and
// the RTCP BYE it sends after its SRTP is gone — not a forgery. Both are
// dropped and never forwarded.

// DefaultReportInterval is how long a leg where the engine terminates SRTP
// goes without RTCP towards it before the engine sends its own report: RFC
// 3550 §6.2's minimum interval.
const DefaultReportInterval = 5 * time.Second

// reportState is a leg's own-report bookkeeping, guarded by the session's
// mutex.
type reportState struct {
	ssrc  uint32 // ours on this leg; 0 until the first report
	cname string
	due   int64  // unix ns of the next own report if nothing else goes out
	seen  uint64 // rtcpOut at the last check
	// The peer's last sender report: the middle 32 bits of its NTP time
	// and when it arrived, for LSR and DLSR (RFC 3550 §6.4.1).
	srNTP uint32
	srAt  int64
	// The loss interval of the last report (RFC 3550 A.3).
	expectedPrior, receivedPrior uint64
}

// plainRTCP reports whether pkt is a well-formed plain RTCP compound
// packet: version 2 headers whose lengths add up to exactly len(pkt).
// SRTCP is never one when it also fails to authenticate; see above.
func plainRTCP(pkt []byte) bool {
	if len(pkt) < 4 {
		return false
	}
	for len(pkt) >= 4 {
		if pkt[0]>>6 != 2 {
			return false
		}
		n := 4 * (int(binary.BigEndian.Uint16(pkt[2:])) + 1)
		if n > len(pkt) {
			return false
		}
		pkt = pkt[n:]
	}
	return len(pkt) == 0
}

// noteSR remembers the NTP time of a sender report leading plain, the
// peer's RTCP after decryption, for the LSR of our reports.
func (r *reportState) noteSR(plain []byte, now int64) {
	if len(plain) >= 16 && plain[1] == 200 {
		r.srNTP = binary.BigEndian.Uint32(plain[10:])
		r.srAt = now
	}
}

// checkReport sends the leg's own report when it is due. Called with the
// session locked.
func (l *leg) checkReport(now int64, every time.Duration) {
	r := &l.report
	if !(l.ownRTCP || l.secure) || l.secure && l.tx == nil || l.hold || l.off || !l.recv.started {
		r.due = 0
		return
	}
	if r.due == 0 || l.stats.rtcpOut != r.seen {
		// The first look, or RTCP went out since the last: the peer has
		// reports; wait a whole interval from now.
		r.seen = l.stats.rtcpOut
		r.due = now + int64(every)
		return
	}
	if now < r.due {
		return
	}
	r.due = now + int64(every)
	pkt, err := l.ownReport(now)
	if err == nil {
		fd, dst := l.rtcpDst()
		if !dst.IsValid() {
			return
		}
		out := pkt
		if l.secure {
			out, err = l.tx.EncryptRTCP(nil, pkt, nil)
		}
		if err == nil {
			err = sendto(fd, out, dst)
		}
		if err == nil {
			l.stats.packetsOut++
			l.stats.bytesOut += uint64(len(out))
			l.stats.rtcpOut++
			l.stats.rtcpOwn++
		}
	}
	r.seen = l.stats.rtcpOut
	if err != nil {
		l.sess.e.log.Debug("media: own RTCP report", "call_id", l.sess.id, "leg", l.side.String(), "reason", err)
	}
}

// ownReport is the engine's receiver report and CNAME towards the leg's
// peer, on the stream received from it (RFC 3550 §6.4.2, A.3).
func (l *leg) ownReport(now int64) ([]byte, error) {
	r := &l.report
	if r.ssrc == 0 {
		r.ssrc = uint32(randUint63()) | 1 //nolint:gosec // 32 random bits; never 0 (0 = not drawn)
		r.cname = fmt.Sprintf("umedge-%08x", r.ssrc)
	}
	st := &l.recv
	expected := uint64(st.cycles) + uint64(st.maxSeq) - uint64(st.baseSeq) + 1
	dExp, dRecv := expected-r.expectedPrior, st.received-r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, st.received
	var fraction uint8
	if dExp > 0 && dExp > dRecv {
		fraction = uint8(min((dExp-dRecv)<<8/dExp, 255)) //nolint:gosec // bounded
	}
	rb := rtcp.ReceptionReport{
		SSRC:               st.ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(min(st.lost(), 1<<23-1)), //nolint:gosec // 24-bit field, clamped
		LastSequenceNumber: st.cycles + uint32(st.maxSeq),
		Jitter:             uint32(min(st.jitter>>4, 1<<32-1)), //nolint:gosec // clamped
	}
	if r.srAt != 0 {
		rb.LastSenderReport = r.srNTP
		rb.Delay = uint32(min((now-r.srAt)*65536/1e9, 1<<32-1)) //nolint:gosec // 1/65536 s units, clamped
	}
	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: r.ssrc, Reports: []rtcp.ReceptionReport{rb}},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
			Source: r.ssrc, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: r.cname}},
		}}},
	})
	if err != nil {
		return nil, fmt.Errorf("marshal receiver report: %w", err)
	}
	return b, nil
}

// checkReports runs the own reports of the session's legs.
func (s *Session) checkReports(now time.Time, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.mediaUp {
		return
	}
	for _, l := range s.legs {
		l.checkReport(now.UnixNano(), every)
	}
	for _, st := range s.streams {
		if st != nil && st.legs[SideA] != s.legs[SideA] {
			for _, l := range st.legs {
				l.checkReport(now.UnixNano(), every)
			}
		}
	}
}
