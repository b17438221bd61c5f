package b2bua

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/sipheader"
	"github.com/umedge/umedge/core/sdk/router"
)

// A back end's 3xx is handled by the 3xx mode (R-SBC-7) of the peer that
// would receive it: the caller's profile, [sbc.peers.<gateway>], because
// every mode answers a question about the caller — can it follow a
// redirect at all (handle_locally), can it reach the redirect's target
// (transparent), or only us (rewrite). AudioCodes words it the same way
// ("on behalf of the dialog-initiating UA").

// RedirectMode is what the engine does with a back end's 3xx.
type RedirectMode string

// The 3xx modes.
const (
	// RedirectLocal follows the 3xx itself: leg B is placed again at
	// the Contact, on the back end's own host only; the caller never sees
	// the redirect (R-CR-5). The default.
	RedirectLocal RedirectMode = "handle_locally"
	// RedirectTransparent relays the 3xx to the caller with the back
	// end's Contacts as they are. The caller then calls the target itself,
	// not through us: the Contact names the internal back end, so this
	// mode gives up topology hiding (R-SBC-1) for that address — the
	// operator's explicit choice for a caller that can reach it.
	RedirectTransparent RedirectMode = "transparent"
	// RedirectRewrite relays the 3xx with each Contact rewritten onto our
	// own address, its user a signed marker naming the original target:
	// the caller's new INVITE to the marker comes to us and is proxied to
	// that target (Engine.Redirect).
	RedirectRewrite RedirectMode = "rewrite"
)

// maxContacts bounds the Contacts of one 3xx relayed to a caller.
const maxContacts = 8

// markerPrefix starts the user part of a rewritten Contact.
const markerPrefix = "umr."

// DefaultMarkerTTL is how long a rewritten Contact may be called when
// Config leaves it 0.
const DefaultMarkerTTL = time.Minute

// redirectMode is the 3xx mode for c's caller.
func (c *call) redirectMode() RedirectMode {
	if m := c.e.cfg.Peers[c.target.Gateway].RedirectMode; m != "" {
		return m
	}
	return RedirectLocal
}

// redirectTarget is where a Contact of the back end's 3xx points, when
// the engine may call it: only the back end's own host — named by the
// same address or the same name, so no DNS lookup happens here and a back
// end cannot make the appliance call elsewhere — and, on a secured dial
// plan, only over TLS. host is the name to call it by (leg B's server
// name, or the address).
func (c *call) redirectTarget(u *sip.Uri) (tp router.Transport, dst netip.AddrPort, host string, ok bool) {
	tp = router.TCP
	switch param, _ := u.UriParams.Get("transport"); {
	case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(param, "tls"):
		tp = router.TLS
	case strings.EqualFold(param, "udp"):
		tp = router.UDP
	}
	if c.secured() && tp != router.TLS {
		c.e.log.Info("redirect off TLS on a secured dial plan refused", "call_id", c.b.callID, "contact", u.String())
		return tp, dst, "", false
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if tp == router.TLS {
			port = 5061
		}
	}
	name := strings.Trim(u.Host, "[]")
	addr, err := netip.ParseAddr(name)
	switch {
	case err == nil && addr.Unmap() == c.b.dst.Addr().Unmap():
		host = addr.Unmap().String()
	case err != nil && strings.EqualFold(name, c.b.serverName):
		addr, host = c.b.dst.Addr(), c.b.serverName
	default:
		c.e.log.Info("redirect to another host refused", "call_id", c.b.callID, "contact", u.String())
		return tp, dst, "", false
	}
	return tp, netip.AddrPortFrom(addr.Unmap(), uint16(port)), host, true
}

// escapedUser is u's user part as a Request-URI carries it.
func escapedUser(u *sip.Uri) string {
	var sb strings.Builder
	sipheader.WriteUser(&sb, u.User)
	return sb.String()
}

// contacts are the Contacts of a 3xx, at most maxContacts.
func contacts(res *sip.Response) []*sip.ContactHeader {
	var out []*sip.ContactHeader
	for _, h := range res.GetHeaders("Contact") {
		if ct, ok := h.(*sip.ContactHeader); ok && len(out) < maxContacts {
			out = append(out, ct)
		}
	}
	return out
}

// relayRedirect answers the caller with the back end's 3xx, its Contacts
// as they are (transparent) or rewritten onto our address (rewrite); false
// when no Contact is left to relay.
func (c *call) relayRedirect(res *sip.Response, rewrite bool) bool {
	var extra []string
	for _, ct := range contacts(res) {
		if !rewrite {
			if v := ct.Value(); clean(v) {
				extra = append(extra, "Contact: "+v)
			}
			continue
		}
		tp, dst, host, ok := c.redirectTarget(&ct.Address)
		if !ok {
			continue
		}
		m := marker{
			expires: time.Now().Add(c.e.cfg.MarkerTTL), caller: c.a.in.Source.Addr(),
			tp: tp, addr: dst.Addr(), port: dst.Port(), host: host, user: escapedUser(&ct.Address),
			gateway: c.target.Gateway, dialPlan: c.target.DialPlan, pool: c.target.Pool, backend: c.target.Backend.Name,
			security: c.target.Security, maxGW: c.target.MaxGatewayCalls,
		}
		user, err := c.e.markers.mint(m)
		if err != nil {
			c.e.log.Info("redirect not rewritten", "call_id", c.b.callID, "contact", ct.Address.String(), "err", err)
			continue
		}
		extra = append(extra, markedContact(c.a.in.Transport, c.a.in.Local, user))
	}
	if len(extra) == 0 {
		return false
	}
	c.e.Metrics.Redirects.Add(1)
	c.a.finalLocked(c, res.StatusCode, res.Reason, extra, nil)
	c.end(strconv.Itoa(res.StatusCode) + " " + res.Reason + " from back end, relayed to the caller")
	return true
}

// markedContact is a Contact on our address for leg A with user.
func markedContact(tp router.Transport, local netip.AddrPort, user string) string {
	ct := contactOf(tp, local) // "Contact: <sip:host:port;transport=tcp>"
	i := strings.IndexByte(ct, ':') + 1
	i += strings.IndexByte(ct[i:], ':') + 1 // after the scheme
	return ct[:i] + user + "@" + ct[i:]
}

// marker is what a rewritten Contact's (or Refer-To's) user part
// carries, signed: where the call goes, for whom, until when.
type marker struct {
	kind     markerKind
	expires  time.Time
	caller   netip.Addr // the caller that got the 3xx (the transferee of a REFER): only it may call the marker
	tp       router.Transport
	addr     netip.Addr // where the call goes, as checked when minted: not looked up again
	port     uint16
	host     string // the name to call addr by (TLS server name), or the address
	user     string // escaped
	gateway  string
	dialPlan string
	pool     string
	backend  string
	security router.Security
	maxGW    int
}

// markerKey signs markers: random per engine, so a marker is good for
// one boot of the appliance only.
type markerKey [32]byte

const markerVersion = 2

// markerKind is what a marker was minted for.
type markerKind byte

const (
	markRedirect markerKind = iota // a 3xx Contact (RedirectRewrite)
	markRefer                      // a REFER's Refer-To (ReferRewrite)
)

func (k markerKind) String() string {
	if k == markRefer {
		return "transfer"
	}
	return "redirect"
}

var transports = []router.Transport{router.UDP, router.TCP, router.TLS}

var securities = []router.Security{router.Unsecured, router.SIPSecured, router.Secured}

// errMarkerField is a marker field too long to sign.
var errMarkerField = errors.New("marker field longer than 255 bytes")

// mint returns the user part naming m: prefix, payload and MAC in
// base64url (RFC 4648 §5: only unreserved characters of RFC 3261).
func (k *markerKey) mint(m marker) (string, error) {
	b := []byte{markerVersion, byte(m.kind)}
	b = binary.BigEndian.AppendUint64(b, uint64(m.expires.Unix()))
	a16, d16 := m.caller.As16(), m.addr.As16()
	b = append(b, a16[:]...)
	b = append(b, d16[:]...)
	b = append(b, byte(index(transports, m.tp)), byte(index(securities, m.security)))
	b = binary.BigEndian.AppendUint16(b, m.port)
	b = binary.BigEndian.AppendUint32(b, uint32(max(m.maxGW, 0)))
	for _, s := range []string{m.host, m.user, m.gateway, m.dialPlan, m.pool, m.backend} {
		if len(s) > 255 {
			return "", errMarkerField
		}
		b = append(append(b, byte(len(s))), s...)
	}
	enc := base64.RawURLEncoding
	return markerPrefix + enc.EncodeToString(b) + "." + enc.EncodeToString(k.mac(b)), nil
}

func (k *markerKey) mac(b []byte) []byte {
	h := hmac.New(sha256.New, k[:])
	h.Write(b)
	return h.Sum(nil)[:16]
}

func index[T comparable](list []T, v T) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return 0
}

// Why a marker is refused.
var (
	errMarkerForged  = errors.New("signature does not verify (forged or from another boot)")
	errMarkerExpired = errors.New("expired")
	errMarkerCaller  = errors.New("issued to another caller")
)

// open verifies user as a marker of k and returns what it names.
func (k *markerKey) open(user string, caller netip.Addr, now time.Time) (marker, error) {
	var m marker
	rest, ok := strings.CutPrefix(user, markerPrefix)
	payload, sig, ok2 := strings.Cut(rest, ".")
	enc := base64.RawURLEncoding
	b, err1 := enc.DecodeString(payload)
	mac, err2 := enc.DecodeString(sig)
	// One spelling per marker: the decoder skips CR and LF and ignores
	// trailing bits, so only the canonical encoding is taken.
	if !ok || !ok2 || err1 != nil || err2 != nil || enc.EncodeToString(b) != payload || enc.EncodeToString(mac) != sig ||
		!hmac.Equal(mac, k.mac(b)) {
		return m, errMarkerForged
	}
	// Signed by us: the layout is ours, but read it defensively all the same.
	const fixed = 2 + 8 + 16 + 16 + 2 + 2 + 4
	if len(b) < fixed || b[0] != markerVersion || b[1] > byte(markRefer) {
		return m, errMarkerForged
	}
	m.kind = markerKind(b[1])
	m.expires = time.Unix(int64(binary.BigEndian.Uint64(b[2:10])), 0)
	m.caller = netip.AddrFrom16([16]byte(b[10:26])).Unmap()
	if d := netip.AddrFrom16([16]byte(b[26:42])).Unmap(); !d.IsUnspecified() {
		m.addr = d
	}
	if int(b[42]) >= len(transports) || int(b[43]) >= len(securities) {
		return m, errMarkerForged
	}
	m.tp, m.security = transports[b[42]], securities[b[43]]
	m.port = binary.BigEndian.Uint16(b[44:46])
	m.maxGW = int(binary.BigEndian.Uint32(b[46:50]))
	rest = string(b[fixed:])
	for _, s := range []*string{&m.host, &m.user, &m.gateway, &m.dialPlan, &m.pool, &m.backend} {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return m, errMarkerForged
		}
		*s, rest = rest[1:1+int(rest[0])], rest[1+int(rest[0]):]
	}
	switch {
	case now.After(m.expires):
		return m, errMarkerExpired
	case m.caller != caller.Unmap():
		return m, errMarkerCaller
	}
	return m, nil
}

// Marked reports whether req's Request-URI user is shaped like a marker
// of a rewritten 3xx Contact: a prefix test, so that the front asks
// Redirect (and builds its Inbound) only then.
func Marked(req *sip.Request) bool { return strings.HasPrefix(req.Recipient.User, markerPrefix) }

// Redirect takes a new INVITE whose Request-URI user is a marker of a
// rewritten 3xx Contact (RedirectRewrite) or Refer-To (ReferRewrite) and
// reports true; false for any other INVITE (the front routes it). A valid
// marker's call is proxied to the target it names — as a call of the pool
// that redirected, or to the transfer target — at the address checked
// when it was minted; a forged, foreign or expired one is refused — 403,
// or 404 once expired — and logged: the marker is no open relay. call is
// the call as the front parsed it (its Diversion and History-Info for leg
// B).
func (e *Engine) Redirect(req *sip.Request, in Inbound, call *router.Call) bool {
	if !Marked(req) {
		return false
	}
	m, err := e.markers.open(req.Recipient.User, in.Source.Addr(), time.Now())
	if err != nil {
		code, phrase := 403, "Forbidden"
		if errors.Is(err, errMarkerExpired) {
			code, phrase = 404, "Not Found"
		}
		e.Metrics.Refused.Add(1)
		// A forged marker's kind is not known: "marker refused" covers
		// both; a genuine one's is logged as what it is.
		e.log.Info("marker refused", "kind", kindOf(m, err), "call_id", callIDOf(req), "source", in.Source, "status", code, "why", err.Error())
		in.Reply.Send(response(req, in.Source, token(), code, phrase, []string{e.warning("marker " + err.Error())}, nil))
		return true
	}
	be := &router.Backend{Name: m.backend, Host: m.host}
	switch m.tp {
	case router.UDP:
		be.UDPPort = int(m.port)
	case router.TLS:
		be.TLSPort = int(m.port)
	default:
		be.TCPPort = int(m.port)
	}
	e.log.Info("marker followed", "kind", m.kind.String(), "call_id", callIDOf(req), "source", in.Source, "pool", m.pool, "backend", m.backend)
	e.Invite(req, in, Target{Gateway: m.gateway, DialPlan: m.dialPlan, Pool: m.pool, Backend: be, Addr: m.addr,
		Security: m.security, User: m.user, MaxGatewayCalls: m.maxGW, Call: call})
	return true
}

// kindOf names the kind of a refused marker for the log: "" when it did
// not verify, so what it claims to be is not known.
func kindOf(m marker, err error) string {
	if errors.Is(err, errMarkerForged) {
		return ""
	}
	return m.kind.String()
}

func callIDOf(req *sip.Request) string {
	if id := req.CallID(); id != nil {
		return string(*id)
	}
	return ""
}
