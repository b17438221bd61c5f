package sipfront

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/sdk/router"
)

// fakeRouter redirects every call to one back end, or fails with err.
// With deferred set it answers later, from another goroutine, as the
// routing engine does for calls it asks the router plugin about.
type fakeRouter struct {
	mu       sync.Mutex
	calls    []router.Call
	err      error
	deferred time.Duration
}

var testBackend = &router.Backend{Name: "um1", Host: "192.0.2.10", TCPPort: 5062, TLSPort: 5063}

func (f *fakeRouter) Route(c *router.Call) (routing.Target, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, *c)
	if f.deferred > 0 {
		return routing.Target{Decision: &router.Decision{Gateway: "gw"}}, router.ErrAskPlugin
	}
	if f.err != nil {
		return routing.Target{}, f.err
	}
	return routing.Target{Decision: &router.Decision{Pool: "p", Gateway: "gw"}, Backend: testBackend}, nil
}

func (f *fakeRouter) Ask(_ *router.Call, _ routing.Target, done routing.Done) error {
	tg := routing.Target{Decision: &router.Decision{Pool: "p", Gateway: "gw"}, Backend: testBackend}
	err := f.err
	if err != nil {
		tg = routing.Target{}
	}
	time.AfterFunc(f.deferred, func() { done(tg, err) })
	return nil
}

func (f *fakeRouter) last() router.Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

// startServer starts a front end with UDP and TCP on a free port of 127.0.0.1.
func startServer(t *testing.T, r Router) (*Server, int) {
	t.Helper()
	s := New(r, WithLogger(slog.New(slog.DiscardHandler)))
	for range 20 {
		port := freePort(t)
		err := s.Apply(Config{
			Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, UDP: true, TCP: true,
			TCPPort: port, TLSPort: port + 1, IdleTimeout: time.Minute, RetryAfter: 30 * time.Second, FQDN: "edge.test",
		})
		if err == nil {
			t.Cleanup(func() { _ = s.Close() })
			return s, port
		}
		_ = s.Close()
		s = New(r, WithLogger(slog.New(slog.DiscardHandler)))
	}
	t.Fatal("no free port pair")
	return nil, 0
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func invite(extra string) string {
	return "INVITE sip:1001@edge.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK776asdhds;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:1001@edge.test>\r\n" +
		"From: \"Caller\" <sip:4000@127.0.0.1>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33\r\n" +
		"CSeq: 314159 INVITE\r\n" +
		"Contact: <sip:4000@127.0.0.1:5999>\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

// exchangeUDP sends msg from a fresh socket and returns the answer, or ""
// when none came within wait.
func exchangeUDP(t *testing.T, port int, msg []byte, wait time.Duration) string {
	t.Helper()
	c := dialUDP(t, port)
	defer c.Close()
	return exchangeOn(t, c, msg, wait)
}

func dialUDP(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func exchangeOn(t *testing.T, c *net.UDPConn, msg []byte, wait time.Duration) string {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	return readUDP(t, c, wait)
}

func statusOf(resp string) int {
	if !strings.HasPrefix(resp, "SIP/2.0 ") || len(resp) < 11 {
		return 0
	}
	code, _ := strconv.Atoi(resp[8:11])
	return code
}

func header(resp, name string) string {
	for _, l := range strings.Split(resp, "\r\n") {
		if i := strings.IndexByte(l, ':'); i > 0 && strings.EqualFold(strings.TrimSpace(l[:i]), name) {
			return strings.TrimSpace(l[i+1:])
		}
	}
	return ""
}

func TestRedirectOverUDP(t *testing.T) {
	r := &fakeRouter{}
	_, port := startServer(t, r)
	req := invite("Diversion: <sip:1002@pbx>;reason=no-answer\r\n")

	c := dialUDP(t, port)
	defer c.Close()
	resp := exchangeOn(t, c, []byte(req), time.Second)
	if statusOf(resp) != 302 {
		t.Fatalf("response = %q, want 302", resp)
	}
	if got, want := header(resp, "Contact"), "<sip:1001@192.0.2.10:5062;transport=tcp>"; got != want {
		t.Errorf("Contact = %q, want %q (UDP moves to TCP, R-PORT-1)", got, want)
	}
	if !strings.Contains(header(resp, "To"), ";tag=") {
		t.Errorf("To %q has no tag", header(resp, "To"))
	}
	if via := header(resp, "Via"); !strings.Contains(via, "rport=") || !strings.Contains(via, "received=127.0.0.1") {
		t.Errorf("Via = %q, want rport and received filled (RFC 3581)", via)
	}
	again := exchangeOn(t, c, []byte(req), time.Second)
	if again != resp {
		t.Errorf("retransmission got\n%q\nwant the same\n%q", again, resp)
	}
	seen := r.last()
	if seen.RequestURIUser != "1001" || seen.FromUser != "4000" || len(seen.Diversion) != 1 || seen.Diversion[0].User != "1002" {
		t.Errorf("router saw %+v", seen)
	}
	ack := strings.Replace(strings.Replace(req, "INVITE sip", "ACK sip", 1), "314159 INVITE", "314159 ACK", 1)
	if got := exchangeUDP(t, port, []byte(ack), 200*time.Millisecond); got != "" {
		t.Errorf("ACK was answered with %q, want it absorbed", got)
	}
}

func TestRejectionsCarryRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		give      error
		wantCode  int
		wantRetry bool
	}{
		{"unknown peer", &router.Rejection{Reason: router.ErrUnknownPeer}, 403, false},
		{"draining gateway", &router.Rejection{Reason: router.ErrGatewayDraining}, 503, true},
		{"unknown number", &router.Rejection{Reason: router.ErrUnknownNumber}, 404, false},
		{"security", &router.Rejection{Reason: router.ErrSecurityMismatch}, 488, false},
		{"no back end", routing.ErrNoBackend, 503, true},
		{"plugin down", routing.ErrPluginUnavailable, 503, true},
		{"anything else", errors.New("boom"), 500, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, port := startServer(t, &fakeRouter{err: tt.give})
			resp := exchangeUDP(t, port, []byte(invite("")), time.Second)
			if statusOf(resp) != tt.wantCode {
				t.Fatalf("response = %q, want %d", resp, tt.wantCode)
			}
			if got := header(resp, "Retry-After"); (got == "30") != tt.wantRetry {
				t.Errorf("Retry-After = %q, want present=%v", got, tt.wantRetry)
			}
		})
	}
}

func TestOptionsAndTCP(t *testing.T) {
	_, port := startServer(t, &fakeRouter{})
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := strings.NewReplacer("INVITE sip:1001", "OPTIONS sip:1001", "314159 INVITE", "1 OPTIONS", "SIP/2.0/UDP", "SIP/2.0/TCP").Replace(invite(""))
	inv := strings.Replace(invite(""), "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
	// Both requests in one segment, then a keep-alive ping: framing must hold.
	if _, err := c.Write([]byte(opts + inv)); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r1, r2 := readResponse(t, rd), readResponse(t, rd)
	if statusOf(r1) != 200 || header(r1, "Allow") == "" || header(r1, "Accept") != "application/sdp" || !strings.Contains(r1, "\r\nSupported:") {
		t.Errorf("OPTIONS answer = %q", r1)
	}
	if statusOf(r2) != 302 || header(r2, "Contact") != "<sip:1001@192.0.2.10:5062;transport=tcp>" {
		t.Errorf("INVITE over TCP answer = %q", r2)
	}
	if via := header(r2, "Via"); !strings.Contains(via, "received=127.0.0.1") || !strings.Contains(via, "rport=") {
		t.Errorf("Via over TCP = %q, want received and rport filled over TCP too (RFC 3581 §4)", via)
	}
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if pong, err := rd.ReadString('\n'); err != nil || pong != "\r\n" {
		t.Errorf("keep-alive pong = %q, %v", pong, err)
	}
	// A ping in two segments is a ping too (R-SBC-6: stream transports
	// accept RFC 5626 keep-alives however TCP cuts them).
	for _, part := range []string{"\r\n", "\r\n"} {
		if _, err := c.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pong, err := rd.ReadString('\n'); err != nil || pong != "\r\n" {
		t.Errorf("pong to a ping in two segments = %q, %v", pong, err)
	}
}

func readResponse(t *testing.T, rd *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read response: %v (so far %q)", err, b.String())
		}
		b.WriteString(l)
		if l == "\r\n" {
			return b.String()
		}
	}
}

// TestTorture sends every RFC 4475 message over UDP and TCP and checks the
// answer the RFC expects (testdata/rfc4475/index.tsv).
func TestTorture(t *testing.T) {
	idx, err := os.ReadFile(filepath.Join("testdata", "rfc4475", "index.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	s, port := startServer(t, &fakeRouter{})
	for _, line := range strings.Split(string(idx), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 4 || strings.HasPrefix(line, "#") {
			continue
		}
		name, expect := f[0], f[3]
		data, err := os.ReadFile(filepath.Join("testdata", "rfc4475", name+".dat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range []string{"udp", "tcp"} {
			t.Run(name+"/"+tp, func(t *testing.T) {
				var resp string
				if tp == "udp" {
					// In process: most of these messages name a Via port
					// nobody listens on, where a UDP answer would go.
					var out bytes.Buffer
					src := netip.MustParseAddrPort("127.0.0.1:5999")
					s.handleDatagram(data, &peer{transport: router.UDP, src: src}, &out)
					resp = out.String()
				} else {
					resp = exchangeTCP(t, port, data, time.Second)
				}
				code := statusOf(resp)
				want := expect
				if w, ok := expectOverride[name]; ok {
					want = w
				}
				if w, ok := tcpExpect[name]; ok && tp == "tcp" {
					want = w
				}
				switch want {
				case "any":
					if code == 0 || code == 400 {
						t.Errorf("valid message got %q, want a final response other than 400", firstLine(resp))
					}
				case "drop":
					if resp != "" {
						t.Errorf("got %q, want no answer", firstLine(resp))
					}
				default:
					if strconv.Itoa(code) != want {
						t.Errorf("got %q, want %s", firstLine(resp), want)
					}
				}
			})
		}
	}
}

// expectOverride replaces index.tsv's expectation where the RFC allows
// more than one answer.
var expectOverride = map[string]string{
	"baddate": "any", // RFC 4475 §3.1.2.12: an element may accept the unknown time zone
}

// tcpExpect overrides index.tsv where a stream transport changes what the
// RFC expects.
var tcpExpect = map[string]string{
	"clerr": "drop", // RFC 4475 §3.1.2.2: over a stream the server waits for the rest of the body
	// RFC 3261 §18.3: a message on a stream must carry Content-Length; without
	// it this RFC 2543 INVITE's body cannot be framed.
	"inv2543": "400",
}

func exchangeTCP(t *testing.T, port int, msg []byte, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var buf bytes.Buffer
	tmp := make([]byte, 65535)
	for {
		n, err := c.Read(tmp)
		buf.Write(tmp[:n])
		if err != nil || bytes.Contains(buf.Bytes(), []byte("\r\n\r\n")) {
			break
		}
	}
	return buf.String()
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// TestUDPBurstAnswersEachSource queues a burst of INVITEs from many
// sources, a malformed datagram among them, before the readers take them
// (in batches): every source gets the answer to its own request — its own
// Call-ID, the right status — and nothing else.
func TestUDPBurstAnswersEachSource(t *testing.T) {
	_, port := startServer(t, &fakeRouter{})
	const n = 40
	conns := make([]*net.UDPConn, n)
	for i := range conns {
		conns[i] = dialUDP(t, port)
		defer conns[i].Close()
	}
	for i, c := range conns {
		id := fmt.Sprintf("burst-%d@pc33", i)
		if i == n/2 {
			id = "burst\xff\xfe@pc33" // no RFC 3261 word: a bad request
		}
		msg := strings.Replace(invite(""), "a84b4c76e66710@pc33", id, 1)
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		resp := readUDP(t, c, 2*time.Second)
		if i == n/2 {
			if statusOf(resp) != 400 {
				t.Errorf("malformed datagram answered %q, want 400", firstLine(resp))
			}
			continue
		}
		if statusOf(resp) != 302 || header(resp, "Call-ID") != fmt.Sprintf("burst-%d@pc33", i) {
			t.Errorf("source %d got %q (Call-ID %q), want its own 302", i, firstLine(resp), header(resp, "Call-ID"))
		}
		if extra := readUDP(t, c, 20*time.Millisecond); extra != "" {
			t.Errorf("source %d got a second datagram %q", i, firstLine(extra))
		}
	}
}
