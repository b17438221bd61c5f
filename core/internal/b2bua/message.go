package b2bua

import (
	"crypto/rand"
	"encoding/hex"
	"iter"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/sipheader"
	"github.com/umedge/umedge/core/sdk/router"
)

// Every message the engine sends is written here, from scratch. What one
// leg sent reaches the other only through these functions, which copy
// nothing but the fields named.

// copied are the headers of the caller's INVITE leg B gets: call data the
// UM side needs (who diverted the call, who calls, privacy), none of them
// addressing the caller's network.
// Diversion is not among them: it is written anew from what the router
// parsed (diversions).
var copied = []string{"History-Info", "P-Asserted-Identity", "Privacy", "Subject", "Priority"}

// diversions are leg B's Diversion headers (RFC 5806, R-SBC-9): the
// caller's, parsed, without duplicates, on our host; or, when the caller
// sent only History-Info, the one its entries name, with the reason the
// cause maps to. Malformed or repeated Diversions, which Exchange refuses
// (event 1021), never reach the back end.
func diversions(call *router.Call, host string) []string {
	if call == nil {
		return nil
	}
	line := func(user, reason string) string {
		var sb strings.Builder
		sb.WriteString("Diversion: <sip:")
		sipheader.WriteUser(&sb, user)
		sb.WriteString("@" + host + ">")
		if reason != "" && isToken(reason) {
			sb.WriteString(";reason=" + reason)
		}
		return sb.String()
	}
	var out []string
	seen := map[router.Diversion]bool{}
	for _, d := range call.Diversion {
		if d.User == "" || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, line(d.User, d.Reason))
	}
	if len(out) > 0 {
		return out
	}
	number, via, ok := router.DivertedNumber(call)
	if !ok || via != "History-Info" || number == "" {
		return nil
	}
	reason := "unknown"
	for _, h := range call.HistoryInfo {
		if r, ok := causeReasons[h.Cause]; ok {
			reason = r
		}
	}
	return []string{line(number, reason)}
}

// causeReasons map History-Info causes (RFC 4458) to Diversion reasons
// (RFC 5806).
var causeReasons = map[string]string{
	"302": "unconditional", "486": "user-busy", "408": "no-answer", "480": "unavailable",
	"487": "no-answer", "503": "unavailable", "404": "unknown",
}

func isToken(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.!%*_+`'~", c)) {
			return false
		}
	}
	return s != ""
}

// clean reports whether a header value may be copied to the other leg:
// no control characters but HTAB. sipgo keeps a bare LF or a NUL inside a
// value; passed on, a back end whose parser ends lines at LF would read a
// header the caller wrote.
func clean(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// sessionTimer returns the session-timer headers (RFC 4028) of m that
// pass to the other leg, so that the two ends run their timer through us:
// Session-Expires and Min-SE as they are, and of Supported and Require
// only "timer" (other extensions, 100rel above all, are not ours to
// promise).
func sessionTimer(m message) []string {
	var out []string
	for _, name := range []string{"Session-Expires", "Min-SE"} {
		if v := headerValue(m, name); v != "" && clean(v) {
			out = append(out, name+": "+v)
		}
	}
	for _, name := range []string{"Supported", "Require"} {
		for h := range named(m, name) {
			if hasOption(h.Value(), "timer") {
				out = append(out, name+": timer")
				break
			}
		}
	}
	return out
}

func hasOption(list, opt string) bool {
	for _, o := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(o), opt) {
			return true
		}
	}
	return false
}

// allow is what both legs are told the engine takes in a dialog.
const allow = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY, MESSAGE"

const sdpType = "application/sdp"

// token is a fresh random token for tags, branches and Call-IDs: 96 bits,
// so that nobody who has not seen a dialog's messages can forge its ids.
func token() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// wire is a message being written.
// wire builds one message in a scratch buffer of a pool and hands out an
// exact-size copy: one allocation per message, and nothing unused kept
// with an ended call for its 32 s (a bytes.Buffer doubling from 64 bytes
// took five allocations and left up to half of its last one empty).
type wire struct{ b *[]byte }

var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func (w *wire) line(parts ...string) {
	w.write(parts...)
	_, _ = w.WriteString("\r\n")
}

// write appends parts, no line end.
func (w *wire) write(parts ...string) {
	for _, p := range parts {
		_, _ = w.WriteString(p)
	}
}

// WriteString appends s: the wire is an io.StringWriter, so that sipgo's
// headers write themselves into it (StringWrite) instead of into a string
// of their own first.
func (w *wire) WriteString(s string) (int, error) {
	if w.b == nil {
		w.b = scratch.Get().(*[]byte)
	}
	*w.b = append(*w.b, s...)
	return len(s), nil
}

// int appends n in decimal.
func (w *wire) int(n int) {
	if w.b == nil {
		w.b = scratch.Get().(*[]byte)
	}
	*w.b = strconv.AppendInt(*w.b, int64(n), 10)
}

// end writes an SDP body (none when empty) and returns the message.
func (w *wire) end(body []byte) []byte { return w.endTyped(sdpType, body) }

// endTyped writes a body of type ctype (none when empty) and returns the
// message. The wire is empty again afterwards.
func (w *wire) endTyped(ctype string, body []byte) []byte {
	if len(body) > 0 {
		w.line("Content-Type: ", ctype)
	}
	w.line("Content-Length: ", strconv.Itoa(len(body)))
	head := *w.b
	msg := make([]byte, len(head)+2+len(body))
	n := copy(msg, head)
	n += copy(msg[n:], "\r\n")
	copy(msg[n:], body)
	if cap(head) <= 64<<10 { // one huge message does not pin its buffer in the pool
		*w.b = head[:0]
		scratch.Put(w.b)
	}
	w.b = nil
	return msg
}

// transportName is the Via transport token.
func transportName(tp router.Transport) string {
	switch tp {
	case router.TCP:
		return "TCP"
	case router.TLS:
		return "TLS"
	}
	return "UDP"
}

// hostPort writes an address as a SIP host:port (IPv6 in brackets).
func hostPort(a netip.AddrPort) string {
	if a.Addr().Is6() {
		return "[" + a.Addr().String() + "]:" + strconv.Itoa(int(a.Port()))
	}
	return a.String()
}

// via writes our Via header line for a request.
func (w *wire) via(tp router.Transport, local netip.AddrPort, branch string) {
	w.write("Via: SIP/2.0/", transportName(tp), " ")
	w.hostPort(local)
	w.line(";branch=z9hG4bK", branch, ";rport")
}

// hostPort writes an address as a SIP host:port (IPv6 in brackets).
func (w *wire) hostPort(a netip.AddrPort) {
	if w.b == nil {
		w.b = scratch.Get().(*[]byte)
	}
	if a.Addr().Is6() {
		*w.b = append(*w.b, '[')
		*w.b = a.Addr().AppendTo(*w.b)
		*w.b = append(*w.b, ']', ':')
		*w.b = strconv.AppendUint(*w.b, uint64(a.Port()), 10)
		return
	}
	*w.b = a.AppendTo(*w.b)
}

// cseq writes a CSeq header line.
func (w *wire) cseq(n uint32, method ...string) {
	_, _ = w.WriteString("CSeq: ")
	w.int(int(n))
	w.line(method...)
}

// contactOf is our Contact for a leg.
func contactOf(tp router.Transport, local netip.AddrPort) string {
	scheme, param := "sip:", ""
	switch tp {
	case router.TCP:
		param = ";transport=tcp"
	case router.TLS:
		scheme, param = "sips:", ""
	}
	return "Contact: <" + scheme + hostPort(local) + param + ">"
}

// response writes a response to req, a request that came from src (RFC
// 3261 §8.2.6): its Vias, the first with received and rport; From, To
// (with toTag added when To has none and toTag is set), Call-ID, CSeq;
// then extra lines and the body.
func response(req *sip.Request, src netip.AddrPort, toTag string, code int, phrase string, extra []string, body []byte) []byte {
	var w wire
	head(&w, req, src, toTag, code, phrase, extra)
	return w.end(body)
}

// head writes a response's start line and headers into w, each header
// straight from sipgo's parsed form (no string per header on the way).
func head(w *wire, req *sip.Request, src netip.AddrPort, toTag string, code int, phrase string, extra []string) {
	_, _ = w.WriteString("SIP/2.0 ")
	w.int(code)
	w.line(" ", phrase)
	first := true
	for h := range named(req, "Via") {
		if v, ok := h.(*sip.ViaHeader); ok && first {
			writeReceived(w, v, src)
		} else {
			h.StringWrite(w)
		}
		first = false
		w.line()
	}
	if from := req.From(); from != nil {
		from.StringWrite(w)
		w.line()
	}
	if to := req.To(); to != nil {
		to.StringWrite(w)
		if _, ok := to.Params.Get("tag"); !ok && toTag != "" {
			w.line(";tag=", toTag)
		} else {
			w.line()
		}
	}
	if id := req.CallID(); id != nil {
		w.line("Call-ID: ", string(*id))
	}
	if cs := req.CSeq(); cs != nil {
		_, _ = w.WriteString("CSeq: ")
		w.int(int(cs.SeqNo))
		w.line(" ", string(cs.MethodName))
	}
	for _, e := range extra {
		w.line(e)
	}
}

// writeReceived writes the top Via of a request from src as
// sipheader.Received returns it — received added when the sent-by host
// is not src's address or rport was asked for, an empty rport filled with
// src's port (RFC 3261 §18.2.1, RFC 3581 §4) — without cloning it.
func writeReceived(w *wire, v *sip.ViaHeader, src netip.AddrPort) {
	rport, hasRport := v.Params.Get("rport")
	var ipb [64]byte
	ip := src.Addr().Unmap().AppendTo(ipb[:0])
	sameHost := v.Host == string(ip)
	fillRport := hasRport && rport == ""
	if !fillRport && sameHost {
		v.StringWrite(w)
		return
	}
	addReceived := !sameHost || hasRport
	w.write("Via: ", v.ProtocolName, "/", v.ProtocolVersion, "/", v.Transport, " ")
	if a, err := netip.ParseAddr(v.Host); err == nil && a.Is6() && !a.Is4In6() {
		w.write("[", v.Host, "]") // as sipgo writes an IPv6 host
	} else {
		w.write(v.Host)
	}
	if v.Port > 0 {
		_, _ = w.WriteString(":")
		w.int(v.Port)
	}
	hadReceived := false
	for _, kv := range v.Params {
		val := kv.V
		switch {
		case kv.K == "received" && addReceived:
			val, hadReceived = string(ip), true
		case kv.K == "rport" && fillRport:
			_, _ = w.WriteString(";rport=")
			w.int(int(src.Port()))
			continue
		}
		writeParam(w, kv.K, val)
	}
	if addReceived && !hadReceived {
		_, _ = w.WriteString(";received=")
		*w.b = append(*w.b, ip...)
	}
}

// writeParam writes ";key=value" as sipgo writes a header parameter:
// quoted when the value holds a space or tab, bare key when it is empty.
func writeParam(w *wire, key, val string) {
	_, _ = w.WriteString(";")
	_, _ = w.WriteString(key)
	switch {
	case val == "":
	case strings.ContainsAny(val, " \t"):
		w.write(`="`, val, `"`)
	default:
		_, _ = w.WriteString("=")
		_, _ = w.WriteString(val)
	}
}

// responseTyped is response with a body of another type than SDP.
func responseTyped(req *sip.Request, src netip.AddrPort, code int, phrase string, extra []string, ctype string, body []byte) []byte {
	var w wire
	head(&w, req, src, "", code, phrase, extra)
	return w.endTyped(ctype, body)
}

// fromUser is the caller's user part for leg B's From, escaped.
func fromUser(req *sip.Request) string {
	from := req.From()
	if from == nil {
		return ""
	}
	u := from.Address.User
	if strings.EqualFold(from.Address.Scheme, "tel") {
		u = from.Address.Raw()
	}
	var sb strings.Builder
	sipheader.WriteUser(&sb, u)
	return sb.String()
}

// displayName is the caller's display name as a quoted string, or "": a
// name is call data (caller ID), but only its printable characters
// other than quote and backslash pass.
func displayName(req *sip.Request) string {
	from := req.From()
	if from == nil || from.DisplayName == "" {
		return ""
	}
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range strings.Trim(from.DisplayName, `"`) {
		if r >= 0x20 && r != 0x7f && r != '"' && r != '\\' {
			sb.WriteRune(r)
		}
	}
	sb.WriteString(`" `)
	return sb.String()
}

// warningText makes text safe inside a Warning's quoted string.
func warningText(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if r >= 0x20 && r != 0x7f && r != '"' && r != '\\' {
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// maxForwards is what leg B's INVITE carries: one less than the caller's,
// 70 when it had none; ok is false when the caller's was 0 (483).
func maxForwards(req *sip.Request) (n int, ok bool) {
	h := firstNamed(req, "Max-Forwards")
	if h == nil {
		return 70, true
	}
	v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
	if err != nil || v <= 0 {
		return 0, false
	}
	return min(v-1, 70), true
}

// message is what the helpers below read of a request or response.
type message interface {
	Headers() []sip.Header
	Body() []byte
}

// named yields m's headers called name (any case), in order. sipgo's
// GetHeaders and GetHeader lower-case every header name they pass that is
// not one of a few common ones (an allocation each: a Diversion, a
// P-Asserted-Identity) and GetHeaders allocates its result; the engine
// looks headers up several times per message.
func named(m message, name string) iter.Seq[sip.Header] {
	return func(yield func(sip.Header) bool) {
		for _, h := range m.Headers() {
			if strings.EqualFold(h.Name(), name) && !yield(h) {
				return
			}
		}
	}
}

// firstNamed is m's first header called name (any case), or nil.
func firstNamed(m message, name string) sip.Header {
	for h := range named(m, name) {
		return h
	}
	return nil
}

func headerValue(m message, name string) string {
	if h := firstNamed(m, name); h != nil {
		return h.Value()
	}
	return ""
}

func isSDP(m message) bool {
	ct := headerValue(m, "Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), sdpType) && len(m.Body()) > 0
}

// sdpOf is m's SDP body, or nil.
func sdpOf(m message) []byte {
	if isSDP(m) {
		return m.Body()
	}
	return nil
}

func tagOf(p sip.HeaderParams) string {
	t, _ := p.Get("tag")
	return t
}

func branchOf(req *sip.Request) string {
	if v := req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		return b
	}
	return ""
}
