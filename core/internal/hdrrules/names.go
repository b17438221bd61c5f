package hdrrules

import "strings"

// compact are the compact header forms (RFC 3261 §7.3.3 and the RFCs
// that define the others) by their one letter.
var compact = map[string]string{
	"a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
	"e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
	"l": "Content-Length", "m": "Contact", "o": "Event", "r": "Refer-To", "s": "Subject",
	"t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
}

// spelled are the usual spellings of headers whose name is not just
// capitalised words.
var spelled = map[string]string{
	"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
	"p-asserted-identity": "P-Asserted-Identity", "p-preferred-identity": "P-Preferred-Identity",
	"min-se": "Min-SE", "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq",
}

// Canonical is a header name's one spelling here: a compact form
// expanded, words capitalised ("diversion" → "Diversion"), so names
// compare with ==.
func Canonical(name string) string {
	l := strings.ToLower(strings.TrimSpace(name))
	if full, ok := compact[l]; ok {
		return full
	}
	if s, ok := spelled[l]; ok {
		return s
	}
	b := []byte(l)
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
		up = c == '-'
	}
	return string(b)
}
