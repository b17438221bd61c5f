package sipfront

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// scan is what one pass over a request's headers finds: sipgo's
// GetHeaders walks all headers per call, and a request is asked about a
// dozen names.
type scan struct {
	vias               []sip.Header
	single             [len(singleHeaders)]int // occurrences of each single-valued header
	require, accept    []string
	diversion, history []string
}

// singleHeaders may appear at most once in a request (RFC 3261 §7.3.1,
// RFC 4475 §3.3.8, §3.3.9). sipgo names parsed headers canonically, also
// when they arrived in compact form.
var singleHeaders = [...]string{"To", "From", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}

func scanHeaders(req *sip.Request, sc *scan) {
	*sc = scan{vias: sc.vias[:0]}
	for _, h := range req.Headers() {
		name := h.Name()
		switch {
		case strings.EqualFold(name, "Via"):
			sc.vias = append(sc.vias, h)
		case strings.EqualFold(name, "Diversion"):
			sc.diversion = append(sc.diversion, h.Value())
		case strings.EqualFold(name, "History-Info"):
			sc.history = append(sc.history, h.Value())
		case strings.EqualFold(name, "Require"):
			sc.require = append(sc.require, h.Value())
		case strings.EqualFold(name, "Accept"):
			sc.accept = append(sc.accept, h.Value())
		default:
			for i, s := range singleHeaders {
				if strings.EqualFold(name, s) {
					sc.single[i]++
					break
				}
			}
		}
	}
}
