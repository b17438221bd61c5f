package hdrrules

import (
	"bytes"
	"strings"
)

// ApplyMessage runs the rules of direction d over the headers of msg, a
// whole SIP message with one header per line (as the B2BUA writes them:
// CRLF, no folding), and returns the message rewritten; msg itself when
// nothing changed. The start line and the body are kept as they are.
func (s *Set) ApplyMessage(d Direction, msg []byte) ([]byte, Result) {
	if !s.Has(d) {
		return msg, Result{}
	}
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	first := bytes.Index(msg, []byte("\r\n"))
	if end < 0 || first < 0 || first == end {
		return msg, Result{}
	}
	lines := strings.Split(string(msg[first+2:end]), "\r\n")
	hs := make([]Header, 0, len(lines))
	for _, l := range lines {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return msg, Result{} // not ours to guess at
		}
		hs = append(hs, Header{strings.TrimSpace(name), strings.TrimLeft(value, " \t")})
	}
	out, res := s.Apply(d, hs)
	if !res.Changed {
		return msg, res
	}
	var b bytes.Buffer
	b.Grow(len(msg) + 256)
	b.Write(msg[:first+2])
	for _, h := range out {
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	b.Write(msg[end+2:])
	return b.Bytes(), res
}
