package sipfront

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// validate applies the checks of RFC 3261 §8.2 and §16.3 that a stateless
// redirect server must make before it may answer, in the order the RFC
// gives them. sipgo's parser has already rejected what it cannot parse.
func validate(req *sip.Request, sc *scan) *requestError {
	if req.SipVersion != "SIP/2.0" {
		return &requestError{code: 505, phrase: "Version Not Supported", detail: "protocol version " + req.SipVersion}
	}
	for _, h := range []struct {
		name string
		ok   bool
	}{
		{"Via", req.Via() != nil}, {"From", req.From() != nil}, {"To", req.To() != nil},
		{"Call-ID", req.CallID() != nil}, {"CSeq", req.CSeq() != nil},
	} {
		if !h.ok {
			return bad("missing %s header", h.name)
		}
	}
	for i, n := range sc.single {
		if n > 1 {
			return bad("%d %s headers, at most one allowed", n, singleHeaders[i])
		}
	}
	// sipgo upper-cases the request line's method but not CSeq's.
	if cseq := req.CSeq(); !strings.EqualFold(string(cseq.MethodName), string(req.Method)) {
		return bad("CSeq method %s does not match request method %s", cseq.MethodName, req.Method)
	}
	if id := string(*req.CallID()); id == "" {
		return bad("empty Call-ID")
	} else if !callIDWord(id) {
		return bad("Call-ID holds bytes outside visible ASCII (RFC 3261 §25.1 callid = word [\"@\" word])")
	}
	if mf := req.MaxForwards(); mf != nil && *mf > 255 {
		return bad("Max-Forwards %d exceeds 255", *mf)
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(req.Body()) {
		return bad("Content-Length %d but body has %d bytes", *cl, len(req.Body()))
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		return &requestError{code: 416, phrase: "Unsupported URI Scheme", detail: "Request-URI scheme " + req.Recipient.Scheme}
	}
	if len(req.Recipient.Headers) > 0 {
		return bad("Request-URI must not carry headers (RFC 3261 §19.1.5)")
	}
	// A redirect server supports no extension (RFC 3261 §8.2.2.3).
	if req.Method != sip.ACK && req.Method != sip.CANCEL {
		var unsupported []string
		for _, v := range sc.require {
			for _, opt := range strings.Split(v, ",") {
				if opt = strings.TrimSpace(opt); opt != "" {
					unsupported = append(unsupported, opt)
				}
			}
		}
		if len(unsupported) > 0 {
			v := strings.Join(unsupported, ", ")
			return &requestError{code: 420, phrase: "Bad Extension", detail: "Require: " + v, extra: []string{"Unsupported: " + v}}
		}
	}
	if req.Method != sip.INVITE {
		return nil
	}
	// The back end accepts SDP only (RFC 3261 §8.2.3, um-spec R-WK-5).
	if ct := req.ContentType(); ct != nil && len(req.Body()) > 0 {
		v := strings.ToLower(strings.TrimSpace(ct.Value()))
		if !strings.HasPrefix(v, "application/sdp") && !strings.HasPrefix(v, "multipart/") {
			return &requestError{code: 415, phrase: "Unsupported Media Type", detail: "Content-Type " + ct.Value(),
				extra: []string{"Accept: application/sdp"}}
		}
	}
	if len(sc.accept) > 0 && !acceptsSDP(sc.accept) {
		return &requestError{code: 406, phrase: "Not Acceptable", detail: "Accept excludes application/sdp",
			extra: []string{"Accept: application/sdp"}}
	}
	return nil
}

func acceptsSDP(values []string) bool {
	for _, v := range values {
		for _, r := range strings.Split(v, ",") {
			if i := strings.IndexByte(r, ';'); i >= 0 {
				r = r[:i]
			}
			switch strings.ToLower(strings.TrimSpace(r)) {
			case "application/sdp", "application/*", "*/*", "":
				return true
			}
		}
	}
	return false
}

// callIDWord reports whether id is made of the bytes an RFC 3261 callid
// can hold: words are visible ASCII (§25.1). The check also keeps a
// crafted Call-ID from failing the router plugin's gRPC string field.
func callIDWord(id string) bool {
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
