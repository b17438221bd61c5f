package sipload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/sipptest"
)

// fakeRouter is a SIP server for the mix in Go: it decides each INVITE
// from the mix directory as umrouter (and sipbench's Kamailio script) do,
// independently of the lines' expected answers, and can be told to
// misanswer, drop or ignore some INVITEs by their arrival order.
type fakeRouter struct {
	t   *testing.T
	mix *sipptest.MixFiles
	// spoil, when set, may change the n-th first INVITE's answer (0-based
	// by arrival): its code and Contact host, or drop=true for no answer
	// to this copy, or trying=true for a 100 Trying first.
	spoil func(n int, code int, host string) (int, string, spoilHow)

	mu      sync.Mutex
	seen    map[string]int // Call-ID → arrival number of its first INVITE
	copies  map[string]int // Call-ID → INVITE copies received
	acks    atomic.Int64
	invites atomic.Int64
}

type spoilHow struct {
	drop, silent, trying bool
	delay                time.Duration // answer this late
}

func newFakeRouter(t *testing.T, calls int) (*fakeRouter, []Line) {
	t.Helper()
	mix, err := sipptest.WriteMix(t.TempDir(), sipptest.Mix{Seed: 7, Calls: calls})
	if err != nil {
		t.Fatal(err)
	}
	lines, err := ReadCSV(mix.CSV)
	if err != nil {
		t.Fatalf("ReadCSV() = %v", err)
	}
	if len(lines) != calls {
		t.Fatalf("ReadCSV() read %d lines, want %d", len(lines), calls)
	}
	return &fakeRouter{t: t, mix: mix, seen: map[string]int{}, copies: map[string]int{}}, lines
}

var (
	reRURI      = regexp.MustCompile(`^INVITE sip:([^@]+)@`)
	reFromUser  = regexp.MustCompile(`(?m)^From: <sip:([^@]+)@`)
	reDiversion = regexp.MustCompile(`(?m)^Diversion: <sip:([^@]+)@`)
	reHeader    = regexp.MustCompile(`(?m)^(Via|From|To|Call-ID|CSeq): (.*)\r$`)
	reExt       = regexp.MustCompile(`^[0-9]{5}$`)
	reNumeric   = regexp.MustCompile(`^[+]?[0-9]+$`)
)

// decide is the mix's answer to an INVITE: 302 and the back end's host,
// or 404.
func (f *fakeRouter) decide(req string) (int, string) {
	ruri := reRURI.FindStringSubmatch(req)[1]
	from := reFromUser.FindStringSubmatch(req)[1]
	if !reNumeric.MatchString(from) {
		return 404, ""
	}
	n := ruri
	if d := reDiversion.FindStringSubmatch(req); d != nil {
		n = d[1]
	} else if ruri == f.mix.Pilot {
		return 302, f.mix.PilotHost
	}
	host, ok := f.mix.Mailboxes[n]
	if !reExt.MatchString(n) || !ok {
		return 404, ""
	}
	return 302, host
}

// answer returns the responses to one request (none for an ACK).
func (f *fakeRouter) answer(req string) []string {
	if strings.HasPrefix(req, "ACK ") {
		f.acks.Add(1)
		return nil
	}
	if !strings.HasPrefix(req, "INVITE ") {
		f.t.Errorf("fake router got %q", strings.SplitN(req, "\r\n", 2)[0])
		return nil
	}
	f.invites.Add(1)
	hdr := map[string]string{}
	for _, m := range reHeader.FindAllStringSubmatch(req, -1) {
		hdr[m[1]] = m[2]
	}
	code, host := f.decide(req)
	f.mu.Lock()
	n, ok := f.seen[hdr["Call-ID"]]
	if !ok {
		n = len(f.seen)
		f.seen[hdr["Call-ID"]] = n
	}
	f.copies[hdr["Call-ID"]]++
	first := f.copies[hdr["Call-ID"]] == 1
	f.mu.Unlock()
	var how spoilHow
	if f.spoil != nil {
		code, host, how = f.spoil(n, code, host)
	}
	if how.silent && !how.trying || how.drop && first {
		return nil
	}
	ruri := reRURI.FindStringSubmatch(req)[1]
	resp := func(code int, extra string) string {
		return fmt.Sprintf("SIP/2.0 %d %s\r\nVia: %s\r\nFrom: %s\r\nTo: %s;tag=fake\r\nCall-ID: %s\r\nCSeq: %s\r\n%sContent-Length: 0\r\n\r\n",
			code, map[int]string{100: "Trying", 302: "Moved Temporarily", 404: "Not Found"}[code],
			hdr["Via"], hdr["From"], hdr["To"], hdr["Call-ID"], hdr["CSeq"], extra)
	}
	if how.delay > 0 {
		time.Sleep(how.delay)
	}
	var out []string
	if how.trying {
		out = append(out, resp(100, ""))
		if how.silent {
			return out
		}
	}
	if code == 302 {
		return append(out, resp(302, fmt.Sprintf("Contact: <sip:%s@%s:%d;transport=tcp>\r\n", ruri, host, sipptest.MixBackendPort)))
	}
	return append(out, resp(code, ""))
}

// serveUDP answers on a UDP socket until the test ends.
func (f *fakeRouter) serveUDP() string {
	return serveFake(f.t, func(_ *fakeUDP, req string, _ map[string]string) []string { return f.answer(req) }).addr()
}

// serveTCP answers on a TCP listener until the test ends.
func (f *fakeRouter) serveTCP() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.t.Cleanup(func() { c.Close() })
			go func() {
				rd := bufio.NewReader(c)
				for {
					var msg strings.Builder
					length := 0
					for {
						line, err := rd.ReadString('\n')
						if err != nil {
							return
						}
						msg.WriteString(line)
						if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
							length, _ = strconv.Atoi(strings.TrimSpace(v))
						}
						if line == "\r\n" {
							break
						}
					}
					body := make([]byte, length)
					if _, err := io.ReadFull(rd, body); err != nil {
						return
					}
					msg.Write(body)
					for _, r := range f.answer(msg.String()) {
						if _, err := c.Write([]byte(r)); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run() = %v", err)
	}
	t.Logf("%s", res)
	return res
}

// waitFor reports whether ok holds within a second: the server reads the
// last ACKs after Run has returned.
func waitFor(ok func() bool) bool {
	for range 100 {
		if ok() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func wantCodes(lines []Line) map[int]int {
	m := map[int]int{}
	for _, l := range lines {
		m[l.Code]++
	}
	return m
}

// A server that answers the mix right gets every call counted
// successful, every answer ACKed and every latency recorded, over UDP and
// over one and several TCP connections.
func TestRunRightAnswers(t *testing.T) {
	for _, tt := range []struct {
		name      string
		transport string
		conns     int
	}{
		{"udp", "udp", 1},
		{"tcp", "tcp", 1},
		{"tcp 3 connections", "tcp", 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, lines := newFakeRouter(t, 400)
			target := f.serveUDP()
			if tt.transport == "tcp" {
				target = f.serveTCP()
			}
			res := run(t, Config{Target: target, Transport: tt.transport, Conns: tt.conns, Lines: lines, Rate: 1000, Timeout: 5 * time.Second})
			if res.Successful != 400 || res.Failed != 0 || res.Created != 400 || res.Unexpected != 0 {
				t.Errorf("result %s, want all 400 successful", res)
			}
			if want := wantCodes(lines); fmt.Sprint(res.Codes) != fmt.Sprint(want) {
				t.Errorf("codes %v, want %v", res.Codes, want)
			}
			// Every answer is ACKed, again when it comes again.
			if !waitFor(func() bool { return f.acks.Load() == int64(400+res.Duplicates) }) || f.invites.Load() != int64(400+res.Retransmissions) {
				t.Errorf("server got %d INVITEs and %d ACKs, want 400 and the retransmissions, 400 and the duplicates", f.invites.Load(), f.acks.Load())
			}
			if res.Latency.N != 400 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Elapsed < 150*time.Millisecond {
				t.Errorf("latency %+v over %v, want 400 positive samples over at least 0.2 s of calls", res.Latency, res.Elapsed)
			}
			if tt.conns > 1 && len(f.seen) != 400 {
				t.Errorf("server saw %d calls", len(f.seen))
			}
		})
	}
}

// A server that answers some calls with the wrong Contact host or the
// wrong status gets exactly those counted failed, by reason.
func TestRunWrongAnswersFail(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			f, lines := newFakeRouter(t, 300)
			var mu sync.Mutex
			wrongContact, wrongStatus := map[int]bool{}, map[int]bool{} // by arrival, as retransmissions repeat it
			f.spoil = func(n, code int, host string) (int, string, spoilHow) {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case n%7 == 3 && code == 302:
					wrongContact[n] = true
					return code, map[string]string{"127.0.0.1": "127.0.0.2", "127.0.0.2": "127.0.0.1"}[host], spoilHow{}
				case n%11 == 5 && code == 404:
					wrongStatus[n] = true
					return 302, "127.0.0.1", spoilHow{}
				case n%11 == 5:
					wrongStatus[n] = true
					return 404, "", spoilHow{}
				}
				return code, host, spoilHow{}
			}
			target := f.serveUDP()
			if transport == "tcp" {
				target = f.serveTCP()
			}
			res := run(t, Config{Target: target, Transport: transport, Lines: lines, Rate: 1000, Timeout: 5 * time.Second})
			mu.Lock()
			wc, ws := len(wrongContact), len(wrongStatus)
			mu.Unlock()
			if wc == 0 || ws == 0 {
				t.Fatalf("spoiled %d Contacts and %d statuses, want some of each", wc, ws)
			}
			if res.Failed != wc+ws || res.Successful != 300-wc-ws ||
				res.Failures["FailedContactMismatch"] != wc || res.Failures["FailedUnexpectedStatus"] != ws {
				t.Errorf("result %s, want %d failed on the Contact and %d on the status", res, wc, ws)
			}
			if !waitFor(func() bool { return f.acks.Load() == int64(300+res.Duplicates) }) {
				t.Errorf("server got %d ACKs, want one for each of the 300 answers and %d duplicates", f.acks.Load(), res.Duplicates)
			}
		})
	}
}

// Over UDP a lost INVITE is sent again after T1 (Timer A) and the call
// then succeeds; a call with no answer fails at Timer B after
// retransmissions at T1 and 3·T1; a call that gets only a 100 Trying is
// not sent again (the transaction is Proceeding) and fails at Timer B.
func TestRunUDPTimers(t *testing.T) {
	f, lines := newFakeRouter(t, 200)
	const t1 = 200 * time.Millisecond // well above the fake's latency under the race detector on a busy machine
	f.spoil = func(n, code int, host string) (int, string, spoilHow) {
		switch n % 10 {
		case 1:
			return code, host, spoilHow{drop: true}
		case 2:
			return code, host, spoilHow{silent: true}
		case 3:
			return code, host, spoilHow{silent: true, trying: true}
		}
		return code, host, spoilHow{}
	}
	target := f.serveUDP()
	// Timer B at 5·T1: retransmissions at T1 and 3·T1, the next would be at 7·T1.
	res := run(t, Config{Target: target, Lines: lines, Rate: 1000, T1: t1, Timeout: 5 * t1})
	const d, s, p = 20, 20, 20 // arrivals 1, 11 … dropped once; 2, 12 … never answered; 3, 13 … only 100 Trying
	if res.Failed != s+p || res.Failures["FailedTimeoutOnRecv"] != s+p || res.Successful != 200-s-p {
		t.Errorf("result %s, want the %d unanswered calls timed out and the rest successful", res, s+p)
	}
	if res.Retransmissions < d+2*s || f.invites.Load() != int64(200+res.Retransmissions) {
		t.Errorf("%d retransmissions, %d INVITEs at the server, want at least %d (one per dropped INVITE, two per silent call), all received",
			res.Retransmissions, f.invites.Load(), d+2*s)
	}
	f.mu.Lock()
	for id, n := range f.seen {
		if c := f.copies[id]; n%10 == 2 && c != 3 || n%10 == 3 && c != 1 {
			t.Errorf("call %s (arrival %d) sent %d times", id, n, c)
		}
	}
	f.mu.Unlock()
	if res.Latency.Max < t1 || res.Latency.N != 200-s-p {
		t.Errorf("latency %+v, want %d samples and at least T1 %v for the retransmitted calls", res.Latency, 200-s-p, t1)
	}
}

// Over TCP an answer that comes after Timer B does not save its call: the
// call fails on the timeout and the answer counts as late (and is ACKed).
func TestRunLateAnswer(t *testing.T) {
	f, lines := newFakeRouter(t, 20)
	f.spoil = func(n, code int, host string) (int, string, spoilHow) {
		if n == 5 {
			return code, host, spoilHow{delay: 300 * time.Millisecond}
		}
		return code, host, spoilHow{}
	}
	res := run(t, Config{Target: f.serveTCP(), Transport: "tcp", Lines: lines, Rate: 100, T1: 20 * time.Millisecond, Timeout: 200 * time.Millisecond})
	// The fake serves one connection in order: the calls behind the late
	// one (sent at 50 ms, answered at 350 ms) wait with it; those sent
	// before 150 ms pass Timer B first, the later ones succeed, and all
	// the answers come before the last call ends.
	if res.Late < 2 || res.Failures["FailedTimeoutOnRecv"] != res.Late || res.Successful != 20-res.Late || res.Successful < 5 || res.Duplicates != 0 {
		t.Errorf("result %s, want each call held past Timer B failed and its answer late", res)
	}
	if want := int64(res.Successful + res.Late); !waitFor(func() bool { return f.acks.Load() == want }) {
		t.Errorf("server got %d ACKs, want %d", f.acks.Load(), want)
	}
}

// The INVITE is SIPp's uac_mix.xml INVITE, and the ACK repeats its
// branch, From, Call-ID and the answer's To.
func TestInviteAndAck(t *testing.T) {
	l := newLocal("127.0.0.1", 5070, "UDP", "127.0.0.1:5060", "tok")
	ln := &Line{Caller: "+498912345678", Called: "80000", Reason: "no-answer", Diverted: "12345", Code: 302, Contact: "80000@127.0.0.2:5062"}
	inv := string(l.appendInvite(nil, 42, ln, l.sdp()))
	for _, want := range []string{
		"INVITE sip:80000@127.0.0.1:5060 SIP/2.0\r\n",
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-tok-42\r\n",
		"From: <sip:+498912345678@127.0.0.1:5070>;tag=tok-42\r\n",
		"To: <sip:80000@127.0.0.1:5060>\r\n",
		"Call-ID: 42-tok@127.0.0.1\r\n",
		"CSeq: 1 INVITE\r\n",
		"Diversion: <sip:12345@127.0.0.1>;reason=no-answer;counter=1\r\n",
		"Content-Type: application/sdp\r\n",
		"\r\n\r\nv=0\r\n",
	} {
		if !strings.Contains(inv, want) {
			t.Errorf("INVITE lacks %q:\n%s", want, inv)
		}
	}
	head, body, _ := strings.Cut(inv, "\r\n\r\n")
	if !strings.HasSuffix(head, fmt.Sprintf("\r\nContent-Length: %d", len(body))) {
		t.Errorf("Content-Length does not match the body of %d bytes:\n%s", len(body), inv)
	}
	ack := string(l.appendAck(nil, 42, ln, []byte("<sip:80000@127.0.0.1:5060>;tag=x")))
	for _, want := range []string{"ACK sip:80000@127.0.0.1:5060 SIP/2.0\r\n", "branch=z9hG4bK-tok-42\r\n", ";tag=tok-42\r\n",
		"To: <sip:80000@127.0.0.1:5060>;tag=x\r\n", "Call-ID: 42-tok@127.0.0.1\r\n", "CSeq: 1 ACK\r\n"} {
		if !strings.Contains(ack, want) {
			t.Errorf("ACK lacks %q:\n%s", want, ack)
		}
	}
	if i, ok := l.callIndex([]byte("42-tok@127.0.0.1"), 100); !ok || i != 42 {
		t.Errorf("callIndex = %d, %v", i, ok)
	}
	for _, bad := range []string{"42-tok@127.0.0.2", "42-tak@127.0.0.1", "142-tok@127.0.0.1", "-tok@127.0.0.1", "42"} {
		if _, ok := l.callIndex([]byte(bad), 100); ok {
			t.Errorf("callIndex(%q) accepted", bad)
		}
	}
}

func TestParseMessage(t *testing.T) {
	msg := "SIP/2.0 302 Moved\r\nvia: x\r\ni: 1-a@b\r\nCSEQ:  1 INVITE \r\nt: <sip:x>;tag=y\r\nm: <sip:1@h:5;transport=tcp>\r\nContact: <sip:2@h>\r\nl: 3\r\n\r\nabc"
	var r response
	if !parseMessage([]byte(msg), &r) {
		t.Fatal("parseMessage() = false")
	}
	if r.code != 302 || string(r.callID) != "1-a@b" || !isInviteCSeq(r.cseq) || string(r.to) != "<sip:x>;tag=y" ||
		string(r.contact) != "<sip:1@h:5;transport=tcp>" || r.contentLength != 3 || r.headerLen != len(msg)-3 {
		t.Errorf("parsed %+v", r)
	}
	if got, ok := contactTarget(r.contact); !ok || string(got) != "1@h:5" {
		t.Errorf("contactTarget = %q, %v", got, ok)
	}
	for _, c := range []string{"<sip:1@h:5>", "<sip:1@h:5;transport=udp>", "sip:1@h:5;transport=tcp", "<sip:;transport=tcp>"} {
		if _, ok := contactTarget([]byte(c)); ok {
			t.Errorf("contactTarget(%q) accepted", c)
		}
	}
	for _, m := range []string{"INVITE sip:x SIP/2.0\r\n\r\n", "SIP/2.0 3x2 X\r\n\r\n", "SIP/2.0 302\r\n\r\n"} {
		if !parseMessage([]byte(m), &r) || r.code != 0 {
			t.Errorf("parseMessage(%q) code %d, want 0", m, r.code)
		}
	}
	if parseMessage([]byte("SIP/2.0 302 Moved\r\nCall-ID: x\r\n"), &r) {
		t.Error("parseMessage() of a torn head = true")
	}
	if isInviteCSeq([]byte("1 ACK")) || isInviteCSeq([]byte("2 INVITE")) {
		t.Error("isInviteCSeq accepted another CSeq")
	}
}

func TestParseCSV(t *testing.T) {
	lines, err := ParseCSV("SEQUENTIAL\n+491;80000;no-answer;12345;302;80000@127.0.0.1:5062\n+492;99999;;;404;-\n", "x.csv")
	if err != nil {
		t.Fatal(err)
	}
	want := []Line{{"+491", "80000", "no-answer", "12345", 302, "80000@127.0.0.1:5062"}, {"+492", "99999", "", "", 404, ""}}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("ParseCSV() = %v, want %v", lines, want)
	}
	for _, bad := range []string{"RANDOM\na;b;;;302;-\n", "SEQUENTIAL\na;b;;302;-\n", "SEQUENTIAL\na;b;;;3o2;-\n", "SEQUENTIAL\na;b;x;;302;-\n", "SEQUENTIAL\n"} {
		if _, err := ParseCSV(bad, "x.csv"); err == nil || !strings.Contains(err.Error(), "x.csv") {
			t.Errorf("ParseCSV(%q) = %v, want an error naming the file", bad, err)
		}
	}
}

func TestConfigInvalid(t *testing.T) {
	lines := []Line{{Caller: "1", Called: "2", Code: 404}}
	for _, cfg := range []Config{
		{Target: "localhost", Lines: lines, Rate: 1},
		{Target: "127.0.0.1:5060", Lines: lines, Rate: 0},
		{Target: "127.0.0.1:5060", Rate: 1},
		{Target: "127.0.0.1:5060", Lines: lines, Rate: 1, Transport: "tls"},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) = nil error", cfg)
		}
	}
}

// The receive loop allocates nothing per answer.
func TestHandleAllocs(t *testing.T) {
	l := newLocal("127.0.0.1", 5070, "UDP", "127.0.0.1:5060", "tok")
	lines := []Line{{Caller: "1", Called: "80000", Code: 302, Contact: "80000@127.0.0.1:5062"}}
	e := newEngine(Config{Lines: lines, Calls: 1})
	e.start = time.Now()
	e.state[0].Store(stateCalling)
	msg := []byte("SIP/2.0 302 Moved\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-tok-0\r\nFrom: <sip:1@127.0.0.1:5070>;tag=tok-0\r\n" +
		"To: <sip:80000@127.0.0.1:5060>;tag=s\r\nCall-ID: 0-tok@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:80000@127.0.0.1:5062;transport=tcp>\r\nContent-Length: 0\r\n\r\n")
	var cnt counters
	ack := make([]byte, 0, 4096)
	if allocs := testing.AllocsPerRun(100, func() { ack = e.handle(msg, 1000, l, &cnt, ack[:0]) }); allocs != 0 {
		t.Errorf("handle allocates %v times per answer", allocs)
	}
	if cnt.codes[302] != 1 || cnt.duplicates != 100 || e.state[0].Load() != stateSuccessful {
		t.Errorf("counters %+v, state %d", cnt, e.state[0].Load())
	}
}
