package sipload

import (
	"bytes"
	"github.com/umedge/umedge/core/internal/sipheader"
	"strconv"
)

// local is what the INVITEs say about the UAC: its address and port (as
// Via, From and Contact carry them), its transport, and the run's token
// that makes Call-IDs, tags and branches unique across runs.
type local struct {
	host      string // IP as it appears in a URI: 127.0.0.1 or [::1]
	ipVersion string // "4" or "6", for SDP
	ip        string // IP without brackets, for SDP
	port      int
	transport string // "UDP" or "TCP", for Via and Contact
	remote    string // the target host:port, for the Request-URI and To
	token     string
}

// sdp is the offer of every INVITE (SIPp's uac_mix.xml: PCMU and
// telephone-event), after local's address.
func (l *local) sdp() string {
	return "v=0\r\n" +
		"o=- 1 1 IN IP" + l.ipVersion + " " + l.ip + "\r\n" +
		"s=-\r\n" +
		"c=IN IP" + l.ipVersion + " " + l.ip + "\r\n" +
		"t=0 0\r\n" +
		"m=audio 9 RTP/AVP 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n"
}

// appendInvite appends call i's INVITE for line ln, with the SDP sdp, to b.
// Call i's Call-ID is "<i>-<token>@<ip>", its From tag "<token>-<i>" and
// its branch "z9hG4bK-<token>-<i>": the receive loop finds the call by
// the number that leads its Call-ID.
func (l *local) appendInvite(b []byte, i int, ln *Line, sdp string) []byte {
	b = l.appendStart(b, "INVITE", i, ln)
	b = append(b, "To: <sip:"...)
	b = append(b, ln.Called...)
	b = append(b, '@')
	b = append(b, l.remote...)
	b = append(b, ">\r\nCall-ID: "...)
	b = l.appendCallID(b, i)
	b = append(b, "\r\nCSeq: 1 INVITE\r\nContact: <sip:"...)
	b = append(b, ln.Caller...)
	b = append(b, '@')
	b = l.appendHostPort(b)
	b = append(b, ";transport="...)
	b = append(b, l.transport...)
	b = append(b, ">\r\nMax-Forwards: 70\r\n"...)
	if ln.Reason != "" {
		b = append(b, "Diversion: <sip:"...)
		b = append(b, ln.Diverted...)
		b = append(b, '@')
		b = append(b, l.host...)
		b = append(b, ">;reason="...)
		b = append(b, ln.Reason...)
		b = append(b, ";counter=1\r\n"...)
	}
	b = append(b, "User-Agent: umedge-sipload\r\nContent-Type: application/sdp\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(sdp)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, sdp...)
}

// appendAck appends the ACK of call i's non-2xx final answer (RFC 3261
// 17.1.1.3: the INVITE's Request-URI, Via branch, From, Call-ID and CSeq
// number, the answer's To) to b. A 2xx, which the mix never expects, is
// ACKed the same way so that the server stops resending it.
func (l *local) appendAck(b []byte, i int, ln *Line, to []byte) []byte {
	b = l.appendStart(b, "ACK", i, ln)
	b = append(b, "To: "...)
	b = append(b, to...)
	b = append(b, "\r\nCall-ID: "...)
	b = l.appendCallID(b, i)
	return append(b, "\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
}

// appendStart appends call i's request line for method and its Via and From.
func (l *local) appendStart(b []byte, method string, i int, ln *Line) []byte {
	b = append(b, method...)
	b = append(b, " sip:"...)
	b = append(b, ln.Called...)
	b = append(b, '@')
	b = append(b, l.remote...)
	b = append(b, " SIP/2.0\r\n"...)
	return l.appendViaFrom(b, i, ln, "")
}

// appendViaFrom appends call i's Via, whose branch ends in suffix, and From.
func (l *local) appendViaFrom(b []byte, i int, ln *Line, suffix string) []byte {
	b = append(b, "Via: SIP/2.0/"...)
	b = append(b, l.transport...)
	b = append(b, ' ')
	b = l.appendHostPort(b)
	b = append(b, ";branch=z9hG4bK-"...)
	b = l.appendTagged(b, i)
	b = append(b, suffix...)
	b = append(b, "\r\nFrom: <sip:"...)
	b = append(b, ln.Caller...)
	b = append(b, '@')
	b = l.appendHostPort(b)
	b = append(b, ">;tag="...)
	b = l.appendTagged(b, i)
	return append(b, "\r\n"...)
}

// appendInDialog appends a request of call i's dialog (RFC 3261 12.2.1.1)
// to b: method to the remote target with the route set as Route, the
// dialog's To (with the callee's tag) and CSeq number cseq, on a branch of
// its own (suffix; an ACK of a 2xx is a transaction of its own, 17.1.1.3).
func (l *local) appendInDialog(b []byte, method string, cseq, i int, ln *Line, target []byte, routes [][]byte, to []byte, suffix string) []byte {
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " SIP/2.0\r\n"...)
	b = l.appendViaFrom(b, i, ln, suffix)
	b = append(b, "To: "...)
	b = append(b, to...)
	b = append(b, "\r\nCall-ID: "...)
	b = l.appendCallID(b, i)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendInt(b, int64(cseq), 10)
	b = append(b, ' ')
	b = append(b, method...)
	b = append(b, "\r\n"...)
	for k, r := range routes {
		if k == 0 {
			b = append(b, "Route: "...)
		} else {
			b = append(b, ", "...)
		}
		b = append(b, r...)
		if k == len(routes)-1 {
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
}

func (l *local) appendHostPort(b []byte) []byte {
	b = append(b, l.host...)
	b = append(b, ':')
	return strconv.AppendInt(b, int64(l.port), 10)
}

// appendTagged appends "<token>-<i>", call i's tag and branch suffix.
func (l *local) appendTagged(b []byte, i int) []byte {
	b = append(b, l.token...)
	b = append(b, '-')
	return strconv.AppendInt(b, int64(i), 10)
}

func (l *local) appendCallID(b []byte, i int) []byte {
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, '-')
	b = append(b, l.token...)
	b = append(b, '@')
	return append(b, l.ip...)
}

// callIndex returns the call a Call-ID names: "<i>-<token>@<ip>" of this
// run, i below n.
func (l *local) callIndex(callID []byte, n int) (int, bool) {
	i, j := 0, 0
	for ; j < len(callID) && callID[j] >= '0' && callID[j] <= '9'; j++ {
		i = i*10 + int(callID[j]-'0')
		if i >= n {
			return 0, false
		}
	}
	rest := callID[j:]
	if j == 0 || len(rest) != 2+len(l.token)+len(l.ip) || rest[0] != '-' ||
		string(rest[1:1+len(l.token)]) != l.token || rest[1+len(l.token)] != '@' ||
		string(rest[2+len(l.token):]) != l.ip {
		return 0, false
	}
	return i, true
}

// maxVias and maxRoutes bound the Via and Record-Route header lines a
// message may carry; a message with more is taken as unexpected.
const (
	maxVias   = 8
	maxRoutes = 8
)

// response is what the receive loops read of a message (an answer for
// the UAC, a request for the UAS); the byte slices point into the message.
type response struct {
	code          int
	method        []byte // a request's method; nil for an answer
	callID        []byte
	cseq          []byte
	from          []byte
	to            []byte
	contact       []byte // the first Contact header's value
	contentLength int    // -1 when absent
	headerLen     int    // bytes up to and including the blank line
	body          []byte // what msg holds of the body
	// via[:nVia] and route[:nRoute] are the values of the Via and
	// Record-Route header lines, in order (a line's comma-separated
	// entries kept together); tooMany is set when there were more than
	// the arrays hold. (Counts, not slices of the arrays: a response
	// pointing into itself would not stay on the stack.)
	via          [maxVias][]byte
	route        [maxRoutes][]byte
	nVia, nRoute int
	tooMany      bool
}

func (r *response) vias() [][]byte   { return r.via[:r.nVia] }
func (r *response) routes() [][]byte { return r.route[:r.nRoute] }

// parseMessage reads msg's start line and the headers the checks need.
// It returns false when msg holds no complete head yet (no blank line);
// r.code is 0 when the start line is not a SIP status line (a request, a
// torn line: a request's method is then in r.method) and r.contentLength
// -2 when that header is malformed.
func parseMessage(msg []byte, r *response) bool {
	*r = response{contentLength: -1}
	end := bytes.Index(msg, crlf2)
	if end < 0 {
		return false
	}
	r.headerLen = end + 4
	head := msg[:end+2]
	nl := bytes.Index(head, crlf)
	line := head[:nl]
	if len(line) >= 12 && string(line[:8]) == "SIP/2.0 " && line[11] == ' ' {
		if code, ok := sipheader.Number(line[8:11]); ok && code >= 100 && code <= 699 {
			r.code = code
		}
	} else if sp := bytes.IndexByte(line, ' '); sp > 0 && bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		r.method = line[:sp]
	}
	head = head[nl+2:]
	for len(head) > 0 {
		nl = bytes.Index(head, crlf)
		line, head = head[:nl], head[nl+2:]
		// Folded continuation lines (RFC 3261 7.3.1) are obsolete and
		// not in any message the checks read.
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		value := bytes.Trim(line[colon+1:], " \t")
		switch {
		case isHeader(name, "call-id", "i"):
			r.callID = value
		case isHeader(name, "cseq", ""):
			r.cseq = value
		case isHeader(name, "from", "f"):
			r.from = value
		case isHeader(name, "to", "t"):
			r.to = value
		case isHeader(name, "via", "v"):
			r.nVia = r.addHeader(r.via[:], r.nVia, value)
		case isHeader(name, "record-route", ""):
			r.nRoute = r.addHeader(r.route[:], r.nRoute, value)
		case isHeader(name, "contact", "m"):
			if r.contact == nil {
				r.contact = value
			}
		case isHeader(name, "content-length", "l"):
			n, ok := sipheader.Number(value)
			if !ok {
				n = -2
			}
			r.contentLength = n
		}
	}
	r.body = msg[r.headerLen:min(len(msg), r.headerLen+max(r.contentLength, 0))]
	return true
}

// addHeader puts v at arr[n] and returns n+1, or sets tooMany when arr is full.
func (r *response) addHeader(arr [][]byte, n int, v []byte) int {
	if n == len(arr) {
		r.tooMany = true
		return n
	}
	arr[n] = v
	return n + 1
}

var (
	crlf  = []byte("\r\n")
	crlf2 = []byte("\r\n\r\n")
)

// isHeader reports whether name is the header long (lower case) or its
// compact form short, in any case.
func isHeader(name []byte, long, short string) bool {
	if len(name) == 1 && short != "" {
		return name[0]|0x20 == short[0]
	}
	if len(name) != len(long) {
		return false
	}
	for i, c := range name {
		if c|0x20 != long[i] {
			return false
		}
	}
	return true
}

// contactTarget returns the user@host:port of a Contact value
// "<sip:user@host:port;transport=tcp>…", as uac_mix.xml's check reads it
// (^[ \t]*<sip:([^;>]+);transport=tcp>), and false for any other form.
func contactTarget(v []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(v, []byte("<sip:"))
	if !ok {
		return nil, false
	}
	end := bytes.IndexAny(rest, ";>")
	if end <= 0 || !bytes.HasPrefix(rest[end:], []byte(";transport=tcp>")) {
		return nil, false
	}
	return rest[:end], true
}

// isInviteCSeq reports whether a CSeq value is the INVITE's, "1 INVITE".
func isInviteCSeq(v []byte) bool { return isCSeq(v, 1, "INVITE") }

// routeSet appends the route set a UAC takes from an answer's
// Record-Route values (RFC 3261 12.1.2: the entries in reverse order) to
// set, each entry "<uri;params>", and reports false when there are more
// than set's capacity or an entry is not a name-addr.
func routeSet(set [][]byte, rr [][]byte) ([][]byte, bool) {
	for k := len(rr) - 1; k >= 0; k-- {
		v := rr[k]
		// The entries of one line, last first: split on the commas
		// outside <…>.
		end := len(v)
		for j := len(v) - 1; j >= -1; j-- {
			if j >= 0 && v[j] != ',' {
				continue
			}
			if j >= 0 && bytes.LastIndexByte(v[:j], '<') > bytes.LastIndexByte(v[:j], '>') {
				continue // a comma inside <…>
			}
			e := bytes.Trim(v[j+1:end], " \t")
			end = j
			if len(e) < 2 || e[0] != '<' || bytes.IndexByte(e, '>') < 0 || len(set) == cap(set) {
				return set, false
			}
			set = append(set, e)
		}
	}
	return set, true
}

// uriOf returns the URI of a name-addr or addr-spec value: inside <…>, or
// up to the header parameters.
func uriOf(v []byte) []byte {
	if lt := bytes.IndexByte(v, '<'); lt >= 0 {
		if gt := bytes.IndexByte(v[lt:], '>'); gt > 0 {
			return v[lt+1 : lt+gt]
		}
		return nil
	}
	if semi := bytes.IndexByte(v, ';'); semi >= 0 {
		return v[:semi]
	}
	return v
}

// uriHostPort returns the host (IPv6 without brackets) and port of a sip:
// URI, 5060 when it names none, and false for anything else.
func uriHostPort(uri []byte) ([]byte, int, bool) {
	rest, ok := bytes.CutPrefix(uri, []byte("sip:"))
	if !ok {
		return nil, 0, false
	}
	if at := bytes.IndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	if end := bytes.IndexAny(rest, ";?>"); end >= 0 {
		rest = rest[:end]
	}
	host, port := rest, []byte(nil)
	if len(rest) > 0 && rest[0] == '[' {
		rb := bytes.IndexByte(rest, ']')
		if rb < 0 {
			return nil, 0, false
		}
		host, port = rest[1:rb], rest[rb+1:]
	} else if colon := bytes.IndexByte(rest, ':'); colon >= 0 {
		host, port = rest[:colon], rest[colon:]
	}
	if len(host) == 0 {
		return nil, 0, false
	}
	if len(port) == 0 {
		return host, 5060, true
	}
	n, ok := sipheader.Number(port[1:])
	if port[0] != ':' || !ok || n < 1 || n > 65535 {
		return nil, 0, false
	}
	return host, n, true
}

// isLooseRoute reports whether a route entry "<uri;…>" carries lr.
func isLooseRoute(entry []byte) bool {
	uri := uriOf(entry)
	for {
		semi := bytes.IndexByte(uri, ';')
		if semi < 0 {
			return false
		}
		uri = uri[semi+1:]
		p := uri
		if end := bytes.IndexAny(p, ";?"); end >= 0 {
			p = p[:end]
		}
		if isHeader(p, "lr", "") || bytes.HasPrefix(p, []byte("lr=")) {
			return true
		}
	}
}

// isCSeq reports whether a CSeq value is number n of method.
func isCSeq(v []byte, n int, method string) bool {
	num, m, ok := bytes.Cut(v, []byte(" "))
	got, nok := sipheader.Number(num)
	return ok && nok && got == n && string(bytes.TrimLeft(m, " \t")) == method
}
