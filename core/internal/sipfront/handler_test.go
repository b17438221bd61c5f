package sipfront

import (
	"bufio"
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/internal/testutil"
	"github.com/umedge/umedge/core/sdk/router"
)

// A call the routing engine defers gets 100 Trying at once and its final
// answer later, on the same path, over UDP and TCP.
func TestDeferredAnswer(t *testing.T) {
	_, port := startServer(t, &fakeRouter{deferred: 400 * time.Millisecond}) // well past the two 20 ms exchanges below, even on a loaded machine
	t.Run("udp", func(t *testing.T) {
		// No 100 over UDP: the client keeps retransmitting, so a lost
		// final answer is fetched again from memory (RFC 3261 §17.1.1.2).
		c := dialUDP(t, port)
		defer c.Close()
		msg := []byte(invite(""))
		if got := exchangeOn(t, c, msg, 20*time.Millisecond); got != "" {
			t.Fatalf("answer while the plugin decides = %q, want none over UDP", firstLine(got))
		}
		if got := exchangeOn(t, c, msg, 20*time.Millisecond); got != "" { // a retransmission, still pending
			t.Fatalf("answer to a retransmission while pending = %q, want none", firstLine(got))
		}
		final := readUDP(t, c, 2*time.Second)
		if statusOf(final) != 302 || header(final, "Contact") != "<sip:1001@192.0.2.10:5062;transport=tcp>" {
			t.Fatalf("final answer = %q, want the 302", final)
		}
		// The final answer was "lost": the next retransmission gets it again.
		if again := exchangeOn(t, c, msg, 2*time.Second); again != final {
			t.Errorf("retransmission after the answer got %q, want the same 302", firstLine(again))
		}
	})
	t.Run("tcp", func(t *testing.T) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(strings.Replace(invite(""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1))); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if r := readResponse(t, rd); statusOf(r) != 100 {
			t.Fatalf("first answer = %q, want 100 Trying", firstLine(r))
		}
		if r := readResponse(t, rd); statusOf(r) != 302 {
			t.Fatalf("final answer = %q, want 302", firstLine(r))
		}
	})
}

func readUDP(t *testing.T, c *net.UDPConn, wait time.Duration) string {
	t.Helper()
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// flipRouter redirects its first call and refuses every later one with
// 503 rate-limited, as a gateway's exhausted call-rate bucket would.
type flipRouter struct{ n atomic.Int64 }

func (f *flipRouter) Ask(*router.Call, routing.Target, routing.Done) error {
	return routing.ErrOverloaded
}

func (f *flipRouter) Route(*router.Call) (routing.Target, error) {
	if f.n.Add(1) == 1 {
		return routing.Target{Decision: &router.Decision{Pool: "p"}, Backend: testBackend}, nil
	}
	return routing.Target{}, routing.ErrRateLimited
}

// Finding 3 of issue 5: a retransmitted INVITE (lost 302) took a second
// rate token and could get 503. It must get the very answer the first got,
// without a second routing decision; a new transaction is decided anew.
func TestRetransmissionGetsItsOriginalAnswer(t *testing.T) {
	r := &flipRouter{}
	_, port := startServer(t, r)
	c := dialUDP(t, port)
	defer c.Close()
	msg := []byte(invite(""))
	first := exchangeOn(t, c, msg, 2*time.Second)
	if statusOf(first) != 302 {
		t.Fatalf("first answer = %q", firstLine(first))
	}
	for i := range 5 {
		again := exchangeOn(t, c, msg, 2*time.Second)
		if again != first {
			t.Fatalf("retransmission %d got\n%q\nwant the same bytes as\n%q", i, again, first)
		}
	}
	if n := r.n.Load(); n != 1 {
		t.Errorf("routing decisions = %d, want 1 for one transaction", n)
	}
	other := strings.Replace(invite(""), "branch=z9hG4bK776asdhds", "branch=z9hG4bKnew", 1)
	if got := exchangeOn(t, c, []byte(other), 2*time.Second); statusOf(got) != 503 {
		t.Errorf("a new transaction got %q, want the router's 503", firstLine(got))
	}
}

// The same Call-ID and branch from another source is another transaction.
func TestRetransmissionMemoryIsPerSource(t *testing.T) {
	r := &flipRouter{}
	_, port := startServer(t, r)
	msg := []byte(invite(""))
	if got := exchangeUDP(t, port, msg, 2*time.Second); statusOf(got) != 302 {
		t.Fatalf("first answer = %q", firstLine(got))
	}
	if got := exchangeUDP(t, port, msg, 2*time.Second); statusOf(got) != 503 {
		t.Errorf("same transaction from another source port got %q, want a decision of its own (503)", firstLine(got))
	}
}

func TestAnswersBounded(t *testing.T) {
	a := newAnswers()
	now := time.Now()
	for i := range 4 * answerSlots {
		a.put(uint64(i)*2654435761|1, answer{status: &status{code: 404}}, now)
	}
	// Memory is the fixed array; the newest entries are there.
	last := uint64(4*answerSlots-1)*2654435761 | 1
	if got, ok := a.get(last, now); !ok || got.status.code != 404 {
		t.Errorf("newest entry: %+v, %v", got, ok)
	}
	if _, ok := a.get(last, now.Add(answerTTL+time.Second)); ok {
		t.Error("entry still there after answerTTL")
	}
	a.put(7, answer{backend: testBackend}, now)
	a.pend(7, now)
	if got, _ := a.get(7, now); got.pending || got.backend != testBackend {
		t.Errorf("pend overwrote a final answer: %+v", got)
	}
}

// A flood of refused calls (a scanner, a misconfigured PBX) costs counters,
// not log volume: "call rejected" lines are spaced, every refusal counted,
// and a logged line says how many were left out before it.
func TestRejectionLogIsRateLimited(t *testing.T) {
	var logs testutil.LockedBuffer
	s := New(&fakeRouter{err: &router.Rejection{Reason: router.ErrUnknownNumber, Detail: "no such mailbox"}},
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	s.state.Store(&state{fqdn: "edge.test", retryAfter: "Retry-After: 30"})
	p := &peer{transport: router.UDP, src: netip.MustParseAddrPort("127.0.0.1:5999")}
	var out bytes.Buffer
	const calls = 2000
	start := time.Now()
	for i := range calls {
		msg := strings.Replace(invite(""), "branch=z9hG4bK776asdhds", "branch=z9hG4bKflood"+strconv.Itoa(i), 1)
		s.handleDatagram([]byte(msg), p, &out)
		if statusOf(out.String()) != 404 {
			t.Fatalf("call %d answered %q", i, firstLine(out.String()))
		}
	}
	elapsed := time.Since(start)
	lines := strings.Count(logs.String(), "call rejected")
	if limit := int(elapsed/rejectLogInterval) + 2; lines > limit {
		t.Errorf("%d log lines for %d rejections in %s, want at most %d", lines, calls, elapsed, limit)
	}
	if lines > calls/4 {
		t.Errorf("%d log lines for %d rejections: not rate-limited", lines, calls)
	}
	if lines == 0 || (lines < calls && !strings.Contains(logs.String(), "not_logged_before=")) {
		t.Errorf("%d log lines, none saying how many were left out", lines)
	}
	if got := promtestutil.ToFloat64(s.metrics.Rejections.WithLabelValues(router.ErrUnknownNumber.Error())); got != calls {
		t.Errorf("rejections counted = %v, want %d", got, calls)
	}
}

// A Call-ID with bytes no RFC 3261 word has (here invalid UTF-8, which a
// proto string field refuses) is a bad request, not a false 503 from the
// router plugin's transport.
func TestCallIDOutsideVisibleASCII(t *testing.T) {
	_, port := startServer(t, &fakeRouter{})
	for _, id := range []string{"ab\xff\xfe@pc33", "tab\tinside"} {
		msg := strings.Replace(invite(""), "Call-ID: a84b4c76e66710@pc33", "Call-ID: "+id, 1)
		if got := exchangeUDP(t, port, []byte(msg), 2*time.Second); statusOf(got) != 400 {
			t.Errorf("Call-ID %q: answer %q, want 400", id, firstLine(got))
		}
	}
}

// A Request-URI user that breaks out of the URI (a '>' and its own maddr,
// transport, a second Contact) must not reach our 302's Contact as such:
// the bytes outside the RFC 3261 user grammar are %-escaped, so the
// Contact names our back end and nothing else.
func TestContactUserCannotInject(t *testing.T) {
	_, port := startServer(t, &fakeRouter{})
	for _, tt := range []struct{ ruri, want string }{
		{"sip:1001;maddr=10.66.66.66;transport=udp>@edge.test", "<sip:1001;maddr=10.66.66.66;transport=udp%3E@192.0.2.10:5062;transport=tcp>"},
		// sipgo reads "sip:a" as user "…<sip" with password "a"; the password never reaches the Contact.
		{"sip:1001;x=>;q=0.1;expires=0,<sip:a@edge.test", "<sip:1001;x=%3E;q=0.1;expires=0,%3Csip@192.0.2.10:5062;transport=tcp>"},
		{`sip:1001;x="@edge.test`, "<sip:1001;x=%22@192.0.2.10:5062;transport=tcp>"},
		{"sip:1001;phone-context=example.com@edge.test", "<sip:1001;phone-context=example.com@192.0.2.10:5062;transport=tcp>"},
		{"sip:%31001@edge.test", "<sip:%31001@192.0.2.10:5062;transport=tcp>"},
		{"sip:edge.test", "<sip:1001@192.0.2.10:5062;transport=tcp>"}, // no user: the To user's number
	} {
		msg := strings.Replace(invite(""), "INVITE sip:1001@edge.test SIP/2.0", "INVITE "+tt.ruri+" SIP/2.0", 1)
		got := exchangeUDP(t, port, []byte(msg), 2*time.Second)
		if statusOf(got) != 302 {
			t.Errorf("%s: answer %q", tt.ruri, firstLine(got))
			continue
		}
		if c := header(got, "Contact"); c != tt.want {
			t.Errorf("%s: Contact %s, want %s", tt.ruri, c, tt.want)
		}
		if strings.Count(got, "maddr=") > 0 && !strings.Contains(header(got, "Contact"), "%3E@") {
			t.Errorf("%s: maddr outside the user part", tt.ruri)
		}
	}
}

// A CANCEL for an INVITE still with the router plugin ends it (RFC 3261
// §9.2): 200 to the CANCEL, 487 to the INVITE, and the plugin's later
// answer is dropped. A CANCEL for an INVITE answered already gets 481.
func TestCancelWhileAsking(t *testing.T) {
	_, port := startServer(t, &fakeRouter{deferred: 300 * time.Millisecond})
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inv := strings.Replace(invite(""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if r := readResponse(t, rd); statusOf(r) != 100 {
		t.Fatalf("first answer %q, want 100 Trying", firstLine(r))
	}
	cancel := strings.NewReplacer("INVITE sip:1001@edge.test SIP/2.0", "CANCEL sip:1001@edge.test SIP/2.0",
		"314159 INVITE", "314159 CANCEL").Replace(inv)
	if _, err := c.Write([]byte(cancel)); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for range 2 {
		r := readResponse(t, rd)
		got[header(r, "CSeq")] = statusOf(r)
	}
	if got["314159 CANCEL"] != 200 || got["314159 INVITE"] != 487 {
		t.Fatalf("answers %v, want 200 to the CANCEL and 487 to the INVITE", got)
	}
	_ = c.SetReadDeadline(time.Now().Add(600 * time.Millisecond))
	if l, err := rd.ReadString('\n'); err == nil {
		t.Errorf("after the 487: %q, want nothing (the plugin's answer dropped)", l)
	}
	// Once answered, there is nothing to cancel.
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cancel)); err != nil {
		t.Fatal(err)
	}
	if r := readResponse(t, rd); statusOf(r) != 481 {
		t.Errorf("second CANCEL: %q, want 481", firstLine(r))
	}
}
