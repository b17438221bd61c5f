package sipload

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/testutil"
)

// answeredLines are n lines the Call Router would redirect: as full calls
// each must be answered 200 by the back end.
func answeredLines(n int) []Line {
	lines := make([]Line, n)
	for i := range lines {
		lines[i] = Line{Caller: fmt.Sprintf("+4989%04d", i), Called: "80000", Code: 302, Contact: "80000@127.0.0.1:5062"}
	}
	return lines
}

func listenUAS(t *testing.T, cfg UASConfig) *UAS {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:" + fmt.Sprint(testutil.FreeUDPTCPPort(t))
	}
	u, err := ListenUAS(cfg)
	if err != nil {
		t.Fatalf("ListenUAS() = %v", err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// Full calls straight to the UAS: each is answered, ACKed, held, hung up
// and its BYE answered; the UAS took every call and has none up after.
func TestFullCallsToUAS(t *testing.T) {
	u := listenUAS(t, UASConfig{})
	const calls = 300
	res := run(t, Config{Target: u.Addr(), Lines: answeredLines(50), Calls: calls, Rate: 1000, FullCalls: true, Hold: 100 * time.Millisecond})
	if res.Successful != calls || res.Failed != 0 || res.Codes[200] != 2*calls || res.Unexpected+res.Duplicates+res.TransportErrors != 0 {
		t.Errorf("result %s, want %d successful full calls with a 200 to each INVITE and BYE", res, calls)
	}
	if res.Elapsed < 100*time.Millisecond {
		t.Errorf("elapsed %v, shorter than the hold", res.Elapsed)
	}
	var st UASStats
	if !waitFor(func() bool { st = u.Stats(); return st.Ended == calls }) || st.Calls != calls || st.Acked != calls || st.Current != 0 || st.Failed != 0 || st.Unexpected != 0 {
		t.Errorf("uas %+v, want %d calls taken, ACKed and ended", st, calls)
	}
}

// A full call held while the UAS counts it up.
func TestUASCurrentCalls(t *testing.T) {
	u := listenUAS(t, UASConfig{})
	done := make(chan *Result)
	go func() {
		res, _ := Run(context.Background(), Config{Target: u.Addr(), Lines: answeredLines(20), Rate: 200, FullCalls: true, Hold: time.Second})
		done <- res
	}()
	time.Sleep(600 * time.Millisecond)
	if st := u.Stats(); st.Current != 20 || st.Calls != 20 {
		t.Errorf("uas during the hold %+v, want 20 calls up", st)
	}
	res := <-done
	if res == nil || res.Successful != 20 {
		t.Fatalf("result %v", res)
	}
	if st := u.Stats(); st.Current != 0 {
		t.Errorf("uas after the calls %+v, want none up", st)
	}
}

// fakeUDP answers each datagram with what answer returns, from a socket
// on 127.0.0.1.
type fakeUDP struct {
	c    *net.UDPConn
	mu   sync.Mutex
	seen []string // the requests' first lines, in order
}

func serveFake(t *testing.T, answer func(f *fakeUDP, req string, hdr map[string]string) []string) *fakeUDP {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The race detector slows the fake down: a big buffer keeps it from
	// dropping the bursts the UAC sends.
	_ = c.SetReadBuffer(8 << 20)
	f := &fakeUDP{c: c}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req := string(buf[:n])
			hdr := map[string]string{}
			for _, m := range reAnyHeader.FindAllStringSubmatch(req, -1) {
				hdr[m[1]] = m[2]
			}
			f.mu.Lock()
			f.seen = append(f.seen, strings.SplitN(req, "\r\n", 2)[0])
			f.mu.Unlock()
			for _, r := range answer(f, req, hdr) {
				_, _ = c.WriteToUDP([]byte(r), from)
			}
		}
	}()
	return f
}

var reAnyHeader = regexp.MustCompile(`(?m)^([A-Za-z-]+): (.*)\r$`)

func (f *fakeUDP) addr() string { return f.c.LocalAddr().String() }

// count returns how many requests began with prefix.
func (f *fakeUDP) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.seen {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// reply builds an answer to a request from its headers.
func reply(hdr map[string]string, status, extra, body string) string {
	to := hdr["To"]
	if !strings.Contains(to, ";tag=") {
		to += ";tag=fake"
	}
	return fmt.Sprintf("SIP/2.0 %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n%sContent-Length: %d\r\n\r\n%s",
		status, hdr["Via"], hdr["From"], to, hdr["Call-ID"], hdr["CSeq"], extra, len(body), body)
}

const fakeSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"

// A server that answers wrong fails the call for the reason, and every
// final answer is still ACKed where it can be: a 200 without SDP, a 200
// whose Contact leads elsewhere (nowhere to ACK), a 486 where the back end
// should answer, a 200 for a line that must get the router's 404.
func TestFullCallsWrongAnswers(t *testing.T) {
	f := serveFake(t, func(f *fakeUDP, req string, hdr map[string]string) []string {
		if !strings.HasPrefix(req, "INVITE ") {
			return nil
		}
		contact := "Contact: <sip:b2b@" + f.addr() + ">\r\n"
		switch from := hdr["From"]; {
		case strings.Contains(from, "+1"):
			return []string{reply(hdr, "200 OK", contact, "")}
		case strings.Contains(from, "+2"):
			return []string{reply(hdr, "200 OK", "Contact: <sip:b2b@127.0.0.9:5060>\r\n", fakeSDP)}
		case strings.Contains(from, "+3"):
			return []string{reply(hdr, "486 Busy Here", "", "")}
		default:
			return []string{reply(hdr, "200 OK", contact, fakeSDP)}
		}
	})
	lines := []Line{
		{Caller: "+1", Called: "80000", Code: 302},
		{Caller: "+2", Called: "80000", Code: 302},
		{Caller: "+3", Called: "80000", Code: 302},
		{Caller: "+4", Called: "99999", Code: 404},
	}
	res := run(t, Config{Target: f.addr(), Lines: lines, Rate: 100, FullCalls: true, T1: 50 * time.Millisecond, Timeout: time.Second})
	want := map[string]int{"FailedNoSDP": 1, "FailedRouteSet": 1, "FailedUnexpectedStatus": 2}
	if res.Failed != 4 || fmt.Sprint(res.Failures) != fmt.Sprint(want) {
		t.Errorf("result %s, want failures %v", res, want)
	}
	// The 200 without SDP, the 486 and the unwanted 200 are ACKed; the
	// one whose Contact is elsewhere cannot be; no BYE for a failed call.
	if !waitFor(func() bool { return f.count("ACK ") == 3 }) || f.count("BYE ") != 0 {
		t.Errorf("the server saw %v, want 3 ACKs and no BYE", f.seen)
	}
}

// A BYE whose 200 is lost is sent again by Timer E and fails the call by
// Timer F; the call's INVITE was answered and ACKed.
func TestFullCallsByeUnanswered(t *testing.T) {
	f := serveFake(t, func(f *fakeUDP, req string, hdr map[string]string) []string {
		if strings.HasPrefix(req, "INVITE ") {
			return []string{reply(hdr, "200 OK", "Contact: <sip:b2b@"+f.addr()+">\r\n", fakeSDP)}
		}
		return nil
	})
	start := time.Now()
	res := run(t, Config{Target: f.addr(), Lines: answeredLines(1), Rate: 10, FullCalls: true, T1: 20 * time.Millisecond, Timeout: 400 * time.Millisecond})
	if res.Failed != 1 || res.Failures["FailedByeTimeout"] != 1 || res.Retransmissions < 3 {
		t.Errorf("result %s, want the call failed by Timer F after BYE retransmissions", res)
	}
	if f.count("ACK ") != 1 || f.count("BYE ") != res.Retransmissions+1 || f.count("BYE ") < 4 {
		t.Errorf("the server saw %v, want one ACK and the BYE with %d retransmissions", f.seen, res.Retransmissions)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("failed after %v, before Timer F", d)
	}
}

// A BYE answered other than 200 fails the call.
func TestFullCallsByeRefused(t *testing.T) {
	f := serveFake(t, func(f *fakeUDP, req string, hdr map[string]string) []string {
		switch {
		case strings.HasPrefix(req, "INVITE "):
			return []string{reply(hdr, "200 OK", "Contact: <sip:b2b@"+f.addr()+">\r\n", fakeSDP)}
		case strings.HasPrefix(req, "BYE "):
			return []string{reply(hdr, "481 Call Does Not Exist", "", "")}
		}
		return nil
	})
	res := run(t, Config{Target: f.addr(), Lines: answeredLines(1), Rate: 10, FullCalls: true, T1: 20 * time.Millisecond, Timeout: 400 * time.Millisecond})
	if res.Failed != 1 || res.Failures["FailedByeStatus"] != 1 || res.Codes[481] != 1 {
		t.Errorf("result %s, want the call failed by the BYE's 481", res)
	}
}

// The ACK and BYE of a record-routed call go to the Contact with the
// route set reversed as Route (a loose route, RFC 3261 12.1.2), in the
// dialog: the 200's To tag, the INVITE's From tag, CSeq 1 ACK and 2 BYE,
// branches of their own; a retransmitted 200 is ACKed again.
func TestFullCallsRouteSet(t *testing.T) {
	var byes atomic.Int64
	var bye string
	var mu sync.Mutex
	f := serveFake(t, func(f *fakeUDP, req string, hdr map[string]string) []string {
		switch {
		case strings.HasPrefix(req, "INVITE "):
			// The proxy next to the caller (the Target) records last.
			rr := "Record-Route: <sip:10.0.0.2;transport=tcp;lr>, <sip:10.0.0.1:5070;lr>\r\nRecord-Route: <sip:" + f.addr() + ";lr;ftag=x>\r\n"
			ok := reply(hdr, "200 OK", rr+"Contact: <sip:callee@10.0.0.3:5080;transport=tcp>;expires=60\r\n", fakeSDP)
			return []string{ok, ok}
		case strings.HasPrefix(req, "BYE "):
			if byes.Add(1) == 1 {
				mu.Lock()
				bye = req
				mu.Unlock()
			}
			return []string{reply(hdr, "200 OK", "", "")}
		}
		return nil
	})
	res := run(t, Config{Target: f.addr(), Lines: answeredLines(1), Rate: 10, FullCalls: true, Hold: 50 * time.Millisecond})
	if res.Successful != 1 || res.Duplicates != 1 {
		t.Errorf("result %s, want the call up and its second 200 a duplicate", res)
	}
	if !waitFor(func() bool { return f.count("ACK ") == 2 }) {
		t.Errorf("the server saw %v, want both 200s ACKed", f.seen)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{
		"BYE sip:callee@10.0.0.3:5080;transport=tcp SIP/2.0\r\n",
		";branch=z9hG4bK-", "-b\r\n",
		"To: <sip:80000@" + f.addr() + ">;tag=fake\r\n",
		"CSeq: 2 BYE\r\n",
		"Route: <sip:" + f.addr() + ";lr;ftag=x>, <sip:10.0.0.1:5070;lr>, <sip:10.0.0.2;transport=tcp;lr>\r\n",
	} {
		if !strings.Contains(bye, want) {
			t.Errorf("BYE lacks %q:\n%s", want, bye)
		}
	}
}

func TestRouteSetAndURIs(t *testing.T) {
	set, ok := routeSet(make([][]byte, 0, 4), [][]byte{[]byte("<sip:a;lr>, <sip:b,c@h;lr>"), []byte("<sip:d:5070;lr>")})
	if !ok || fmt.Sprintf("%q", set) != `["<sip:d:5070;lr>" "<sip:b,c@h;lr>" "<sip:a;lr>"]` {
		t.Errorf("routeSet = %q, %v", set, ok)
	}
	if _, ok := routeSet(make([][]byte, 0, 1), [][]byte{[]byte("<sip:a;lr>, <sip:b;lr>")}); ok {
		t.Error("routeSet over capacity accepted")
	}
	if _, ok := routeSet(make([][]byte, 0, 4), [][]byte{[]byte("sip:a;lr")}); ok {
		t.Error("routeSet of an addr-spec accepted")
	}
	for in, want := range map[string]string{
		"sip:u@127.0.0.1:5070;transport=tcp": "127.0.0.1 5070", "sip:127.0.0.2": "127.0.0.2 5060", "sip:[::1]:5062;lr": "::1 5062",
	} {
		h, p, ok := uriHostPort([]byte(in))
		if got := fmt.Sprintf("%s %d", h, p); !ok || got != want {
			t.Errorf("uriHostPort(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"tel:+49", "sip:", "sip:h:0", "sip:h:x", "sip:[::1"} {
		if _, _, ok := uriHostPort([]byte(bad)); ok {
			t.Errorf("uriHostPort(%q) accepted", bad)
		}
	}
	if !isLooseRoute([]byte("<sip:h;ftag=x;lr>")) || !isLooseRoute([]byte("<sip:h;lr=on>")) || isLooseRoute([]byte("<sip:h;lrx>")) || isLooseRoute([]byte("<sip:h>;lr")) {
		t.Error("isLooseRoute wrong")
	}
	if got := string(uriOf([]byte(`"Bob" <sip:b@h;transport=tcp>;expires=5`))); got != "sip:b@h;transport=tcp" {
		t.Errorf("uriOf = %q", got)
	}
}

// Full calls are UDP only, and a hold needs them.
func TestFullCallsConfigInvalid(t *testing.T) {
	lines := answeredLines(1)
	for _, cfg := range []Config{
		{Target: "127.0.0.1:5060", Lines: lines, Rate: 1, FullCalls: true, Transport: "tcp"},
		{Target: "127.0.0.1:5060", Lines: lines, Rate: 1, Hold: time.Second},
		{Target: "127.0.0.1:5060", Lines: lines, Rate: 1, FullCalls: true, Hold: -time.Second},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) = nil error", cfg)
		}
	}
}

// Full calls over IPv6: the UAC's and the UAS's sockets, addresses and
// URIs ([::1]) as over IPv4.
func TestFullCallsIPv6(t *testing.T) {
	l, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback: %v", err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	u := listenUAS(t, UASConfig{Addr: fmt.Sprintf("[::1]:%d", port)})
	res := run(t, Config{Target: u.Addr(), Lines: answeredLines(10), Rate: 200, FullCalls: true, Hold: 50 * time.Millisecond})
	if res.Successful != 10 || res.Failed != 0 {
		t.Errorf("result %s, want 10 full calls over IPv6", res)
	}
	if st := u.Stats(); st.Ended != 10 || st.Acked != 10 {
		t.Errorf("uas %+v", st)
	}
}

// The answers of an established call cost no allocation: the UAC's
// handling of a BYE's 200, the UAS's of an ACK and of a retransmitted BYE.
func TestFullCallAllocs(t *testing.T) {
	l := newLocal("127.0.0.1", 5070, "UDP", "127.0.0.1:5060", "tok")
	e := newEngine(Config{Target: "127.0.0.1:5060", Lines: answeredLines(1), Calls: 1, FullCalls: true})
	e.start = time.Now()
	e.state[0].Store(stateHangingUp)
	byeOK := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-tok-0-b\r\nFrom: <sip:1@127.0.0.1:5070>;tag=tok-0\r\n" +
		"To: <sip:80000@127.0.0.1:5060>;tag=s\r\nCall-ID: 0-tok@127.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
	var cnt counters
	if allocs := testing.AllocsPerRun(100, func() { e.handle(byeOK, 1000, l, &cnt, nil) }); allocs != 0 {
		t.Errorf("the UAC allocates %v times per BYE answer", allocs)
	}
	if e.state[0].Load() != stateSuccessful || cnt.codes[200] != 1 || cnt.duplicates != 100 {
		t.Errorf("state %d, counters %+v", e.state[0].Load(), cnt)
	}

	u := listenUAS(t, UASConfig{})
	var o out
	var r response
	msg := func(m string) *response {
		if !parseMessage([]byte(m), &r) {
			t.Fatalf("parseMessage(%q) = false", m)
		}
		return &r
	}
	var addr unix.RawSockaddrAny
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handle(msg(request("INVITE", "a1", "127.0.0.1:5070", "UDP", "", 1)), &o, true, &addr, 16)
	ack, bye := request("ACK", "a1", "127.0.0.1:5070", "UDP", "uas-1", 1), request("BYE", "a1", "127.0.0.1:5070", "UDP", "uas-1", 2)
	for _, m := range []struct{ name, req string }{{"ACK", ack}, {"BYE", bye}} { // in a dialog's order: a BYE before the ACK is another case
		name, b := m.name, []byte(m.req)
		if allocs := testing.AllocsPerRun(100, func() {
			o.reset()
			parseMessage(b, &r)
			u.handle(&r, &o, true, &addr, 16)
		}); allocs != 0 {
			t.Errorf("the UAS allocates %v times per %s", allocs, name)
		}
	}
	if u.st.Calls != 1 || u.st.Acked != 1 || u.st.Ended != 1 {
		t.Errorf("uas %+v", u.st)
	}
}
