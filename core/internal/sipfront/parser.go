package sipfront

import (
	"errors"
	"maps"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// maxMessage is the largest SIP message accepted on any transport, start
// line to the end of the body; larger ones get 513 Message Too Large
// (RFC 3261 §21.5.14). The Call Router reads headers and at most an SDP
// offer, a few KiB in practice. The bound sits below the 65,507 bytes an
// IPv4 datagram can carry, so that an oversized UDP request is refused by
// rule and answered, not cut by the socket buffer.
const maxMessage = 32 << 10

// newParser returns sipgo's parser with stricter name-addr headers (sipgo
// accepts some forms RFC 3261 §20.10 and §25.1 forbid and RFC 4475 §3.1.2.13
// and §3.1.2.15 want refused) and messages bounded by maxMessage.
func newParser() *sip.Parser {
	m := maps.Clone(sip.DefaultHeadersParser())
	for _, name := range []string{"from", "f", "to", "t", "contact", "m"} {
		m[name] = strictNameAddr(m[name])
	}
	p := sip.NewParser(sip.WithHeadersParsers(m))
	p.MaxMessageLength = maxMessage
	return p
}

var (
	errUnquotedDisplayName = errors.New("display name with non-token characters must be quoted")
	errBareURIWithHeaders  = errors.New("URI with '?', ',' or ';' inside must be enclosed in <>")
)

func strictNameAddr(next sip.HeaderParser) sip.HeaderParser {
	return func(name []byte, text string) (sip.Header, error) {
		if lt := strings.IndexByte(text, '<'); lt >= 0 {
			if dn := strings.TrimSpace(text[:lt]); dn != "" && dn[0] != '"' && !isTokenList(dn) {
				return nil, errUnquotedDisplayName
			}
		} else if strings.IndexByte(text, '?') >= 0 || (!isContact(name) && strings.IndexByte(text, ',') >= 0) {
			return nil, errBareURIWithHeaders
		}
		return next(name, text)
	}
}

func isContact(name []byte) bool {
	n := strings.ToLower(string(name))
	return n == "contact" || n == "m"
}

// isTokenList reports whether s is tokens separated by white space
// (RFC 3261 §25.1 display-name = *(token LWS) / quoted-string).
func isTokenList(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~ \t", c) >= 0:
		default:
			if c >= 0x80 { // UTF-8 display names are common in practice
				continue
			}
			return false
		}
	}
	return true
}
