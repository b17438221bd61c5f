// Package sipheader parses the called-party headers the Call Router reads
// beyond sipgo's own: Diversion (RFC 5806) and History-Info (RFC 7044).
package sipheader

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// ErrMalformed means a header value does not follow its grammar; the core
// answers 400 with the reason (um-spec R-WK-6, R-ERR-4).
var ErrMalformed = errors.New("malformed header")

// What splitList finds wrong; callers wrap them in ErrMalformed.
var (
	errNestedAngle     = errors.New("nested '<'")
	errUnbalancedAngle = errors.New("unbalanced '>'")
	errOpenQuote       = errors.New("unterminated quoted string")
	errOpenAngle       = errors.New("unterminated '<'")
	errEmpty           = errors.New("empty value")
)

// maxEntries bounds how many values one request may carry in these headers.
const maxEntries = 32

// Diversion parses the values of all Diversion headers of a request, in
// order: the top value is the most recent diversion (RFC 5806 §2).
func Diversion(values []string) ([]router.Diversion, error) {
	var out []router.Diversion
	err := eachAddress("Diversion", values, func(uri *sip.Uri, params sip.HeaderParams) {
		reason, _ := params.Get("reason")
		out = append(out, router.Diversion{User: userOf(uri), Reason: strings.Trim(reason, `"`)})
	})
	return out, err
}

// HistoryInfo parses the values of all History-Info headers of a request
// (RFC 7044 §9) and returns the entries in index order (§10.3: the index
// says where an entry stands, whatever order the headers came in; entries
// without a valid index keep their place after the indexed ones). The cause
// of a retargeting is the "cause" URI parameter (RFC 4458), or the cause
// inside an escaped Reason header of the URI (RFC 4244 §4.3).
func HistoryInfo(values []string) ([]router.HistoryInfo, error) {
	var out []router.HistoryInfo
	err := eachAddress("History-Info", values, func(uri *sip.Uri, params sip.HeaderParams) {
		index, _ := params.Get("index")
		cause, _ := uri.UriParams.Get("cause")
		if cause == "" {
			if reason, ok := uri.Headers.Get("Reason"); ok {
				cause = reasonCause(reason)
			}
		}
		out = append(out, router.HistoryInfo{Index: index, User: userOf(uri), Cause: cause})
	})
	slices.SortStableFunc(out, func(a, b router.HistoryInfo) int { return compareIndex(a.Index, b.Index) })
	return out, err
}

// compareIndex orders History-Info indexes ("1", "1.1", "1.2.1") as RFC
// 7044 §10.3 defines them: number by number, a parent before its
// children. An index that is not dot-separated numbers sorts after every
// valid one.
func compareIndex(a, b string) int {
	pa, oka := indexParts(a)
	pb, okb := indexParts(b)
	switch {
	case !oka || !okb:
		return cmp.Compare(btoi(!oka), btoi(!okb))
	}
	return slices.Compare(pa, pb)
}

func indexParts(s string) ([]int, bool) {
	if s == "" || len(s) > 64 {
		return nil, false
	}
	var parts []int
	for f := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || f == "" || f[0] == '+' {
			return nil, false
		}
		parts = append(parts, n)
	}
	return parts, true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// eachAddress splits every value at top-level commas and parses each
// element as name-addr *(SEMI param).
func eachAddress(name string, values []string, fn func(*sip.Uri, sip.HeaderParams)) error {
	n := 0
	for _, v := range values {
		elems, err := splitList(v)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
		}
		for _, e := range elems {
			if n++; n > maxEntries {
				return fmt.Errorf("%w: %s: more than %d entries", ErrMalformed, name, maxEntries)
			}
			if !strings.Contains(e, "<") {
				// Both grammars require name-addr: an addr-spec would make
				// the URI parameters ambiguous with header parameters.
				return fmt.Errorf("%w: %s: %q is not a name-addr", ErrMalformed, name, e)
			}
			var uri sip.Uri
			params := sip.NewParams()
			if _, err := sip.ParseAddressValue(e, &uri, &params); err != nil {
				return fmt.Errorf("%w: %s: %q: %w", ErrMalformed, name, e, err)
			}
			fn(&uri, params)
		}
	}
	return nil
}

// splitList splits a header value at commas that are outside quoted
// strings and angle brackets, and checks that both are balanced.
func splitList(v string) ([]string, error) {
	var (
		out     []string
		start   int
		quoted  bool
		escaped bool
		angle   bool
	)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case quoted:
			switch c {
			case '\\':
				escaped = true
			case '"':
				quoted = false
			}
		case c == '"':
			quoted = true
		case c == '<':
			if angle {
				return nil, errNestedAngle
			}
			angle = true
		case c == '>':
			if !angle {
				return nil, errUnbalancedAngle
			}
			angle = false
		case c == ',' && !angle:
			out = appendElem(out, v[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, errOpenQuote
	}
	if angle {
		return nil, errOpenAngle
	}
	out = appendElem(out, v[start:])
	if len(out) == 0 {
		return nil, errEmpty
	}
	return out, nil
}

func appendElem(out []string, e string) []string {
	if e = strings.TrimSpace(e); e != "" {
		out = append(out, e)
	}
	return out
}

// userOf returns the user part of a SIP URI, or the number of a tel URI,
// with %-escapes decoded and visual separators of phone numbers kept as sent.
func userOf(uri *sip.Uri) string {
	user := uri.User
	if uri.Scheme == "tel" {
		user = uri.Raw()
		if i := strings.IndexByte(user, ';'); i >= 0 {
			user = user[:i]
		}
	}
	if i := strings.IndexByte(user, ';'); i >= 0 { // user parameters (RFC 4475 §3.1.1.9)
		user = user[:i]
	}
	if u, err := url.PathUnescape(user); err == nil {
		return u
	}
	return user
}

var causeRE = regexp.MustCompile(`(?i)cause\s*=\s*([0-9]{3})`)

// reasonCause extracts the cause code of an escaped Reason header value
// such as "SIP%3Bcause%3D302".
func reasonCause(reason string) string {
	if r, err := url.QueryUnescape(reason); err == nil {
		reason = r
	}
	if m := causeRE.FindStringSubmatch(reason); m != nil {
		return m[1]
	}
	return ""
}

// WriteUser writes a user part as received where it keeps to the RFC 3261
// user grammar (§25.1: unreserved, escaped, user-unreserved), and
// %-escapes every other byte, so that no caller can close the URI early
// and smuggle maddr, transport or a second Contact into our 302.
func WriteUser(sb *strings.Builder, u string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c == '%' && i+2 < len(u) && isHex(u[i+1]) && isHex(u[i+2]):
			sb.WriteString(u[i : i+3])
			i += 2
		case userByte(c):
			sb.WriteByte(c)
		default:
			sb.WriteByte('%')
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
		}
	}
}

// userByte reports whether c may stand unescaped in a SIP URI user part:
// alphanum, mark (-_.!~*'()) or user-unreserved (&=+$,;?/).
func userByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_.!~*'()&=+$,;?/", c) >= 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Received returns the top Via with the received and rport parameters a
// server adds, whatever the transport (RFC 3261 §18.2.1, RFC 3581 §4).
func Received(v *sip.ViaHeader, src netip.AddrPort) *sip.ViaHeader {
	rport, hasRport := v.Params.Get("rport")
	ip := src.Addr().Unmap().String()
	if !(hasRport && rport == "") && v.Host == ip {
		return v
	}
	v = v.Clone()
	if v.Host != ip || hasRport {
		v.Params.Add("received", ip)
	}
	if hasRport && rport == "" {
		v.Params.Add("rport", strconv.Itoa(int(src.Port())))
	}
	return v
}

// Number parses a header's non-negative decimal of at most 9 digits (a
// Content-Length, a status code, a CSeq number) without allocating; false
// for anything else, so a crafted value cannot overflow.
func Number(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
