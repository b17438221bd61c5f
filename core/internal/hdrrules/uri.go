package hdrrules

import "strings"

// span is where part lies in a header value: [lo, hi), ok false when the
// value has no such part. The URI is the one in angle brackets, else the
// value up to its first ';' (RFC 3261 §20: without brackets the
// parameters are the header's); a quoted display name is skipped.
func span(v string, p Part) (lo, hi int, ok bool) {
	if p == PartValue {
		return 0, len(v), true
	}
	lo, hi, ok = uriSpan(v)
	if !ok {
		return 0, 0, false
	}
	u := v[lo:hi]
	colon := strings.IndexByte(u, ':')
	if colon <= 0 {
		return 0, 0, false
	}
	scheme := strings.ToLower(u[:colon])
	rest := lo + colon + 1
	switch scheme {
	case "tel":
		if p != PartUser {
			return 0, 0, false
		}
		end := hi
		if i := strings.IndexByte(v[rest:hi], ';'); i >= 0 {
			end = rest + i
		}
		return rest, end, end > rest
	case "sip", "sips":
	default:
		return 0, 0, false
	}
	end := hi
	if i := strings.IndexByte(v[rest:hi], '?'); i >= 0 {
		end = rest + i // URI headers: not part of user or host
	}
	at := strings.IndexByte(v[rest:end], '@')
	if p == PartUser {
		if at < 0 {
			return 0, 0, false
		}
		return rest, rest + at, true
	}
	h := rest
	if at >= 0 {
		h = rest + at + 1
	}
	e := h
	if e < end && v[e] == '[' { // an IPv6 reference
		i := strings.IndexByte(v[e:end], ']')
		if i < 0 {
			return 0, 0, false
		}
		return h, e + i + 1, true
	}
	for e < end && v[e] != ':' && v[e] != ';' {
		e++
	}
	return h, e, e > h
}

// uriSpan finds the URI of a name-addr or addr-spec value.
func uriSpan(v string) (lo, hi int, ok bool) {
	i := 0
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	if i < len(v) && v[i] == '"' { // a quoted display name
		for i++; i < len(v) && v[i] != '"'; i++ {
			if v[i] == '\\' {
				i++
			}
		}
		i++
	}
	if i > len(v) {
		return 0, 0, false
	}
	if lt := strings.IndexByte(v[i:], '<'); lt >= 0 {
		lo = i + lt + 1
		gt := strings.IndexByte(v[lo:], '>')
		if gt < 0 {
			return 0, 0, false
		}
		return lo, lo + gt, true
	}
	hi = len(v)
	if sc := strings.IndexByte(v[i:], ';'); sc >= 0 {
		hi = i + sc
	}
	for hi > i && (v[hi-1] == ' ' || v[hi-1] == '\t') {
		hi--
	}
	return i, hi, hi > i
}
