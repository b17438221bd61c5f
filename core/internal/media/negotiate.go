package media

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
)

// negotiation is one offer and what the engine decided about it.
type negotiation struct {
	from    Side         // the offerer, X; the answerer is Y
	prim    int          // the primary stream's m-line index
	streams []*streamNeg // by m-line index; nil: declined in the offer to Y
	// mlines are X's m-lines as it offered them: the answer to X has them
	// all, in order, and a stream declined there is X's own m-line with
	// port 0 (RFC 3264 §6), whatever Y's answer put at its index.
	mlines []sdp.MediaName
	// version of the answer sent to X, fixed at the first answer so that
	// a repeated answer is the same description.
	ansVersion uint64
}

// streamNeg is one anchored stream of an offer.
type streamNeg struct {
	idx    int
	kind   streamKind
	media  string
	legs   [2]*leg // the stream's legs: the session's own for the primary
	opened bool    // this offer opened legs: released unless an answer accepts the stream
	x      remoteMedia
	xKey   cryptoLine // X's key we accept (terminating SRTP on X)
	xSRTP  bool       // X's leg speaks SRTP
	pass   bool       // SRTP passes through untouched (both legs As is)
	ySAVP  bool       // the offer to Y is RTP/SAVP: its answer must carry crypto
	yKeys  bool       // the offer to Y carries our keys (tag i+1 = suites[i])
	// the payload types offered to Y
	formats []string
}

// streamErrors are why the streams of an offer or answer were declined:
// one line (a 488's Warning), and errors.Is finds each cause.
type streamErrors []error

func (e streamErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e streamErrors) Unwrap() []error { return e }

// releaseOpened gives back the pairs this offer opened for streams no
// answer accepted. Called with s.mu held.
func (n *negotiation) releaseOpened(s *Session) {
	for i, sn := range n.streams {
		if sn != nil && sn.opened {
			for _, l := range sn.legs {
				s.releaseLeg(l)
			}
			sn.opened = false
			n.streams[i] = nil
		}
	}
}

// Offer takes an SDP offer that arrived from side from and returns the
// offer to send to the other side. Errors wrap ErrBadSDP or
// ErrNotAcceptable with the detail for a 488 Warning, or ErrNoPorts.
//
// Every m-line the engine anchors (audio and video over RTP, image over
// udptl) gets a port pair per leg, up to maxStreams per session, the
// streams it already anchors first; the rest go out declined (port 0), in
// their places (RFC 3264 §8). A stream that
// stays keeps its ports; one an offer adds is opened here and released
// when no answer accepts it (Reject, a declining answer).
func (s *Session) Offer(from Side, body []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.pending != nil && s.pending.from != from {
		return nil, fmt.Errorf("%w: offer from leg %s while leg %s's offer waits for its answer", ErrNotAcceptable, from, s.pending.from)
	}
	sd, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	prim := s.prim
	if !s.primFixed {
		if prim, err = anchored(sd); err != nil {
			return nil, err
		}
	}
	// A pending offer from the same side is replaced once this one is
	// good; until then it stands. The primary's pairs, if it opened them
	// again, pass to this offer (and back when it fails).
	old := s.pending
	var took *streamNeg
	n := &negotiation{from: from, prim: prim, streams: make([]*streamNeg, len(sd.MediaDescriptions)), mlines: make([]sdp.MediaName, len(sd.MediaDescriptions))}
	for i, m := range sd.MediaDescriptions {
		n.mlines[i] = m.MediaName
		n.mlines[i].Protos, n.mlines[i].Formats = slices.Clone(m.MediaName.Protos), slices.Clone(m.MediaName.Formats)
	}
	fail := func(err error) ([]byte, error) {
		if took != nil { // set once the primary's stream is n's: its pairs go back
			n.streams[prim].opened, took.opened = false, true
		}
		n.releaseOpened(s)
		return nil, err
	}
	outs := make([]*outStream, len(sd.MediaDescriptions))
	var why []error
	// room is how many streams the offer may add beside the primary: the
	// bound less the streams it keeps, which come first (an offer that
	// reuses declined m-lines for new streams cannot push a live one out).
	room, anchoredN, declined := maxStreams-1, 0, uint64(0)
	for i, m := range sd.MediaDescriptions {
		if _, ok := classify(m); ok && i != prim && i < len(s.streams) && s.streams[i] != nil {
			room--
		}
	}
	for i, m := range sd.MediaDescriptions {
		kind, ok := classify(m)
		if !ok {
			continue
		}
		// A string of the parsed SDP pins the whole of it (pion's lexer
		// copies every field into one buffer): what outlives the
		// negotiation is cloned: the media here, the codec in commitStream.
		sn := &streamNeg{idx: i, kind: kind, media: strings.Clone(m.MediaName.Media)}
		switch {
		case i == prim:
			sn.legs = s.legs
			switch {
			case s.legs[SideA].rtp == nil: // declined by an earlier answer: back with new ports
				if err := s.rebind(sn); err != nil {
					why = append(why, fmt.Errorf("m-line %d (%s): %w", i, m.MediaName.Media, err))
					continue
				}
			case old != nil && prim < len(old.streams) && old.streams[prim] != nil && old.streams[prim].opened:
				took = old.streams[prim]
				took.opened, sn.opened = false, true
			}
		case i < len(s.streams) && s.streams[i] != nil: // kept, counted in room
			sn.legs = s.streams[i].legs
		case room <= 0:
			declined++
			continue
		default:
			if err := s.openStream(sn); err != nil {
				why = append(why, fmt.Errorf("m-line %d (%s): %w", i, m.MediaName.Media, err))
				continue
			}
			room--
		}
		out, err := s.offerStream(from, sn, sd)
		if err != nil {
			if i == prim && took != nil {
				took.opened, sn.opened, took = true, false, nil // the pending offer's again
			}
			if sn.opened {
				for _, l := range sn.legs {
					s.releaseLeg(l)
				}
			}
			if i == prim && kind == kindRTP {
				return fail(err)
			}
			why = append(why, fmt.Errorf("m-line %d (%s): %w", i, m.MediaName.Media, err))
			continue
		}
		n.streams[i], outs[i] = sn, out
		anchoredN++
	}
	if anchoredN == 0 {
		if len(why) == 0 {
			why = append(why, fmt.Errorf("%w: no stream with a port the engine anchors", ErrNotAcceptable))
		}
		return fail(streamErrors(why))
	}
	ly := s.legs[from.other()]
	s.origin[ly.side].version++
	b, err := rewrite(sd, ly.prof.Local, prim, s.origin[ly.side], outs)
	if err != nil {
		return fail(err)
	}
	if old != nil {
		old.releaseOpened(s) // replaced
	}
	s.pending, s.declined = n, s.declined+declined
	s.offloadUpdate() // an offer changes the media: off the kernel path until its answer
	return b, nil
}

// openStream opens both legs of a stream an offer adds. Called with s.mu
// held.
func (s *Session) openStream(sn *streamNeg) error {
	for side := range sn.legs {
		l, err := s.newLeg(Side(side), sn.idx)
		if err != nil {
			if side == 1 {
				s.releaseLeg(sn.legs[0])
			}
			return err
		}
		sn.legs[side] = l
	}
	for side, l := range sn.legs {
		l.own = relay{to: sn.legs[1-side], w: s.w}
		l.sink = &l.own
	}
	sn.opened = true
	return nil
}

// rebind opens the primary's pairs again for an offer that brings the
// declined primary stream back. Called with s.mu held.
func (s *Session) rebind(sn *streamNeg) error {
	for side, l := range sn.legs {
		if err := s.bind(l); err != nil {
			if side == 1 {
				s.releaseLeg(sn.legs[0])
			}
			return err
		}
	}
	sn.opened = true
	return nil
}

// offerStream decides one anchored stream of an offer from side from and
// says how it goes out to the other side.
func (s *Session) offerStream(from Side, sn *streamNeg, sd *sdp.SessionDescription) (*outStream, error) {
	lx, ly := sn.legs[from], sn.legs[from.other()]
	x, err := readRemote(sd, sn.idx, sn.kind)
	if err != nil {
		return nil, err
	}
	if err := lx.reaches(&x); err != nil {
		return nil, err
	}
	sn.x = x
	if sn.kind == kindUDPTL {
		// UDPTL cannot be SRTP (it is not RTP). A Secured leg's operator
		// asked that no media cross it in clear: the fax is declined there,
		// so a gateway offering audio beside it falls back to G.711 and one
		// offering T.38 alone gets a 488 naming why.
		for _, l := range []*leg{lx, ly} {
			if l.prof.Security == SecuritySRTP {
				return nil, fmt.Errorf("%w: leg %s is secured only and T.38 (m=image udptl) cannot be carried over SRTP", ErrNotAcceptable, l.side)
			}
		}
		return &outStream{l: ly, kind: kindUDPTL, offer: true, proto: x.proto, formats: x.formats, hold: x.hold}, nil
	}
	key, usable := x.firstUsable()
	switch lx.prof.Security {
	case SecuritySRTP:
		if !usable {
			return nil, fmt.Errorf("%w: leg %s is secured only and the offer has no %s key", ErrNotAcceptable, from, suiteNames())
		}
		sn.xSRTP = true
	case SecurityRTP:
		if x.savp() {
			return nil, fmt.Errorf("%w: leg %s is not secured and the offer requires SRTP (%s)", ErrNotAcceptable, from, x.proto)
		}
	default:
		sn.xSRTP = usable
	}
	sn.xKey = key
	sn.pass = lx.prof.Security == SecurityAsIs && ly.prof.Security == SecurityAsIs && len(x.cryptos) > 0
	if sn.pass {
		sn.xSRTP = false // the endpoints' keys: we neither decrypt nor encrypt
	} else if x.savp() && !usable {
		return nil, fmt.Errorf("%w: %s offer from leg %s has no %s key", ErrNotAcceptable, x.proto, from, suiteNames())
	}

	pfrom, pto := lx.prof, ly.prof
	if sn.media != "audio" {
		pfrom.Codecs, pto.Codecs = nil, nil // the codec lists name audio codecs
	}
	formats, err := filterFormats(&x, pfrom, pto)
	if err != nil {
		return nil, err
	}
	sn.formats = formats
	out := &outStream{l: ly, kind: kindRTP, offer: true, formats: formats, mux: x.mux, hold: x.hold, proto: plainProto(x.proto)}
	if sn.media == "audio" {
		out.ptime = ptimeTowards(ly, lx)
	}
	switch {
	case sn.pass:
		out.proto = x.proto
		for _, c := range x.cryptos {
			out.cryptos = append(out.cryptos, c.raw)
		}
	case ly.prof.Security == SecuritySRTP,
		ly.prof.Security == SecurityAsIs && sn.xSRTP && x.savp():
		out.proto, sn.ySAVP, sn.yKeys = secureProto(x.proto), true, true
	case ly.prof.Security == SecurityBoth,
		ly.prof.Security == SecurityAsIs && sn.xSRTP:
		sn.yKeys = true // RFC 8643 opportunistic: RTP/AVP with a=crypto
	}
	if sn.yKeys {
		if out.cryptos, err = ly.offerKeys(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// answered is one stream an answer accepted, ready to commit.
type answered struct {
	sn    *streamNeg
	y     remoteMedia
	ySRTP bool
	yKey  cryptoLine
	ourX  sdesKey
}

// Answer takes the SDP answer (to the pending offer) that arrived from side
// from and returns the answer to send to the other side; media flows from
// then on. A repeated answer to the same offer (183 then 200) is accepted.
// A stream the answer declines (port 0), or answers with another media
// type or transport than offered, is declined towards the offerer too (its
// own m-line, port 0), and its pairs released. An answer without exactly
// the offer's m-lines is ErrBadSDP (RFC 3264 §6).
func (s *Session) Answer(from Side, body []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	n := s.pending
	if n == nil {
		n = s.last
	}
	if n == nil || n.from != from.other() {
		return nil, fmt.Errorf("%w: answer from leg %s", ErrNoOffer, from)
	}
	sd, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	if len(sd.MediaDescriptions) != len(n.streams) {
		return nil, fmt.Errorf("%w: the answer from leg %s has %d m-lines, its offer %d (RFC 3264 §6: one for each)",
			ErrBadSDP, from, len(sd.MediaDescriptions), len(n.streams))
	}
	outs := make([]*outStream, len(sd.MediaDescriptions))
	var acc []answered
	var why []error
	for i, sn := range n.streams {
		if sn == nil || sd.MediaDescriptions[i].MediaName.Port.Value == 0 {
			continue
		}
		a, out, err := s.answerStream(n, sn, from, sd)
		if err != nil {
			if i == n.prim && sn.kind == kindRTP {
				return nil, err
			}
			why = append(why, fmt.Errorf("m-line %d (%s): %w", i, sn.media, err))
			continue
		}
		outs[i] = out
		acc = append(acc, a)
	}
	if len(acc) == 0 {
		why = append(why, fmt.Errorf("%w: the answer from leg %s declines every stream offered to it", ErrNotAcceptable, from))
		return nil, streamErrors(why)
	}
	for i, out := range outs {
		if out == nil { // declined: X's own m-line, port 0 (rewrite)
			sd.MediaDescriptions[i].MediaName = n.mlines[i]
		}
	}
	lx := s.legs[n.from]
	if n.ansVersion == 0 {
		s.origin[lx.side].version++
		n.ansVersion = s.origin[lx.side].version
	}
	b, err := rewrite(sd, lx.prof.Local, n.prim, origin{id: s.origin[lx.side].id, version: n.ansVersion}, outs)
	if err != nil {
		return nil, err
	}

	// Commit: the legs of each accepted stream take the new state.
	now := time.Now().UnixNano()
	until := now + int64(s.e.cfg.LatchWindow)
	streams := make([]*stream, len(n.streams))
	for _, a := range acc {
		if err := s.commitStream(n, &a, until); err != nil {
			return nil, err
		}
		a.sn.opened = false
		streams[a.sn.idx] = &stream{legs: a.sn.legs, media: a.sn.media}
	}
	// What the answer left out goes: its pairs released (the primary's
	// legs stay, off), a repeated answer sees it declined.
	kept := func(l *leg) bool {
		for _, st := range streams {
			if st != nil && st.legs[SideA] == l {
				return true
			}
		}
		return false
	}
	for _, st := range s.streams {
		if st != nil && st.legs[SideA] != s.legs[SideA] && !kept(st.legs[SideA]) {
			for _, l := range st.legs {
				s.releaseLeg(l)
			}
		}
	}
	for i, sn := range n.streams {
		if sn == nil || streams[i] != nil {
			continue
		}
		if sn.opened {
			for _, l := range sn.legs {
				s.releaseLeg(l)
			}
		}
		n.streams[i] = nil
	}
	if !kept(s.legs[SideA]) && s.legs[SideA].rtp != nil {
		s.offloadRemove() // the kernel's counters first, then the ports
		for _, l := range s.legs {
			l.off = true
			s.releaseLeg(l)
		}
	}
	s.streams, s.prim, s.primFixed = streams, n.prim, true
	if !s.mediaUp {
		s.lastPacket = now
	}
	s.mediaUp = true
	s.last, s.pending = n, nil
	s.offloadUpdate()
	return b, nil
}

// Settle forgets the last answered offer, which Answer keeps so that a
// repeated answer to it (183, then 200) is taken: once the dialog is
// confirmed no answer to that offer comes again (its 2xx resent is the
// SIP layer's), and the offer's negotiation — the offerer's streams with
// their formats and codec maps, ~1 KiB a call — need not live as long as
// the call. An offer still waiting for its answer is kept; a repeated
// answer after Settle is ErrNoOffer.
func (s *Session) Settle() {
	s.mu.Lock()
	s.last = nil
	s.mu.Unlock()
}

// answerStream reads Y's answer for one stream and says how it goes out to
// X; nothing is committed yet.
func (s *Session) answerStream(n *negotiation, sn *streamNeg, from Side, sd *sdp.SessionDescription) (answered, *outStream, error) {
	a := answered{sn: sn}
	if m := sd.MediaDescriptions[sn.idx]; m.MediaName.Media != sn.media {
		return a, nil, fmt.Errorf("%w: the answer from leg %s has m=%s where its offer had m=%s", ErrNotAcceptable, from, m.MediaName.Media, sn.media)
	} else if k, ok := classify(m); !ok || k != sn.kind {
		return a, nil, fmt.Errorf("%w: the answer from leg %s has m=%s over %s where its offer had %s",
			ErrNotAcceptable, from, sn.media, strings.Join(m.MediaName.Protos, "/"), sn.kind)
	}
	y, err := readRemote(sd, sn.idx, sn.kind)
	if err != nil {
		return a, nil, err
	}
	if err := sn.legs[from].reaches(&y); err != nil {
		return a, nil, err
	}
	lx := sn.legs[n.from]
	if sn.kind == kindUDPTL {
		a.y = y
		return a, &outStream{l: lx, kind: kindUDPTL, proto: sn.x.proto, formats: y.formats, hold: y.hold}, nil
	}
	// An answer may use its own number for an offered codec (RFC 3264
	// §6.1 says SHOULD keep it): each side declares what it receives, so
	// the relay passes each side's numbers unchanged and nothing is mapped
	// per packet. What was not offered at all goes.
	offered := make(map[string]bool, len(sn.formats))
	for _, f := range sn.formats {
		offered[strings.ToLower(sn.x.names[f])] = true
	}
	y.formats = slices.DeleteFunc(y.formats, func(f string) bool {
		return !slices.Contains(sn.formats, f) && !offered[strings.ToLower(y.names[f])]
	})
	if len(y.formats) == 0 {
		return a, nil, fmt.Errorf("%w: the answer from leg %s has none of the payload types offered to it (%s)",
			ErrNotAcceptable, from, strings.Join(sn.formats, " "))
	}

	// Y's security: its answer to our offer.
	if sn.yKeys {
		for _, c := range y.cryptos {
			if c.suite >= 0 && c.tag == c.suite+1 {
				a.yKey, a.ySRTP = c, true
				break
			}
		}
		if !a.ySRTP && (sn.ySAVP || len(y.cryptos) > 0) {
			return a, nil, fmt.Errorf("%w: the answer from leg %s accepts none of the keys offered to it", ErrNotAcceptable, from)
		}
	}

	// The answer to X is Y's, rewritten for X's leg.
	out := &outStream{l: lx, kind: kindRTP, formats: y.formats, mux: sn.x.mux, hold: y.hold, proto: sn.x.proto}
	if sn.media == "audio" {
		out.ptime = ptimeTowards(lx, sn.legs[from])
	}
	switch {
	case sn.pass:
		for _, c := range y.cryptos {
			out.cryptos = append(out.cryptos, c.raw)
		}
	case sn.xSRTP:
		if a.ourX, err = lx.ownKey(sn.xKey.suite); err != nil {
			return a, nil, err
		}
		out.cryptos = []string{formatCrypto(sn.xKey.tag, a.ourX)}
	}
	if sn.x.ice {
		// Every RTP stream of an ICE offer gets its ICE-lite answer: an
		// agent that checks audio and video (a Lync or WebRTC client)
		// fails a stream whose answer has none. A UDPTL stream, answered
		// above, has none: it never runs through STUN (leg.go), and the
		// offerer then does not use ICE for it (RFC 8839 §4.3).
		if lx.ice == nil {
			lx.ice = newICECreds()
		}
		out.ice = lx.ice
	}
	a.y = y
	return a, out, nil
}

// commitStream makes an accepted stream's legs take the new state; until
// is the end of their learning window.
func (s *Session) commitStream(n *negotiation, a *answered, until int64) error {
	sn := a.sn
	lx, ly := sn.legs[n.from], sn.legs[n.from.other()]
	defer func() {
		for _, l := range sn.legs {
			l.idx, l.off = sn.idx, false
			l.police(s.e.cfg.Police, sn.media)
			l.mark(s.e.cfg.DSCP, sn.media)
			if l.kind != sn.kind {
				// Audio became fax, or fax audio, in the same m-line on the
				// same ports: no stream of the old protocol is the new
				// one's, so the first datagram latches as at the call's
				// start (a latch the SDP did not move stays).
				l.kind, l.ssrc, l.relearn = sn.kind, 0, false
			}
		}
	}()
	if sn.kind == kindUDPTL {
		if err := lx.apply(&sn.x, false, false, sdesKey{}, sdesKey{}); err != nil {
			return err
		}
		if err := ly.apply(&a.y, false, false, sdesKey{}, sdesKey{}); err != nil {
			return err
		}
		codec := ""
		if len(a.y.formats) > 0 {
			codec = a.y.formats[0]
		}
		codec = strings.Clone(codec) // not the SDP's buffer (see Offer)
		lx.codec, ly.codec = codec, codec
		lx.learnUntil, ly.learnUntil = until, until
		return nil
	}
	if err := lx.apply(&sn.x, sn.xSRTP, sn.pass, sn.xKey.key, a.ourX); err != nil {
		return err
	}
	var ourY sdesKey
	if a.ySRTP {
		ourY = ly.ownKeyDrawn(a.yKey.suite)
	}
	y := &a.y
	y.mux = y.mux && sn.x.mux // we offered rtcp-mux only if X did
	if err := ly.apply(y, a.ySRTP, sn.pass, a.yKey.key, ourY); err != nil {
		return err
	}
	codec := strings.Clone(y.codec()) // not the SDP's buffer (see Offer)
	lx.codec, ly.codec = codec, codec
	for _, f := range y.formats {
		lx.addPT(f, y)
		ly.addPT(f, y)
	}
	for _, f := range sn.x.formats {
		lx.addPT(f, &sn.x)
		ly.addPT(f, &sn.x)
	}
	configureRepack(lx, ly, sn.pass || sn.media != "audio")
	lx.learnUntil, ly.learnUntil = until, until
	return nil
}

// ptimeTowards is the a=ptime of the SDP sent out of leg to, whose stream's
// other leg is other (R-SBC-3): to's profile ptime, which the relay
// re-packetises to; else other's, which is what the relay sends out of
// other's leg, so that to's peer sends it and the relay has nothing to do;
// 0 when neither has one (the SDP's a=ptime passes as it came).
func ptimeTowards(to, other *leg) int {
	if to.prof.Ptime > 0 {
		return to.prof.Ptime
	}
	return other.prof.Ptime
}

// Reject abandons the pending offer that came from side from (its
// transaction failed); the previous media state stays, and the pairs the
// offer opened are released.
func (s *Session) Reject(from Side) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil && s.pending.from == from {
		s.pending.releaseOpened(s)
		s.pending = nil
		s.offloadUpdate()
	}
}

// reaches says whether l can send to the addresses r names: its sockets
// are of its local address's family (LegProfile.Local), and a datagram to
// the other family never leaves. A hold address names no peer.
func (l *leg) reaches(r *remoteMedia) error {
	if r.hold {
		return nil
	}
	for _, a := range []netip.AddrPort{r.rtp, r.rtcp} {
		if a.IsValid() && a.Addr().Is4() != l.prof.Local.Is4() {
			return fmt.Errorf("%w: leg %s's media is on %s and its peer's SDP names %s", ErrNotAcceptable, l.side, l.prof.Local, a.Addr())
		}
	}
	return nil
}

// apply makes r the leg's peer: addresses, rtcp-mux, payload types and keys.
func (l *leg) apply(r *remoteMedia, secure, pass bool, theirs, ours sdesKey) error {
	if !r.hold {
		// Another peer — the SDP's address or port changed, a hold
		// aside: a transfer's new leg, a phone on a new socket — is
		// learnt afresh. Until its first packet media goes to its SDP
		// address, never on to the old peer's latched source.
		// The old peer's SSRC is kept: a stranger replaying the old
		// stream from elsewhere is refused (leg.accept).
		if l.peerSDP.IsValid() && r.rtp != l.peerSDP {
			if l.latchRTP.IsValid() {
				l.dropped = l.latchRTP
			}
			l.latchRTP, l.latchRTCP, l.relearn = netip.AddrPort{}, netip.AddrPort{}, true
		}
		l.peerSDP = r.rtp
	}
	l.sdpRTP, l.sdpRTCP, l.hold, l.mux = r.rtp, r.rtcp, r.hold, r.mux
	l.sdpPtime, l.sdpMaxptime = r.ptime, r.maxptime
	if r.mux {
		l.sdpRTCP = r.rtp
	}
	l.pt = ptTable{}
	l.ptKnown = true
	l.passthrough = pass
	l.secure = secure
	// A key our context encrypted with goes with the context: a new one
	// under it would start the packet index over, and with the same SSRC
	// (the relayed stream's) encrypt with the same keystream again
	// (RFC 3711 §9.1). The next offer or answer draws a fresh one.
	if l.tx != nil && (!secure || !ours.equal(l.txKey)) && l.ownKeys != nil && l.ownKeys[l.txKey.suite].equal(l.txKey) {
		l.ownKeys[l.txKey.suite] = sdesKey{}
	}
	if !secure {
		l.rx, l.tx, l.rxKey, l.txKey = nil, nil, sdesKey{}, sdesKey{}
		return nil
	}
	// Contexts survive a repeated answer with the same keys, and with them
	// the rollover counters and the replay window.
	if l.rx == nil || !theirs.equal(l.rxKey) {
		rx, err := theirs.context(true)
		if err != nil {
			return err
		}
		l.rx, l.rxKey = rx, theirs
	}
	if l.tx == nil || !ours.equal(l.txKey) {
		tx, err := ours.context(false)
		if err != nil {
			return err
		}
		l.tx, l.txKey = tx, ours
	}
	return nil
}

func (l *leg) addPT(f string, r *remoteMedia) {
	var pt int
	if _, err := fmt.Sscan(f, &pt); err != nil || pt < 0 || pt > 127 {
		return
	}
	l.pt.set(pt, ptInfo{known: true, clock: r.clocks[f], codec: frameKindOf(r.names[f], r.clocks[f])})
}

// ownKey is our key for suite i on this leg, drawn once per leg.
func (l *leg) ownKey(i int) (sdesKey, error) {
	if l.ownKeys == nil {
		l.ownKeys = new([len(suites)]sdesKey)
	}
	if !l.ownKeys[i].valid() {
		k, err := newKey(i)
		if err != nil {
			return sdesKey{}, err
		}
		l.ownKeys[i] = k
	}
	return l.ownKeys[i], nil
}

// ownKeyDrawn is our key for suite i on this leg if one was drawn, else
// the zero key.
func (l *leg) ownKeyDrawn(i int) sdesKey {
	if l.ownKeys == nil {
		return sdesKey{}
	}
	return l.ownKeys[i]
}

// offerKeys are the a=crypto values of an offer out of this leg: one fresh
// key per suite, tag i+1 for suites[i].
func (l *leg) offerKeys() ([]string, error) {
	out := make([]string, len(suites))
	for i := range suites {
		k, err := l.ownKey(i)
		if err != nil {
			return nil, err
		}
		out[i] = formatCrypto(i+1, k)
	}
	return out, nil
}

func suiteNames() string {
	names := make([]string, len(suites))
	for i, s := range suites {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

// plainProto and secureProto switch an RTP profile between its plain and
// SRTP forms, keeping feedback (AVPF).
func plainProto(p string) string  { return strings.Replace(p, "SAVP", "AVP", 1) }
func secureProto(p string) string { return strings.Replace(plainProto(p), "AVP", "SAVP", 1) }
