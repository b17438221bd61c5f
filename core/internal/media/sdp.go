package media

import (
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
	proto     string // RTP/AVP, RTP/SAVP, RTP/AVPF, RTP/SAVPF
	cryptos   []cryptoLine
	formats   []string
	names     map[string]string // format → encoding name
	clocks    map[string]uint32
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
	sd := &sdp.SessionDescription{}
	if err := sd.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	return sd, nil
}

// anchored picks the stream the engine anchors: the first audio m-line with
// a port and an RTP profile. Other streams are declined (port 0).
func anchored(sd *sdp.SessionDescription) (int, error) {
	for i, m := range sd.MediaDescriptions {
		p := strings.Join(m.MediaName.Protos, "/")
		if m.MediaName.Media == "audio" && m.MediaName.Port.Value != 0 && strings.HasPrefix(p, "RTP/") {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: no audio stream over RTP with a port", ErrNotAcceptable)
}

// readRemote reads the anchored stream idx of sd.
func readRemote(sd *sdp.SessionDescription, idx int) (remoteMedia, error) {
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
	r.rtcp = netip.AddrPortFrom(addr, uint16(port+1))
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
		if a.Key == "ice-ufrag" {
			r.ice = true
		}
	}
	return r, nil
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

// outStream is how the anchored stream of an outgoing description looks.
type outStream struct {
	proto   string
	formats []string
	cryptos []string // a=crypto values
	ice     *iceCreds
	mux     bool // a=rtcp-mux
	offer   bool
	hold    bool
}

// dropAttr are the attributes never passed from one leg to the other: they
// describe the other leg's transport, keys or topology.
var dropAttr = map[string]bool{
	"rtcp": true, "rtcp-mux": true, "crypto": true, "fingerprint": true, "setup": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-lite": true, "ice-options": true, "ice-mismatch": true,
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"group": true, // BUNDLE: one transport for several streams; we anchor one
}

// rewrite turns sd, as one side sent it, into what the engine sends out of
// leg l: our origin and addresses, stream idx anchored on l's ports as out
// says, every other stream declined.
func rewrite(sd *sdp.SessionDescription, idx int, l *leg, o origin, out outStream) ([]byte, error) {
	local := l.prof.Local
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
	c := local.String()
	if out.hold {
		c = "0.0.0.0"
		if local.Is6() {
			c = "::"
		}
	}
	sd.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: c}}
	sd.Attributes = keepAttrs(sd.Attributes, nil)
	if out.ice != nil && !out.offer {
		sd.Attributes = append(sd.Attributes, sdp.Attribute{Key: "ice-lite"})
	}
	for i, m := range sd.MediaDescriptions {
		m.ConnectionInformation = nil
		if i != idx {
			m.MediaName.Port = sdp.RangedPort{Value: 0}
			m.Attributes = nil
			continue
		}
		m.MediaName.Port = sdp.RangedPort{Value: l.rtp.port}
		m.MediaName.Protos = strings.Split(out.proto, "/")
		m.MediaName.Formats = out.formats
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

// keepAttrs drops the attributes of dropAttr and, when formats is not nil,
// the per-format attributes (rtpmap, fmtp, rtcp-fb) of formats not kept.
func keepAttrs(in []sdp.Attribute, formats []string) []sdp.Attribute {
	out := in[:0:0]
	for _, a := range in {
		if dropAttr[a.Key] {
			continue
		}
		if formats != nil && (a.Key == "rtpmap" || a.Key == "fmtp" || a.Key == "rtcp-fb") {
			pt, _, _ := strings.Cut(a.Value, " ")
			if pt != "*" && !slices.Contains(formats, pt) {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}
