package media

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// staticPT are the RFC 3551 static payload types an SDP may use without an
// a=rtpmap line.
var staticPT = map[int]struct {
	name  string
	clock uint32
}{
	0: {"PCMU", 8000}, 3: {"GSM", 8000}, 4: {"G723", 8000}, 8: {"PCMA", 8000}, 9: {"G722", 8000},
	13: {"CN", 8000}, 15: {"G728", 8000}, 18: {"G729", 8000},
}

const dtmfName = "telephone-event"

// remoteMedia is what one side's SDP says about the anchored stream.
type remoteMedia struct {
	rtp, rtcp netip.AddrPort
	hold      bool // c=0.0.0.0 (RFC 2543 hold)
	mux       bool
	ice       bool
	proto     string // one of rtpProfiles, or udptl
	cryptos   []cryptoLine
	formats   []string
	names     map[string]string // format → encoding name
	clocks    map[string]uint32
	// a=ptime and a=maxptime in ms (the media's, else the session's);
	// 0 = not said (RFC 3551: 20 ms for the audio codecs).
	ptime, maxptime int
}

func (r *remoteMedia) savp() bool { return strings.Contains(r.proto, "SAVP") }

// firstUsable is the offer's first crypto line the engine can terminate.
func (r *remoteMedia) firstUsable() (cryptoLine, bool) {
	for _, c := range r.cryptos {
		if c.suite >= 0 {
			return c, true
		}
	}
	return cryptoLine{}, false
}

// codec is the first non-DTMF encoding of the stream.
func (r *remoteMedia) codec() string {
	for _, f := range r.formats {
		if n := r.names[f]; !strings.EqualFold(n, dtmfName) && n != "" {
			return n
		}
	}
	return ""
}

func parseSDP(b []byte) (*sdp.SessionDescription, error) {
	b, orig, err := maskMedia(b)
	if err != nil {
		return nil, err
	}
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	for i, o := range orig {
		if o.media != "" && i < len(sd.MediaDescriptions) {
			sd.MediaDescriptions[i].MediaName.Media = o.media
			sd.MediaDescriptions[i].MediaName.Protos = strings.Split(o.proto, "/")
		}
	}
	return sd, nil
}

// pion/sdp takes only the media types and proto tokens it lists (not
// image, not udptl: T.38's m=image PORT udptl t38, RFC 3362) and fails the
// whole description on any other. maskMedia stands such an m-line in for
// one it takes (m=application PORT UDP FORMATS) and says, by m-line index,
// what it was; parseSDP puts it back. So T.38 is anchored and any other
// unknown stream is declined, not the call refused.
var (
	pionMedia = map[string]bool{"audio": true, "video": true, "text": true, "application": true, "message": true}
	pionProto = map[string]bool{"UDP": true, "RTP": true, "AVP": true, "SAVP": true, "SAVPF": true, "TLS": true, "DTLS": true,
		"SCTP": true, "AVPF": true, "TCP": true, "MSRP": true, "BFCP": true, "UDT": true, "IX": true, "MRCPv2": true, "FEC": true}
)

type maskedMedia struct{ media, proto string }

func maskMedia(b []byte) ([]byte, []maskedMedia, error) {
	if !bytes.Contains(b, []byte("m=")) {
		return b, nil, nil
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	var orig []maskedMedia
	masked := false
	n := 0
	for i, line := range lines {
		if !bytes.HasPrefix(line, []byte("m=")) {
			continue
		}
		n++
		f := strings.Fields(string(line[2:]))
		if len(f) < 3 {
			continue // pion says what is wrong with it
		}
		known := pionMedia[f[0]]
		for p := range strings.SplitSeq(f[2], "/") {
			known = known && pionProto[p]
		}
		if known {
			continue
		}
		for _, tok := range f[:3] {
			if !isToken(tok) {
				return nil, nil, fmt.Errorf("%w: m-line %d: %q is not a token", ErrBadSDP, n-1, tok)
			}
		}
		for len(orig) < n {
			orig = append(orig, maskedMedia{})
		}
		orig[n-1] = maskedMedia{media: f[0], proto: f[2]}
		lines[i] = []byte("m=application " + f[1] + " UDP " + strings.Join(f[3:], " ") + "\r\n")
		masked = true
	}
	if !masked {
		return b, nil, nil
	}
	return bytes.Join(lines, nil), orig, nil
}

// isToken reports whether s is an SDP token (RFC 8866 §9) of the
// characters a media type or proto uses.
func isToken(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-_.+!#$%&'*^`{|}~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// streamKind is how the engine carries an anchored stream.
type streamKind uint8

const (
	kindRTP   streamKind = iota // audio or video over RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF
	kindUDPTL                   // image over udptl: T.38 fax (ITU-T T.38 Annex D, RFC 3362)
)

func (k streamKind) String() string {
	if k == kindUDPTL {
		return "udptl"
	}
	return "rtp"
}

// maxStreams bounds the streams one session anchors, each on its own port
// pair per leg: audio, video and a T.38 fax at once fit. A further m-line
// is declined (port 0) and counted, so an offer of many m-lines costs at
// most this many pairs.
const maxStreams = 4

// rtpProfiles are the RTP profiles over UDP the engine relays.
var rtpProfiles = map[string]bool{"RTP/AVP": true, "RTP/SAVP": true, "RTP/AVPF": true, "RTP/SAVPF": true}

// classify says whether m-line m is a stream the engine anchors, and how.
// A port of 0 is a declined stream. Audio and video are anchored over an
// RTP profile over UDP (rtpProfiles); an image stream over udptl (T.38).
// The proto is case-significant (RFC 8866 §5; the IANA name is "udptl"):
// "UDPTL", UDP/TLS/UDPTL (RFC 7345), RTP over TCP (RTP/AVP/TCP,
// TCP/RTP/AVP, RFC 4571), DTLS-SRTP (UDP/TLS/RTP/SAVPF), MSRP, DTLS/SCTP
// and the like are declined.
func classify(m *sdp.MediaDescription) (streamKind, bool) {
	if m.MediaName.Port.Value == 0 {
		return 0, false
	}
	p := strings.Join(m.MediaName.Protos, "/")
	switch m.MediaName.Media {
	case "audio", "video":
		return kindRTP, rtpProfiles[p]
	case "image":
		return kindUDPTL, p == "udptl"
	}
	return 0, false
}

// anchored picks the session's primary stream in an offer before the
// first answer (which fixes it): the first audio m-line with a port and an
// RTP profile, else the first stream the engine anchors at all (a call
// that starts as T.38). Its legs are the
// session's own (Session.legs), the ones the stats' old fields, Attach and
// Send name.
func anchored(sd *sdp.SessionDescription) (int, error) {
	first := -1
	for i, m := range sd.MediaDescriptions {
		k, ok := classify(m)
		if ok && k == kindRTP && m.MediaName.Media == "audio" {
			return i, nil
		}
		if ok && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		return first, nil
	}
	return 0, fmt.Errorf("%w: no audio stream over RTP nor T.38 (image over udptl) with a port", ErrNotAcceptable)
}

// readRemote reads the anchored stream idx of sd, carried as kind says. Of
// a udptl stream only the address, port and formats are read: its
// attributes (T38FaxVersion, T38MaxBitRate, ...) pass through unparsed.
func readRemote(sd *sdp.SessionDescription, idx int, kind streamKind) (remoteMedia, error) {
	m := sd.MediaDescriptions[idx]
	ci := m.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return remoteMedia{}, fmt.Errorf("%w: m=%s has no c= line", ErrBadSDP, m.MediaName.Media)
	}
	addr, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return remoteMedia{}, fmt.Errorf("%w: c=%s %s %s: not an IP address", ErrBadSDP, ci.NetworkType, ci.AddressType, ci.Address.Address)
	}
	port := m.MediaName.Port.Value
	if port < 1 || port > 65535 {
		return remoteMedia{}, fmt.Errorf("%w: m=%s port %d", ErrBadSDP, m.MediaName.Media, port)
	}
	r := remoteMedia{
		proto:   strings.Join(m.MediaName.Protos, "/"),
		formats: slices.Clone(m.MediaName.Formats),
		names:   map[string]string{},
		clocks:  map[string]uint32{},
		hold:    addr.IsUnspecified(),
	}
	if len(r.formats) == 0 {
		return remoteMedia{}, fmt.Errorf("%w: m=%s lists no formats", ErrBadSDP, m.MediaName.Media)
	}
	addr = addr.Unmap()
	r.rtp = netip.AddrPortFrom(addr, uint16(port))
	if port < 65535 { // else no RTCP address unless a=rtcp names one
		r.rtcp = netip.AddrPortFrom(addr, uint16(port+1))
	}
	if kind == kindUDPTL {
		return r, nil
	}
	for _, f := range r.formats {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 127 {
			return remoteMedia{}, fmt.Errorf("%w: m=%s format %q is not a payload type", ErrBadSDP, m.MediaName.Media, f)
		}
		if st, ok := staticPT[n]; ok {
			r.names[f], r.clocks[f] = st.name, st.clock
		}
	}
	for _, a := range m.Attributes {
		switch a.Key {
		case "rtpmap":
			pt, enc, ok := strings.Cut(a.Value, " ")
			name, rate, _ := strings.Cut(enc, "/")
			rate, _, _ = strings.Cut(rate, "/")
			clock, err := strconv.ParseUint(rate, 10, 32)
			if !ok || name == "" || err != nil {
				return remoteMedia{}, fmt.Errorf("%w: a=rtpmap:%s", ErrBadSDP, a.Value)
			}
			r.names[pt], r.clocks[pt] = name, uint32(clock)
		case "rtcp":
			// RFC 3605: port [nettype addrtype address]
			f := strings.Fields(a.Value)
			if len(f) == 0 {
				return remoteMedia{}, fmt.Errorf("%w: a=rtcp without a port", ErrBadSDP)
			}
			p, err := strconv.Atoi(f[0])
			if err != nil || p < 1 || p > 65535 {
				return remoteMedia{}, fmt.Errorf("%w: a=rtcp:%s", ErrBadSDP, a.Value)
			}
			ra := addr
			if len(f) == 4 {
				if ra, err = netip.ParseAddr(f[3]); err != nil {
					return remoteMedia{}, fmt.Errorf("%w: a=rtcp:%s: not an IP address", ErrBadSDP, a.Value)
				}
			}
			r.rtcp = netip.AddrPortFrom(ra.Unmap(), uint16(p))
		case "rtcp-mux":
			r.mux = true
		case "ptime":
			r.ptime = packetTime(a.Value)
		case "maxptime":
			r.maxptime = packetTime(a.Value)
		case "ice-ufrag":
			r.ice = true
		case "crypto":
			c, err := parseCrypto(a.Value)
			if err != nil {
				return remoteMedia{}, err
			}
			r.cryptos = append(r.cryptos, c)
		}
	}
	for _, a := range sd.Attributes {
		switch {
		case a.Key == "ice-ufrag":
			r.ice = true
		case a.Key == "ptime" && r.ptime == 0:
			r.ptime = packetTime(a.Value) // RFC 8866 makes it media-level; some put it at the session's
		case a.Key == "maxptime" && r.maxptime == 0:
			r.maxptime = packetTime(a.Value)
		}
	}
	return r, nil
}

// packetTime reads the value of an a=ptime or a=maxptime, milliseconds
// that RFC 8866 §6.4 lets carry a fraction ("20.0"), to whole ms; 0 when
// it is no number or outside 1..1000 (a peer's odd attribute is ignored,
// not a reason to refuse its call).
func packetTime(v string) int {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(f >= 0.5 && f < 1000.5) { // NaN fails too
		return 0
	}
	return int(f + 0.5)
}

// filterFormats applies both legs' codec lists to an offer's formats: a
// codec must be allowed by both, ordered by the receiving leg's preference
// (then the sending leg's, then the offer's); telephone-event stays, last,
// unless either leg drops DTMF.
func filterFormats(r *remoteMedia, from, to LegProfile) ([]string, error) {
	allowed := func(list []string, name string) bool {
		return len(list) == 0 || slices.ContainsFunc(list, func(c string) bool { return strings.EqualFold(c, name) })
	}
	rank := func(name string) int {
		for _, list := range [][]string{to.Codecs, from.Codecs} {
			if i := slices.IndexFunc(list, func(c string) bool { return strings.EqualFold(c, name) }); i >= 0 {
				return i
			}
		}
		return len(to.Codecs) + len(from.Codecs)
	}
	var codecs, dtmf []string
	for _, f := range r.formats {
		name := r.names[f]
		switch {
		case strings.EqualFold(name, dtmfName):
			if !from.DropDTMF && !to.DropDTMF {
				dtmf = append(dtmf, f)
			}
		case name == "":
			// A dynamic payload type without a=rtpmap: only lists that
			// allow everything keep it.
			if len(from.Codecs) == 0 && len(to.Codecs) == 0 {
				codecs = append(codecs, f)
			}
		case allowed(from.Codecs, name) && allowed(to.Codecs, name):
			codecs = append(codecs, f)
		}
	}
	if len(codecs) == 0 {
		return nil, fmt.Errorf("%w: no offered codec (%s) is allowed on both legs", ErrNotAcceptable, strings.Join(r.formats, " "))
	}
	slices.SortStableFunc(codecs, func(a, b string) int { return rank(r.names[a]) - rank(r.names[b]) })
	return append(codecs, dtmf...), nil
}

// outStream is how one anchored stream of an outgoing description looks.
type outStream struct {
	l       *leg // the stream's leg on the side the description goes to
	kind    streamKind
	proto   string
	formats []string
	cryptos []string // a=crypto values
	ice     *iceCreds
	mux     bool // a=rtcp-mux
	offer   bool
	hold    bool
	ptime   int // > 0: a=ptime:<ptime> in place of the stream's a=ptime and a=maxptime (R-SBC-3)
}

// dropAttr are the attributes never passed from one leg to the other: they
// describe the other leg's transport, keys or topology.
var dropAttr = map[string]bool{
	"rtcp": true, "rtcp-mux": true, "crypto": true, "fingerprint": true, "setup": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-lite": true, "ice-options": true, "ice-mismatch": true, "ice-pacing": true,
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"group": true, // BUNDLE: one transport for several streams; we anchor each on its own
}

// rewrite turns sd, as one side sent it, into what the engine sends out of
// the legs on local's side: our origin and address, each stream of outs
// (by m-line index; nil or missing: declined, port 0) on its leg's ports.
// prim is the primary stream's index: its hold is the session's c=. A
// stream answered with ICE carries its own credentials and candidates, and
// the session says a=ice-lite.
func rewrite(sd *sdp.SessionDescription, local netip.Addr, prim int, o origin, outs []*outStream) ([]byte, error) {
	addrType := "IP4"
	if local.Is6() {
		addrType = "IP6"
	}
	sd.Origin = sdp.Origin{
		Username: "umedge", SessionID: o.id, SessionVersion: o.version,
		NetworkType: "IN", AddressType: addrType, UnicastAddress: local.String(),
	}
	sd.SessionName = "umedge"
	sd.EmailAddress, sd.PhoneNumber, sd.URI, sd.SessionInformation = nil, nil, nil, nil
	hold := "0.0.0.0"
	if local.Is6() {
		hold = "::"
	}
	var po *outStream
	if prim >= 0 && prim < len(outs) {
		po = outs[prim]
	}
	sessHold := po != nil && po.hold
	c := local.String()
	if sessHold {
		c = hold
	}
	sd.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: c}}
	sd.Attributes = keepAttrs(sd.Attributes, nil)
	if slices.ContainsFunc(outs, func(o *outStream) bool { return o != nil && o.ptime > 0 }) {
		sd.Attributes = dropPtime(sd.Attributes) // the stream's own line says it
	}
	if slices.ContainsFunc(outs, func(o *outStream) bool { return o != nil && o.ice != nil && !o.offer }) {
		sd.Attributes = append(sd.Attributes, sdp.Attribute{Key: "ice-lite"})
	}
	sd.EncryptionKey = nil
	for i, m := range sd.MediaDescriptions {
		// A stream's title and k= key are the other side's words (i= may
		// name its host, k= is its key), not ours to pass on.
		m.ConnectionInformation, m.MediaTitle, m.EncryptionKey = nil, nil, nil
		var out *outStream
		if i < len(outs) {
			out = outs[i]
		}
		if out == nil {
			m.MediaName.Port = sdp.RangedPort{Value: 0}
			m.Attributes = nil
			continue
		}
		if out.hold != sessHold {
			mc := local.String()
			if out.hold {
				mc = hold
			}
			m.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: mc}}
		}
		l := out.l
		m.MediaName.Port = sdp.RangedPort{Value: l.rtp.port}
		m.MediaName.Protos = strings.Split(out.proto, "/")
		m.MediaName.Formats = out.formats
		if out.kind == kindUDPTL {
			// T38* attributes pass untouched but for a datagram size the
			// relay cannot carry; UDPTL has no RTCP, keys or candidates of
			// ours (our +1 port stays unused).
			m.Attributes = keepAttrs(m.Attributes, nil)
			for i, a := range m.Attributes {
				if n, err := strconv.Atoi(a.Value); strings.EqualFold(a.Key, "T38FaxMaxDatagram") && err == nil && n > bufSize {
					m.Attributes[i].Value = strconv.Itoa(bufSize) // larger ones are dropped (worker.serve)
				}
			}
			continue
		}
		m.Attributes = keepAttrs(m.Attributes, out.formats)
		if !out.mux || out.offer {
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtcp", Value: strconv.Itoa(l.rtcp.port)})
		}
		if out.mux {
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "rtcp-mux"})
		}
		for _, v := range out.cryptos {
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "crypto", Value: v})
		}
		if out.ptime > 0 {
			// What the leg's profile asks for, or what the other leg's
			// profile makes it send: the relay re-packetises the rest. The
			// other side's maxptime bound what it could take, which the
			// relay sees to, and could contradict the ptime: it goes too.
			m.Attributes = append(dropPtime(m.Attributes), sdp.Attribute{Key: "ptime", Value: strconv.Itoa(out.ptime)})
		}
		if out.ice != nil {
			m.Attributes = append(m.Attributes,
				sdp.Attribute{Key: "ice-ufrag", Value: out.ice.ufrag},
				sdp.Attribute{Key: "ice-pwd", Value: out.ice.pwd},
				sdp.Attribute{Key: "candidate", Value: fmt.Sprintf("1 1 UDP 2130706431 %s %d typ host", local, l.rtp.port)})
			if !out.mux {
				m.Attributes = append(m.Attributes,
					sdp.Attribute{Key: "candidate", Value: fmt.Sprintf("1 2 UDP 2130706430 %s %d typ host", local, l.rtcp.port)})
			}
			m.Attributes = append(m.Attributes, sdp.Attribute{Key: "end-of-candidates"})
		}
	}
	b, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("media: marshal SDP: %w", err)
	}
	return b, nil
}

// dropPtime drops a=ptime and a=maxptime from in, in place.
func dropPtime(in []sdp.Attribute) []sdp.Attribute {
	return slices.DeleteFunc(in, func(a sdp.Attribute) bool { return a.Key == "ptime" || a.Key == "maxptime" })
}

// keepAttrs drops the attributes of dropAttr, those that name an IP
// address (hasAddr) and, when formats is not nil, the per-format
// attributes (rtpmap, fmtp, rtcp-fb) of formats not kept.
func keepAttrs(in []sdp.Attribute, formats []string) []sdp.Attribute {
	out := in[:0:0]
	for _, a := range in {
		// Names in any case: pion reads "a=CRYPTO:" as an attribute of
		// its own, which the other leg must not get any more than
		// "a=crypto:" (its key) or "a=ICE-PWD:".
		key := strings.ToLower(a.Key) // no copy when already lower case
		if dropAttr[key] || hasAddr(a.Key) || hasAddr(a.Value) || hasAddr(a.Key+":"+a.Value) {
			continue
		}
		if formats != nil && (key == "rtpmap" || key == "fmtp" || key == "rtcp-fb") {
			pt, _, _ := strings.Cut(a.Value, " ")
			if pt != "*" && !slices.Contains(formats, pt) {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// hasAddr reports whether v holds an IP address literal (IPv4 or IPv6,
// with or without a port or zone, bracketed or not, glued to a vendor's
// own words: "src:10.1.1.5", "ipv4:10.1.1.5", "ab10.1.1.5", the
// "10.1.1.5.5060" of a trace). dropAttr knows the attributes that carry
// the other leg's transport; a vendor's own (an a=x-nat-addr:10.1.1.5, an
// a=x-peer:[2001:db8::7]:5060) would otherwise pass the other side's
// addresses through (R-SBC-1), so any attribute naming an address goes.
// None that a relayed stream needs does (rtpmap, fmtp, ptime, direction,
// rtcp-fb, extmap, ssrc, msid, imageattr, T38*, framerate, label, mid:
// TestHasAddr). The unspecified addresses (0.0.0.0, ::) name no host and
// do not count. An FQDN or an address spelled otherwise (hex, an integer)
// is not looked for: nothing tells it from a word.
func hasAddr(v string) bool {
	isDigitDot := func(r rune) bool { return r >= '0' && r <= '9' || r == '.' }
	for run := range strings.FieldsFuncSeq(v, func(r rune) bool { return !isDigitDot(r) }) {
		if hasDottedQuad(run) {
			return true
		}
	}
	isV6Rune := func(r rune) bool {
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '.' || r == ':'
	}
	named := func(c string) bool {
		a, err := netip.ParseAddr(c)
		return err == nil && !a.IsUnspecified()
	}
	for tok := range strings.FieldsFuncSeq(v, func(r rune) bool { return !isV6Rune(r) }) {
		if !strings.Contains(tok, ":") {
			continue
		}
		// The token, then what follows each of its colons: "e:2001:db8::1"
		// is "route:" glued to an address (a hex letter ends the word);
		// with and without a trailing "." or ":". An address is at most
		// maxAddrLen long, so only a long token's tail is looked at, from
		// a colon on: the scan stays linear in v.
		for _, c := range []string{tok, strings.TrimRight(tok, ".:")} {
			if len(c) > maxAddrLen {
				c = c[len(c)-maxAddrLen:]
				_, c, _ = strings.Cut(c, ":")
			}
			for {
				if named(c) {
					return true
				}
				j := strings.IndexByte(c, ':')
				if j < 0 {
					break
				}
				c = c[j+1:]
			}
		}
	}
	return false
}

// maxAddrLen is the longest IP address literal without a zone,
// ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255.
const maxAddrLen = 45

// hasDottedQuad reports whether run, digits and dots, has four dotted
// decimal octets in a row (not 0.0.0.0).
func hasDottedQuad(run string) bool {
	f := strings.Split(run, ".")
	octet := func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && len(s) <= 3 && n <= 255
	}
	for i := 0; i+4 <= len(f); i++ {
		sum, ok := 0, true
		for _, s := range f[i : i+4] {
			n, good := octet(s)
			sum, ok = sum+n, ok && good
		}
		if ok && sum > 0 {
			return true
		}
	}
	return false
}
