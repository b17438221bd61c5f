package media

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// negotiation is one offer and what the engine decided about it.
type negotiation struct {
	from    Side // the offerer, X; the answerer is Y
	idx     int  // the anchored stream
	x       remoteMedia
	xKey    cryptoLine // X's key we accept (terminating SRTP on X)
	xSRTP   bool       // X's leg speaks SRTP
	pass    bool       // SRTP passes through untouched (both legs As is)
	ySAVP   bool       // the offer to Y is RTP/SAVP: its answer must carry crypto
	yKeys   bool       // the offer to Y carries our keys (tag i+1 = suites[i])
	formats []string   // the payload types offered to Y
	// version of the answer sent to X, fixed at the first answer so that
	// a repeated answer is the same description.
	ansVersion uint64
}

// Offer takes an SDP offer that arrived from side from and returns the
// offer to send to the other side. Errors wrap ErrBadSDP or
// ErrNotAcceptable with the detail for a 488 Warning.
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
	idx, err := anchored(sd)
	if err != nil {
		return nil, err
	}
	x, err := readRemote(sd, idx)
	if err != nil {
		return nil, err
	}
	lx, ly := s.legs[from], s.legs[from.other()]
	n := &negotiation{from: from, idx: idx, x: x}

	key, usable := x.firstUsable()
	switch lx.prof.Security {
	case SecuritySRTP:
		if !usable {
			return nil, fmt.Errorf("%w: leg %s is secured only and the offer has no %s key", ErrNotAcceptable, from, suiteNames())
		}
		n.xSRTP = true
	case SecurityRTP:
		if x.savp() {
			return nil, fmt.Errorf("%w: leg %s is not secured and the offer requires SRTP (%s)", ErrNotAcceptable, from, x.proto)
		}
	default:
		n.xSRTP = usable
	}
	n.xKey = key
	n.pass = lx.prof.Security == SecurityAsIs && ly.prof.Security == SecurityAsIs && len(x.cryptos) > 0
	if n.pass {
		n.xSRTP = false // the endpoints' keys: we neither decrypt nor encrypt
	} else if x.savp() && !usable {
		return nil, fmt.Errorf("%w: %s offer from leg %s has no %s key", ErrNotAcceptable, x.proto, from, suiteNames())
	}

	formats, err := filterFormats(&x, lx.prof, ly.prof)
	if err != nil {
		return nil, err
	}
	n.formats = formats
	out := outStream{offer: true, formats: formats, mux: x.mux, hold: x.hold, proto: plainProto(x.proto)}
	switch {
	case n.pass:
		out.proto = x.proto
		for _, c := range x.cryptos {
			out.cryptos = append(out.cryptos, c.raw)
		}
	case ly.prof.Security == SecuritySRTP,
		ly.prof.Security == SecurityAsIs && n.xSRTP && x.savp():
		out.proto, n.ySAVP, n.yKeys = secureProto(x.proto), true, true
	case ly.prof.Security == SecurityBoth,
		ly.prof.Security == SecurityAsIs && n.xSRTP:
		n.yKeys = true // RFC 8643 opportunistic: RTP/AVP with a=crypto
	}
	if n.yKeys {
		if out.cryptos, err = ly.offerKeys(); err != nil {
			return nil, err
		}
	}
	s.origin[ly.side].version++
	b, err := rewrite(sd, idx, ly, s.origin[ly.side], out)
	if err != nil {
		return nil, err
	}
	s.pending = n
	s.offloadUpdate() // an offer changes the media: off the kernel path until its answer
	return b, nil
}

// Answer takes the SDP answer (to the pending offer) that arrived from side
// from and returns the answer to send to the other side; media flows from
// then on. A repeated answer to the same offer (183 then 200) is accepted.
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
	if len(sd.MediaDescriptions) <= n.idx || sd.MediaDescriptions[n.idx].MediaName.Port.Value == 0 {
		return nil, fmt.Errorf("%w: the answer from leg %s declines the audio stream", ErrNotAcceptable, from)
	}
	y, err := readRemote(sd, n.idx)
	if err != nil {
		return nil, err
	}
	lx, ly := s.legs[n.from], s.legs[from]
	// An answer may use its own number for an offered codec (RFC 3264
	// §6.1 says SHOULD keep it): each side declares what it receives, so
	// the relay passes each side's numbers unchanged and nothing is mapped
	// per packet. What was not offered at all goes.
	offered := make(map[string]bool, len(n.formats))
	for _, f := range n.formats {
		offered[strings.ToLower(n.x.names[f])] = true
	}
	y.formats = slices.DeleteFunc(y.formats, func(f string) bool {
		return !slices.Contains(n.formats, f) && !offered[strings.ToLower(y.names[f])]
	})
	if len(y.formats) == 0 {
		return nil, fmt.Errorf("%w: the answer from leg %s has none of the payload types offered to it (%s)",
			ErrNotAcceptable, from, strings.Join(n.formats, " "))
	}

	// Y's security: its answer to our offer.
	var yKey cryptoLine
	ySRTP := false
	if n.yKeys {
		for _, c := range y.cryptos {
			if c.suite >= 0 && c.tag == c.suite+1 {
				yKey, ySRTP = c, true
				break
			}
		}
		if !ySRTP && (n.ySAVP || len(y.cryptos) > 0) {
			return nil, fmt.Errorf("%w: the answer from leg %s accepts none of the keys offered to it", ErrNotAcceptable, from)
		}
	}

	// The answer to X is Y's, rewritten for X's leg.
	out := outStream{formats: y.formats, mux: n.x.mux, hold: y.hold, proto: n.x.proto}
	var ourX sdesKey
	switch {
	case n.pass:
		for _, c := range y.cryptos {
			out.cryptos = append(out.cryptos, c.raw)
		}
	case n.xSRTP:
		if ourX, err = lx.ownKey(n.xKey.suite); err != nil {
			return nil, err
		}
		out.cryptos = []string{formatCrypto(n.xKey.tag, ourX)}
	}
	if n.x.ice {
		if lx.ice == nil {
			lx.ice = newICECreds()
		}
		out.ice = lx.ice
	}
	if n.ansVersion == 0 {
		s.origin[lx.side].version++
		n.ansVersion = s.origin[lx.side].version
	}
	b, err := rewrite(sd, n.idx, lx, origin{id: s.origin[lx.side].id, version: n.ansVersion}, out)
	if err != nil {
		return nil, err
	}

	// Commit: both legs take the new state.
	if err := lx.apply(&n.x, n.xSRTP, n.pass, n.xKey.key, ourX); err != nil {
		return nil, err
	}
	var ourY sdesKey
	if ySRTP {
		ourY = ly.ownKeys[yKey.suite]
	}
	y.mux = y.mux && n.x.mux // we offered rtcp-mux only if X did
	if err := ly.apply(&y, ySRTP, n.pass, yKey.key, ourY); err != nil {
		return nil, err
	}
	codec := y.codec()
	lx.codec, ly.codec = codec, codec
	for _, f := range y.formats {
		lx.addPT(f, &y)
		ly.addPT(f, &y)
	}
	for _, f := range n.x.formats {
		lx.addPT(f, &n.x)
		ly.addPT(f, &n.x)
	}
	now := time.Now().UnixNano()
	until := now + int64(s.e.cfg.LatchWindow)
	lx.learnUntil, ly.learnUntil = until, until
	if !s.mediaUp {
		s.lastPacket = now
	}
	s.mediaUp = true
	s.last, s.pending = n, nil
	s.offloadUpdate()
	return b, nil
}

// Reject abandons the pending offer that came from side from (its
// transaction failed); the previous media state stays.
func (s *Session) Reject(from Side) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil && s.pending.from == from {
		s.pending = nil
		s.offloadUpdate()
	}
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
	if r.mux {
		l.sdpRTCP = r.rtp
	}
	l.pt = [128]ptInfo{}
	l.ptKnown = true
	l.passthrough = pass
	l.secure = secure
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
	l.pt[pt] = ptInfo{known: true, clock: r.clocks[f]}
}

// ownKey is our key for suite i on this leg, drawn once per leg.
func (l *leg) ownKey(i int) (sdesKey, error) {
	if !l.ownKeys[i].valid() {
		k, err := newKey(i)
		if err != nil {
			return sdesKey{}, err
		}
		l.ownKeys[i] = k
	}
	return l.ownKeys[i], nil
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
