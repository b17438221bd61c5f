package sipfront

import (
	"bytes"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/sipheader"
	"github.com/umedge/umedge/core/sdk/router"
)

// writeResponse writes a response to req (a final one, or 100 Trying) (RFC 3261 §8.2.6): Via,
// From, To, Call-ID and CSeq copied, a To tag added, then extra header
// lines, and no body.
func writeResponse(out *bytes.Buffer, req *sip.Request, p *peer, vias []sip.Header, code int, phrase string, extra ...string) {
	out.WriteString("SIP/2.0 ")
	out.WriteString(strconv.Itoa(code))
	out.WriteByte(' ')
	out.WriteString(phrase)
	out.WriteString("\r\n")
	for i, h := range vias {
		if v, ok := h.(*sip.ViaHeader); ok && i == 0 {
			v = sipheader.Received(v, p.src)
			v.StringWrite(out)
		} else {
			h.StringWrite(out)
		}
		out.WriteString("\r\n")
	}
	if from := req.From(); from != nil {
		from.StringWrite(out)
		out.WriteString("\r\n")
	}
	if to := req.To(); to != nil {
		to.StringWrite(out)
		if _, ok := to.Params.Get("tag"); !ok {
			out.WriteString(";tag=")
			out.WriteString(toTag(req))
		}
		out.WriteString("\r\n")
	}
	if id := req.CallID(); id != nil {
		id.StringWrite(out)
		out.WriteString("\r\n")
	}
	req.CSeq().StringWrite(out)
	out.WriteString("\r\n")
	for _, e := range extra {
		out.WriteString(e)
		out.WriteString("\r\n")
	}
	out.WriteString("Server: umedge\r\nContent-Length: 0\r\n\r\n")
}

// responseAddr is where a UDP response to req goes (RFC 3261 §18.2.2 with
// RFC 3581 §4): the source address, and the source port when the client
// asked for rport, else the sent-by port. maddr is ignored: answering to an
// address the request names is a reflection attack vector.
func responseAddr(req *sip.Request, p *peer) netip.AddrPort {
	if p.transport != router.UDP {
		return p.src
	}
	v := req.Via()
	if v == nil {
		return p.src
	}
	if _, ok := v.Params.Get("rport"); ok {
		return p.src
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(p.src.Addr(), uint16(port))
}

// toTag derives the To tag from the request, so that a retransmission gets
// the same tag without the server keeping state (RFC 3261 §19.3 only asks
// for global uniqueness, which Call-ID, From tag and branch give).
func toTag(req *sip.Request) string {
	h := fnv.New64a()
	if id := req.CallID(); id != nil {
		_, _ = h.Write([]byte(*id))
	}
	if from := req.From(); from != nil {
		if tag, ok := from.Params.Get("tag"); ok {
			_, _ = h.Write([]byte(tag))
		}
	}
	if branch, ok := req.Via().Params.Get("branch"); ok {
		_, _ = h.Write([]byte(branch))
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// rawAnswer answers a request sipgo could not parse, copying the headers
// a response needs from the raw text: 505 for another protocol version,
// 416 for a Request-URI scheme that is not sip, sips or tel, else 400
// (RFC 3261 §8.2.1, §8.1.3.3). It returns false when the data is no
// request or lacks a Via or CSeq: no response could reach the client or
// be matched, so the message is dropped.
func rawAnswer(out *bytes.Buffer, data []byte, server, detail string) bool {
	return rawReply(out, data, 0, "", server, detail)
}

// rawTooLarge answers 513 Message Too Large (RFC 3261 §21.5.14) to a
// request the parser refused for its size, from the raw text: data is the
// message's first bytes, as much as was kept. Like rawAnswer it returns
// false when no response can be formed.
func rawTooLarge(out *bytes.Buffer, data []byte, server, detail string) bool {
	return rawReply(out, data, 513, "Message Too Large", server, detail)
}

// rawReply is rawAnswer with the status given; code 0 derives it.
func rawReply(out *bytes.Buffer, data []byte, code int, phrase, server, detail string) bool {
	out.Reset()
	head := data
	if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
		head = head[:i]
	}
	lines := strings.Split(string(head), "\r\n")
	start := strings.Fields(lines[0])
	if len(lines) < 2 || len(start) < 3 || strings.HasPrefix(start[0], "SIP/") {
		return false
	}
	scheme, _, _ := strings.Cut(start[1], ":")
	switch {
	case code != 0:
	case len(start) != 3 || strings.Count(lines[0], " ") != 2:
		code, phrase = 400, "Bad Request"
		// Extra white space in the Request-Line (RFC 4475 §3.1.2.8-10).
	case start[2] != "SIP/2.0":
		code, phrase = 505, "Version Not Supported"
	case isScheme(scheme) && !slices.Contains([]string{"sip", "sips", "tel"}, strings.ToLower(scheme)):
		code, phrase = 416, "Unsupported URI Scheme"
	default:
		code, phrase = 400, "Bad Request"
	}
	var vias []string
	one := map[string]string{}
	for _, l := range lines[1:] {
		i := strings.IndexByte(l, ':')
		if i <= 0 || strings.IndexByte(l, 0) >= 0 {
			continue
		}
		name := strings.ToLower(strings.TrimSpace(l[:i]))
		if c, ok := compact[name]; ok {
			name = c
		}
		switch name {
		case "via":
			vias = append(vias, l)
		case "from", "to", "call-id", "cseq":
			if _, dup := one[name]; !dup {
				one[name] = l
			}
		}
	}
	if len(vias) == 0 || one["cseq"] == "" {
		return false
	}
	out.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + phrase + "\r\n")
	for _, v := range vias {
		out.WriteString(v)
		out.WriteString("\r\n")
	}
	for _, name := range []string{"from", "to", "call-id", "cseq"} {
		l := one[name]
		if l == "" {
			continue
		}
		out.WriteString(l)
		if name == "to" && !strings.Contains(strings.ToLower(l), "tag=") {
			h := fnv.New64a()
			_, _ = h.Write(data)
			out.WriteString(";tag=" + strconv.FormatUint(h.Sum64(), 36))
		}
		out.WriteString("\r\n")
	}
	out.WriteString(warning(server, detail))
	out.WriteString("\r\nServer: umedge\r\nContent-Length: 0\r\n\r\n")
	return true
}

// isScheme reports whether s is a syntactically valid URI scheme
// (RFC 3986 §3.1).
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// compact maps the compact header names a raw answer copies (RFC 3261 §7.3.3).
var compact = map[string]string{"v": "via", "f": "from", "t": "to", "i": "call-id"}
