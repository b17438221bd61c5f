package sipfront

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umedge/umedge/core/sdk/router"
)

// bigInvite is an INVITE over tp whose X-Pad header makes it pad bytes
// longer; the headers a response needs come first.
func bigInvite(tp string, pad int, contentLength int) string {
	msg := strings.Replace(invite("X-Pad: "+strings.Repeat("a", pad)+"\r\n"), "SIP/2.0/UDP", "SIP/2.0/"+tp, 1)
	return strings.Replace(msg, "Content-Length: 0", "Content-Length: "+strconv.Itoa(contentLength), 1)
}

// TestTooLargeOverStream: a message whose headers or Content-Length exceed
// maxMessage gets 513 (RFC 3261 §21.5.14), and then the connection closes:
// its framing is lost.
func TestTooLargeOverStream(t *testing.T) {
	tests := []struct {
		name string
		give string
	}{
		{name: "headers", give: bigInvite("TCP", maxMessage+1000, 0)},
		{name: "headers beyond sipgo's default limit", give: bigInvite("TCP", 70000, 0)},
		{name: "content-length", give: bigInvite("TCP", 0, maxMessage+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, port := startWith(t, &fakeRouter{}, nil)
			c := dialFrom(t, "127.0.0.1", "127.0.0.1", port)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			go func() { _, _ = c.Write([]byte(tt.give)) }() // may fail once the server has closed
			rd := bufio.NewReader(c)
			resp := readResponse(t, rd)
			if statusOf(resp) != 513 {
				t.Fatalf("answer = %q, want 513", firstLine(resp))
			}
			if header(resp, "Call-ID") != "a84b4c76e66710@pc33" || !strings.Contains(header(resp, "Via"), "branch=z9hG4bK776asdhds") {
				t.Errorf("513 does not match the request's transaction:\n%s", resp)
			}
			if _, err := io.Copy(io.Discard, rd); err != nil && !isClosedByPeer(err) {
				t.Errorf("after the 513: %v, want the connection closed", err)
			}
		})
	}
}

func isClosedByPeer(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// TestTooLargeOverUDP: a datagram over maxMessage gets 513; a small one
// whose Content-Length claims more is a lie about its body: 400.
func TestTooLargeOverUDP(t *testing.T) {
	_, port := startWith(t, &fakeRouter{}, nil)
	resp := exchangeUDP(t, port, []byte(bigInvite("UDP", maxMessage+1000, 0)), 2*time.Second)
	if statusOf(resp) != 513 {
		t.Fatalf("answer over UDP = %q, want 513", firstLine(resp))
	}
	if header(resp, "CSeq") != "314159 INVITE" {
		t.Errorf("513 without the request's CSeq:\n%s", resp)
	}

	s := New(staticRouter{}, WithLogger(slog.New(slog.DiscardHandler)))
	s.state.Store(&state{fqdn: "edge.test", retryAfter: "Retry-After: 30"})
	var out bytes.Buffer
	s.handleDatagram([]byte(bigInvite("UDP", 0, 100000)), &peer{transport: router.UDP,
		src: netip.MustParseAddrPort("127.0.0.1:5999")}, &out)
	if statusOf(out.String()) != 400 {
		t.Errorf("small datagram claiming a large body got %q, want 400", firstLine(out.String()))
	}
}
