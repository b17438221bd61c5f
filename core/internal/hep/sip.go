package hep

import (
	"bytes"

	"github.com/umedge/umedge/core/internal/sipheader"
)

// What the sender needs to know of SIP: where one message ends in bytes
// written to a stream, and its Call-ID.

// nextMessage splits the first SIP message off b, bytes written to a
// stream connection back to back (RFC 3261 §18.3: the Content-Length
// frames the body). Leading CRLFs (keep-alives, RFC 5626 §3.5.1) are
// skipped; msg is empty when nothing else is left. Bytes that do not frame
// (no header end, no or a bad Content-Length, a body past the end) are
// taken as one message whole.
func nextMessage(b []byte) (msg, rest []byte) {
	b = bytes.TrimLeft(b, "\r\n")
	h := bytes.Index(b, []byte("\r\n\r\n"))
	if h < 0 {
		return b, nil
	}
	cl := headerValue(b[:h+2], "content-length", "l")
	n, ok := sipheader.Number(cl)
	if !ok {
		return b, nil
	}
	end := h + 4 + n
	if end > len(b) {
		return b, nil
	}
	return b[:end], b[end:]
}

// callID returns the Call-ID of a SIP message, or nil.
func callID(msg []byte) []byte {
	h := bytes.Index(msg, []byte("\r\n\r\n"))
	if h < 0 {
		h = len(msg) - 2
	}
	if h < 0 {
		return nil
	}
	return headerValue(msg[:h+2], "call-id", "i")
}

// headerValue returns the trimmed value of the first header line of head
// (the start line and header lines, each ending in CRLF) named long or by
// its compact form short (RFC 3261 §7.3.3), case-insensitively.
func headerValue(head []byte, long, short string) []byte {
	// Skip the start line.
	i := bytes.Index(head, []byte("\r\n"))
	if i < 0 {
		return nil
	}
	for rest := head[i+2:]; len(rest) > 0; {
		line := rest
		if j := bytes.Index(rest, []byte("\r\n")); j >= 0 {
			line, rest = rest[:j], rest[j+2:]
		} else {
			rest = nil
		}
		c := bytes.IndexByte(line, ':')
		if c < 0 {
			continue
		}
		name := bytes.TrimRight(line[:c], " \t")
		if bytes.EqualFold(name, []byte(long)) || bytes.EqualFold(name, []byte(short)) {
			return bytes.TrimSpace(line[c+1:])
		}
	}
	return nil
}
