package sipfront

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/sdk/router"
)

// staticRouter redirects every call to testBackend and keeps nothing.
type staticRouter struct{}

func (staticRouter) Route(*router.Call) (routing.Target, error) {
	return routing.Target{Decision: &router.Decision{Pool: "p"}, Backend: testBackend}, nil
}

func (staticRouter) Ask(*router.Call, routing.Target, routing.Done) error {
	return routing.ErrOverloaded
}

// FuzzDatagram feeds arbitrary datagrams through parsing, validation,
// routing and the response writer (ours and the raw fallback): nothing may
// panic, and any answer must be a well-formed final response.
func FuzzDatagram(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "rfc4475", "*.dat"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(invite("Diversion: <sip:1002@pbx>;reason=no-answer\r\nHistory-Info: <sip:1@a>;index=1\r\n")))
	s := New(staticRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	s.state.Store(&state{fqdn: "edge.test", retryAfter: "Retry-After: 30"})
	src := netip.MustParseAddrPort("127.0.0.1:5999")
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		s.handleDatagram(data, &peer{transport: router.UDP, src: src}, &out)
		if out.Len() == 0 {
			return
		}
		resp := out.String()
		if !strings.HasPrefix(resp, "SIP/2.0 ") || !strings.HasSuffix(resp, "\r\n\r\n") {
			t.Fatalf("malformed answer %q", resp)
		}
		if code := statusOf(resp); code < 200 || code > 699 {
			t.Fatalf("answer with status %d: %q", code, resp)
		}
	})
}
