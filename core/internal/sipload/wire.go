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
	b = append(b, "Via: SIP/2.0/"...)
	b = append(b, l.transport...)
	b = append(b, ' ')
	b = l.appendHostPort(b)
	b = append(b, ";branch=z9hG4bK-"...)
	b = l.appendTagged(b, i)
	b = append(b, "\r\nFrom: <sip:"...)
	b = append(b, ln.Caller...)
	b = append(b, '@')
	b = l.appendHostPort(b)
	b = append(b, ">;tag="...)
	b = l.appendTagged(b, i)
	return append(b, "\r\n"...)
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

// response is what the receive loop reads of an answer; the byte slices
// point into the message.
type response struct {
	code          int
	callID        []byte
	cseq          []byte
	to            []byte
	contact       []byte // the first Contact header's value
	contentLength int    // -1 when absent
	headerLen     int    // bytes up to and including the blank line
}

// parseMessage reads msg's start line and the headers the checks need.
// It returns false when msg holds no complete head yet (no blank line);
// r.code is 0 when the start line is not a SIP status line (a request, a
// torn line) and r.contentLength -2 when that header is malformed.
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
	}
	head = head[nl+2:]
	for len(head) > 0 {
		nl = bytes.Index(head, crlf)
		line, head = head[:nl], head[nl+2:]
		// Folded continuation lines (RFC 3261 7.3.1) are obsolete and
		// not in any answer the checks read.
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
		case isHeader(name, "to", "t"):
			r.to = value
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
	return true
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
func isInviteCSeq(v []byte) bool {
	n, m, ok := bytes.Cut(v, []byte(" "))
	return ok && string(n) == "1" && string(bytes.TrimLeft(m, " \t")) == "INVITE"
}
