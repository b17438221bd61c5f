package b2bua

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// The tests drive the engine as the front would, with a transport and a
// media engine that record what they are given.

var (
	callerAddr  = netip.MustParseAddrPort("192.0.2.10:5060")
	frontAddr   = netip.MustParseAddrPort("198.51.100.1:5060")
	backendAddr = netip.MustParseAddrPort("203.0.113.5:5062")
	workerAddr  = netip.MustParseAddrPort("203.0.113.5:5065")
)

type sent struct {
	tp  router.Transport
	dst netip.AddrPort
	msg sip.Message
}

type recorder struct {
	mu   sync.Mutex
	msgs []sent
	ch   chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) add(tp router.Transport, dst netip.AddrPort, b []byte) {
	m, err := sip.NewParser().ParseSIP(b)
	if err != nil {
		panic(fmt.Sprintf("engine sent an unparsable message: %v\n%s", err, b))
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, sent{tp, dst, m})
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// next waits for the next message.
func (r *recorder) next(t *testing.T) sent {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(3 * time.Second):
		t.Fatal("no message")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs[0]
	r.msgs = r.msgs[1:]
	return m
}

func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.ch:
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("unexpected message:\n%s", r.msgs[0].msg)
	case <-time.After(d):
	}
}

type fakeTransport struct{ r *recorder }

func (f fakeTransport) Send(tp router.Transport, dst netip.AddrPort, _ string, msg []byte) error {
	f.r.add(tp, dst, msg)
	return nil
}

func (f fakeTransport) Local(tp router.Transport, dst netip.Addr) (netip.AddrPort, error) {
	return frontAddr, nil
}

func (f fakeTransport) Resolve(host string) (netip.Addr, error) { return netip.ParseAddr(host) }

type senderTo struct {
	r   *recorder
	dst netip.AddrPort
}

func (s senderTo) Send(b []byte) { s.r.add(router.UDP, s.dst, b) }

// fakeMedia rewrites SDP to a marker naming the side and call, so a test
// sees which offer or answer reached which leg.
type fakeMedia struct {
	mu       sync.Mutex
	noPorts  bool
	closed   int
	sessions int
	settled  int
}

type fakeSession struct{ m *fakeMedia }

func (m *fakeMedia) NewSession(string, *Target, netip.Addr, netip.Addr, func()) (MediaSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.noPorts {
		return nil, fmt.Errorf("%w: test", ErrNoMediaPorts)
	}
	m.sessions++
	return fakeSession{m}, nil
}

func rewritten(kind string, from Side, sdp []byte) []byte {
	if strings.Contains(string(sdp), "garbage") {
		return nil
	}
	return fmt.Appendf(nil, "v=0\r\no=umedge 1 1 IN IP4 198.51.100.1\r\ns=%s-from-%d\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n", kind, from)
}

func (s fakeSession) Offer(from Side, sdp []byte) ([]byte, error) {
	if b := rewritten("offer", from, sdp); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("%w: garbage", ErrSDP)
}

func (s fakeSession) Answer(from Side, sdp []byte) ([]byte, error) {
	return rewritten("answer", from, sdp), nil
}
func (s fakeSession) Reject(Side) {}
func (s fakeSession) Close() {
	s.m.mu.Lock()
	s.m.closed++
	s.m.mu.Unlock()
}
func (s fakeSession) Stats() any { return map[string]int{"packets": 0} }
func (s fakeSession) Settle() {
	s.m.mu.Lock()
	s.m.settled++
	s.m.mu.Unlock()
}

type harness struct {
	e      *Engine
	a      *recorder // what the caller got
	b      *recorder // what the back end got
	media  *fakeMedia
	cdr    string
	target Target
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	h := &harness{a: newRecorder(), b: newRecorder(), media: &fakeMedia{}, cdr: filepath.Join(t.TempDir(), "cdr.jsonl")}
	w, err := OpenCDR(h.cdr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FQDN == "" {
		cfg.FQDN = "sbc.example.net"
	}
	h.e = New(cfg, fakeTransport{h.b}, h.media, w, nil)
	h.target = Target{Gateway: "gw", DialPlan: "dp", Pool: "um", User: "1001",
		Call:    &router.Call{Diversion: []router.Diversion{{User: "1001", Reason: "no-answer"}}},
		Backend: &router.Backend{Name: "um1", Host: backendAddr.Addr().String(), TCPPort: int(backendAddr.Port())}}
	return h
}

func (h *harness) inbound() Inbound {
	return Inbound{Transport: router.UDP, Source: callerAddr, Local: frontAddr,
		Reply: senderTo{h.a, callerAddr}, Requests: senderTo{h.a, callerAddr}}
}

func parse(t *testing.T, s string) sip.Message {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(strings.ReplaceAll(s, "\n", "\r\n")))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, s)
	}
	return m
}

// reparse parses a message sipgo wrote (CRLF already).
func reparse(t *testing.T, s string) sip.Message {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(s))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, s)
	}
	return m
}

func parseWithBody(t *testing.T, head, body string) sip.Message {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(strings.ReplaceAll(head, "\n", "\r\n") + body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, head)
	}
	return m
}

const callerSDP = "v=0\no=gw 7 7 IN IP4 10.1.1.1\ns=-\nc=IN IP4 10.1.1.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"

func invite(t *testing.T, callID, branch, sdp string, extra ...string) *sip.Request {
	t.Helper()
	for i, e := range extra {
		extra[i] = strings.ReplaceAll(e, "\r\n", "\n")
	}
	body := strings.ReplaceAll(sdp, "\n", "\r\n")
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\n"
	}
	msg := "INVITE sip:1001@198.51.100.1 SIP/2.0\n" +
		"Via: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK" + branch + ";rport\n" +
		"Max-Forwards: 70\n" +
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\n" +
		"To: <sip:1001@198.51.100.1>\n" +
		"Call-ID: " + callID + "\n" +
		"CSeq: 1 INVITE\n" +
		"Contact: <sip:2001@10.1.1.1:5060>\n" +
		"Record-Route: <sip:10.1.1.254;lr>\n" +
		"Diversion: <sip:1001@10.1.1.1>;reason=no-answer\n" +
		strings.Join(extra, "") +
		ct + fmt.Sprintf("Content-Length: %d\n\n", len(body))
	return parseWithBody(t, msg, body).(*sip.Request)
}

// answer builds the back end's response to req.
func answer(t *testing.T, req sip.Message, code int, reason, toTag, contact, sdp string) *sip.Response {
	t.Helper()
	r := req.(*sip.Request)
	res := sip.NewResponseFromRequest(r, code, reason, nil)
	if toTag != "" {
		res.To().Params.Add("tag", toTag)
	}
	if contact != "" {
		res.AppendHeader(sip.NewHeader("Contact", contact))
	}
	if sdp != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		res.SetBody([]byte(strings.ReplaceAll(sdp, "\n", "\r\n")))
	}
	return reparse(t, res.String()).(*sip.Response)
}

// request builds an in-dialog request from the side that got msg (a
// request of ours): From and To swapped.
func inDialog(t *testing.T, method string, to sip.Message, cseq int, viaHost string, sdp string) *sip.Request {
	t.Helper()
	req := to.(*sip.Request)
	from, toh := req.To(), req.From()
	body := strings.ReplaceAll(sdp, "\n", "\r\n")
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\n"
	}
	s := method + " " + req.Contact().Address.String() + " SIP/2.0\n" +
		"Via: SIP/2.0/TCP " + viaHost + ";branch=z9hG4bK" + method + fmt.Sprint(cseq) + "\n" +
		"From: " + from.Value() + ";tag=backend1\n" +
		"To: " + toh.Value() + "\n" +
		"Call-ID: " + string(*req.CallID()) + "\n" +
		fmt.Sprintf("CSeq: %d %s\n", cseq, method) +
		"Contact: <sip:" + viaHost + ";transport=tcp>\n" + ct +
		fmt.Sprintf("Content-Length: %d\n\n", len(body))
	return parseWithBody(t, s, body).(*sip.Request)
}

func wantStatus(t *testing.T, s sent, code int) *sip.Response {
	t.Helper()
	res, ok := s.msg.(*sip.Response)
	if !ok || res.StatusCode != code {
		t.Fatalf("got %s, want a %d", short(s.msg), code)
	}
	return res
}

func wantRequest(t *testing.T, s sent, method sip.RequestMethod) *sip.Request {
	t.Helper()
	req, ok := s.msg.(*sip.Request)
	if !ok || req.Method != method {
		t.Fatalf("got %q, want a %s", short(s.msg), method)
	}
	return req
}

func (h *harness) fromBackend(t *testing.T, m sip.Message, src netip.AddrPort) {
	t.Helper()
	in := Inbound{Transport: router.TCP, Source: src, Local: frontAddr, Reply: senderTo{h.b, src}, Requests: senderTo{h.b, src}}
	if !h.e.Handle(m, in) {
		t.Fatalf("engine did not take %s", short(m))
	}
}

func (h *harness) fromCaller(t *testing.T, m sip.Message) {
	t.Helper()
	if !h.e.Handle(m, h.inbound()) {
		t.Fatalf("engine did not take %s", short(m))
	}
}

func (h *harness) records(t *testing.T) []Record {
	t.Helper()
	h.e.Shutdown(time.Second)
	f, err := os.Open(h.cdr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("CDR line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// leaks lists what of the caller's side appears in a message sent to the
// back end, or the other way round.
func leaks(m sip.Message, secrets ...string) []string {
	text := m.String()
	var out []string
	for _, s := range secrets {
		if containsToken(text, s) {
			out = append(out, s)
		}
	}
	return out
}

// containsToken reports whether s is in text with no letter or digit
// right before or after it: a secret, not part of a random token.
func containsToken(text, s string) bool {
	alnum := func(b byte) bool { return b >= '0' && b <= '9' || b|0x20 >= 'a' && b|0x20 <= 'z' }
	for i := 0; ; {
		j := strings.Index(text[i:], s)
		if j < 0 {
			return false
		}
		j += i
		if (j == 0 || !alnum(text[j-1])) && (j+len(s) == len(text) || !alnum(text[j+len(s)])) {
			return true
		}
		i = j + 1
	}
}

// A whole call: UDP caller, TCP back end whose UM service redirects to a
// worker; each side sees only the engine.
func TestCallThroughRedirectToWorker(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "call-1@10.1.1.1", "a1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)

	inv := h.b.next(t)
	req := wantRequest(t, inv, sip.INVITE)
	if inv.dst != backendAddr || inv.tp != router.TCP {
		t.Fatalf("INVITE went to %s over %s, want %s over tcp", inv.dst, inv.tp, backendAddr)
	}
	if got := req.Recipient.String(); got != "sip:1001@203.0.113.5:5062;transport=tcp" {
		t.Errorf("Request-URI = %s", got)
	}
	if l := leaks(req, "10.1.1.1", "call-1", "caller1", "10.1.1.254", "o=gw"); len(l) > 0 {
		t.Errorf("leg B's INVITE leaks the caller's %v:\n%s", l, req)
	}
	if headerValue(req, "Diversion") != "<sip:1001@sbc.example.net>;reason=no-answer" || !strings.Contains(string(req.Body()), "offer-from-0") {
		t.Errorf("INVITE lost the Diversion or carries no rewritten offer:\n%s", req)
	}

	// The UM service moves the call to worker A (R-CR-5).
	h.fromBackend(t, answer(t, req, 302, "Moved Temporarily", "um-svc", "<sip:1001@203.0.113.5:5065;transport=tcp>", ""), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	inv2 := h.b.next(t)
	req2 := wantRequest(t, inv2, sip.INVITE)
	if inv2.dst != workerAddr || req2.CSeq().SeqNo != 2 || branchOf(req2) == branchOf(req) {
		t.Fatalf("after the 302: INVITE to %s CSeq %d branch %s", inv2.dst, req2.CSeq().SeqNo, branchOf(req2))
	}
	h.a.none(t, 50*time.Millisecond) // the caller never sees the 302

	h.fromBackend(t, answer(t, req2, 180, "Ringing", "worker1", "<sip:203.0.113.5:5065;transport=tcp>", ""), workerAddr)
	wantStatus(t, h.a.next(t), 180)
	h.fromBackend(t, answer(t, req2, 200, "OK", "worker1", "<sip:worker@203.0.113.5:5065;transport=tcp>", "v=0\no=umback 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), workerAddr)
	ok := wantStatus(t, h.a.next(t), 200)
	if l := leaks(ok, "203.0.113.5", "umedge-", "worker1", "o=umback"); len(l) > 0 {
		t.Errorf("the caller's 200 leaks the back end's %v:\n%s", l, ok)
	}
	if !strings.Contains(string(ok.Body()), "answer-from-1") || ok.Contact() == nil || ok.Contact().Address.Host != frontAddr.Addr().String() {
		t.Errorf("200 to the caller:\n%s", ok)
	}
	myTag := tagOf(ok.To().Params)

	// The caller ACKs; leg B gets its own ACK.
	ack := parse(t, "ACK sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack1\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+myTag+"\n"+
		"Call-ID: call-1@10.1.1.1\nCSeq: 1 ACK\nContent-Length: 0\n\n")
	h.fromCaller(t, ack)
	bAck := wantRequest(t, h.b.next(t), sip.ACK)
	if bAck.Recipient.User != "worker" || bAck.CSeq().SeqNo != 2 {
		t.Errorf("leg B's ACK: %s CSeq %d", bAck.Recipient.String(), bAck.CSeq().SeqNo)
	}

	// The back end hangs up.
	bye := inDialog(t, "BYE", req2, 1, "203.0.113.5:5065", "")
	bye.To().Params.Add("tag", tagOf(req2.From().Params))
	bye = reparse(t, bye.String()).(*sip.Request)
	h.fromBackend(t, bye, workerAddr)
	wantStatus(t, h.b.next(t), 200)
	aBye := wantRequest(t, h.a.next(t), sip.BYE)
	if string(*aBye.CallID()) != "call-1@10.1.1.1" || tagOf(aBye.From().Params) != myTag || aBye.Recipient.Host != "10.1.1.1" {
		t.Errorf("BYE to the caller:\n%s", aBye)
	}
	if n := h.e.Active(); n != 0 {
		t.Errorf("%d calls active after BYE", n)
	}
	recs := h.records(t)
	if len(recs) != 1 || recs[0].Reason != "callee hung up" || recs[0].Status != 200 || recs[0].Redirects != 1 || recs[0].Answer.IsZero() {
		t.Fatalf("CDRs = %+v", recs)
	}
	if h.media.closed != 1 {
		t.Errorf("media sessions closed %d times", h.media.closed)
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	h := newHarness(t, Config{})
	inv := invite(t, "call-2", "c1", callerSDP)
	h.e.Invite(inv, h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)

	cancel := parse(t, "CANCEL sip:1001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKc1;rport\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>\nCall-ID: call-2\nCSeq: 1 CANCEL\nContent-Length: 0\n\n")
	h.fromCaller(t, cancel)
	wantStatus(t, h.a.next(t), 200)
	wantStatus(t, h.a.next(t), 487)
	// No provisional from the back end yet: the CANCEL waits for one.
	h.b.none(t, 50*time.Millisecond)
	h.fromBackend(t, answer(t, req, 180, "Ringing", "be", "", ""), backendAddr)
	c := wantRequest(t, h.b.next(t), sip.CANCEL)
	if branchOf(c) != branchOf(req) {
		t.Errorf("CANCEL branch %s, INVITE's %s", branchOf(c), branchOf(req))
	}
	h.a.none(t, 50*time.Millisecond) // the 180 is not relayed after the cancel
	// The back end answers 200 anyway (race): it is ACKed and hung up.
	h.fromBackend(t, answer(t, req, 200, "OK", "be", "<sip:203.0.113.5:5062;transport=tcp>", "v=0\n"), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	wantRequest(t, h.b.next(t), sip.BYE)
	recs := h.records(t)
	if len(recs) != 1 || recs[0].Status != 487 || recs[0].Reason != "cancelled by caller" {
		t.Fatalf("CDRs = %+v", recs)
	}
}

func TestAdmission(t *testing.T) {
	h := newHarness(t, Config{MaxCalls: 1})
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	h.b.next(t)
	h.e.Invite(invite(t, "c2", "b2", callerSDP), h.inbound(), h.target)
	res := wantStatus(t, h.a.next(t), 503)
	if res.GetHeader("Retry-After") == nil || !strings.Contains(headerValue(res, "Warning"), "call limit") {
		t.Errorf("503 without Retry-After or reason:\n%s", res)
	}
	h.b.none(t, 50*time.Millisecond)

	g := newHarness(t, Config{})
	g.target.MaxGatewayCalls = 1
	g.e.Invite(invite(t, "c1", "b1", callerSDP), g.inbound(), g.target)
	wantStatus(t, g.a.next(t), 100)
	g.e.Invite(invite(t, "c2", "b2", callerSDP), g.inbound(), g.target)
	if res := wantStatus(t, g.a.next(t), 503); !strings.Contains(headerValue(res, "Warning"), "gateway gw") {
		t.Errorf("503 does not name the gateway:\n%s", res)
	}
}

// Calls-per-second admission (R-SBC-8): a burst beyond a limit gets 503
// with Retry-After and the limit in the Warning, counted; the appliance's
// limit, the calling gateway's and the pool's each hold.
func TestRateAdmission(t *testing.T) {
	for _, tt := range []struct {
		name     string
		give     Config
		wantWarn string
	}{
		{name: "appliance", give: Config{CallsPerSecond: 2}, wantWarn: "appliance over 2 calls/s"},
		{name: "gateway", give: Config{Peers: map[string]Peer{"gw": {CallsPerSecond: 2}}}, wantWarn: "gateway gw over 2 calls/s"},
		{name: "pool", give: Config{CallsPerSecond: 100, Peers: map[string]Peer{"um": {CallsPerSecond: 2}, "other": {CallsPerSecond: 1}}},
			wantWarn: "pool um over 2 calls/s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.give)
			for i := range 2 {
				id := fmt.Sprintf("c%d", i)
				h.e.Invite(invite(t, id, "b"+id, callerSDP), h.inbound(), h.target)
				wantStatus(t, h.a.next(t), 100)
				h.b.next(t)
			}
			h.e.Invite(invite(t, "c9", "b9", callerSDP), h.inbound(), h.target)
			res := wantStatus(t, h.a.next(t), 503)
			if res.GetHeader("Retry-After") == nil || !strings.Contains(headerValue(res, "Warning"), tt.wantWarn) {
				t.Errorf("503 without Retry-After or %q:\n%s", tt.wantWarn, res)
			}
			h.b.none(t, 50*time.Millisecond)
			if got := h.e.Metrics.RateLimited.Load(); got != 1 || h.e.Metrics.Refused.Load() != 1 || h.e.Active() != 2 {
				t.Errorf("rate-limited %d, refused %d, active %d: want 1, 1, 2", got, h.e.Metrics.Refused.Load(), h.e.Active())
			}
		})
	}
	// A call over the concurrent limit is refused as such, not counted as
	// rate-limited.
	h := newHarness(t, Config{MaxCalls: 1, CallsPerSecond: 1})
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	h.e.Invite(invite(t, "c2", "b2", callerSDP), h.inbound(), h.target)
	if res := wantStatus(t, h.a.next(t), 503); !strings.Contains(headerValue(res, "Warning"), "call limit") {
		t.Errorf("want the call limit's 503:\n%s", res)
	}
	if h.e.Metrics.RateLimited.Load() != 0 {
		t.Error("a call over the concurrent limit counted as rate-limited")
	}
}

func TestMediaRefusals(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c1", "b1", "garbage"), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	res := wantStatus(t, h.a.next(t), 488)
	if !strings.Contains(headerValue(res, "Warning"), "garbage") {
		t.Errorf("488 without the reason:\n%s", res)
	}
	h.media.noPorts = true
	h.e.Invite(invite(t, "c2", "b2", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	if res := wantStatus(t, h.a.next(t), 503); res.GetHeader("Retry-After") == nil {
		t.Errorf("port exhaustion 503 without Retry-After:\n%s", res)
	}
	h.b.none(t, 50*time.Millisecond)
	if n := h.e.Active(); n != 0 {
		t.Errorf("%d calls hold a slot after refusals", n)
	}
}

// A 3xx to a host other than the back end's is not followed: a back end
// cannot make the appliance an open relay.
func TestRedirectElsewhereNotFollowed(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, req, 302, "Moved", "x", "<sip:1001@192.0.2.99:5060>", ""), backendAddr)
	wantRequest(t, h.b.next(t), sip.ACK)
	if res := wantStatus(t, h.a.next(t), 502); res.Contact() != nil || strings.Contains(res.String(), "192.0.2.99") {
		t.Errorf("the refused redirect reached the caller:\n%s", res)
	}
	h.b.none(t, 50*time.Millisecond)
}

// A message with a call's Call-ID from a stranger's address is not taken
// for the call.
func TestForeignSourceIgnored(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	bye := inDialog(t, "BYE", req, 1, "192.0.2.66:5060", "")
	stranger := netip.MustParseAddrPort("192.0.2.66:5060")
	if h.e.Handle(bye, Inbound{Transport: router.UDP, Source: stranger, Reply: senderTo{h.b, stranger}}) {
		t.Fatal("a BYE from a stranger's address was taken")
	}
	if n := h.e.Active(); n != 1 {
		t.Fatalf("%d calls active", n)
	}
}

func TestUDPRetransmitsUntilAnswered(t *testing.T) {
	h := newHarness(t, Config{T1: 10 * time.Millisecond, RingTimeout: 300 * time.Millisecond})
	h.target.Backend.TCPPort, h.target.Backend.UDPPort = 0, 5060
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	first := wantRequest(t, h.b.next(t), sip.INVITE)
	again := wantRequest(t, h.b.next(t), sip.INVITE) // Timer A
	if branchOf(again) != branchOf(first) {
		t.Fatal("retransmission with another branch")
	}
	h.fromBackend(t, answer(t, first, 100, "Trying", "", "", ""), netip.AddrPortFrom(backendAddr.Addr(), 5060))
	// Drain what was sent before the 100 arrived, then expect silence.
	time.Sleep(30 * time.Millisecond)
	for len(h.b.ch) > 0 {
		h.b.next(t)
	}
	h.b.none(t, 100*time.Millisecond)
	// Ringing that never ends: Timer C cancels leg B and fails the call.
	wantStatus(t, h.a.next(t), 408)
}

func TestNoAnswerAtAll(t *testing.T) {
	h := newHarness(t, Config{T1: 5 * time.Millisecond})
	h.target.Backend.TCPPort, h.target.Backend.UDPPort = 0, 5060
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	n := 0
	deadline := time.After(2 * time.Second)
	for {
		select {
		case <-h.a.ch:
			h.a.ch <- struct{}{}
			wantStatus(t, h.a.next(t), 408) // Timer B: 64×T1
			if n < 5 || n > 8 {
				t.Errorf("%d INVITEs sent in 64×T1, want 7 (Timer A doubling)", n)
			}
			return
		case <-h.b.ch:
			h.b.ch <- struct{}{}
			wantRequest(t, h.b.next(t), sip.INVITE)
			n++
		case <-deadline:
			t.Fatal("no 408")
		}
	}
}

func short(m sip.Message) string {
	line, _, _ := strings.Cut(m.String(), "\r\n")
	return line
}

var secondAddr = netip.MustParseAddrPort("203.0.113.6:5062")

func (h *harness) withAlternate() {
	h.target.Alternates = []*router.Backend{{Name: "um2", Host: secondAddr.Addr().String(), TCPPort: int(secondAddr.Port())}}
}

// A back end that refuses, hangs or cannot be reached costs the caller
// nothing but time: the call moves to the pool's next back end with the
// same offer (R-SBC-7), and the caller sees only the answer of the one
// that took it.
func TestFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(h *harness, inv *sip.Request)
	}{
		{"503", func(h *harness, inv *sip.Request) {
			h.fromBackend(t, answer(t, inv, 503, "Service Unavailable", "x", "", ""), backendAddr)
			wantRequest(t, h.b.next(t), sip.ACK)
		}},
		{"no answer", func(h *harness, inv *sip.Request) {}},
		{"unreachable", func(h *harness, inv *sip.Request) { h.e.Unreachable(router.TCP, backendAddr) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{FailoverTimeout: 100 * time.Millisecond})
			h.withAlternate()
			h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
			wantStatus(t, h.a.next(t), 100)
			first := wantRequest(t, h.b.next(t), sip.INVITE)
			tc.fail(h, first)
			s := h.b.next(t)
			second := wantRequest(t, s, sip.INVITE)
			if s.dst != secondAddr || second.Body() == nil || string(second.Body()) != string(first.Body()) {
				t.Fatalf("second INVITE to %s with body %q", s.dst, second.Body())
			}
			h.a.none(t, 50*time.Millisecond) // the caller saw nothing of the failure
			h.fromBackend(t, answer(t, second, 486, "Busy Here", "y", "", ""), secondAddr)
			wantRequest(t, h.b.next(t), sip.ACK)
			wantStatus(t, h.a.next(t), 486) // a 4xx is the callee's answer: relayed, not failed over
			recs := h.records(t)
			if len(recs) != 1 || recs[0].Backend != "um2" || recs[0].Status != 486 {
				t.Fatalf("CDRs = %+v", recs)
			}
		})
	}
}

// Without another back end an unreachable one fails the call at once, not
// after Timer B.
func TestUnreachableWithoutAlternate(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	wantRequest(t, h.b.next(t), sip.INVITE)
	h.e.Unreachable(router.TCP, backendAddr)
	if res := wantStatus(t, h.a.next(t), 503); !strings.Contains(headerValue(res, "Warning"), "unreachable") {
		t.Errorf("503 without the reason:\n%s", res)
	}
}

// confirmedCall sets up a call to the back end and returns leg B's INVITE
// and our To tag towards the caller.
func confirmedCall(t *testing.T, h *harness) (*sip.Request, string) {
	t.Helper()
	h.e.Invite(invite(t, "call-r", "r1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, inv, 200, "OK", "be1", "<sip:um@203.0.113.5:5062;transport=tcp>", "v=0\no=umback 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), backendAddr)
	tag := tagOf(wantStatus(t, h.a.next(t), 200).To().Params)
	h.fromCaller(t, parse(t, "ACK sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKack\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		"Call-ID: call-r\nCSeq: 1 ACK\nContent-Length: 0\n\n"))
	wantRequest(t, h.b.next(t), sip.ACK)
	return inv, tag
}

// fromCallerInDialog builds a request of the caller in the dialog.
func fromCallerInDialog(t *testing.T, method, tag string, cseq int, extra, ctype, body string) *sip.Request {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "Content-Type: " + ctype + "\n"
	}
	return parseWithBody(t, method+" sip:2001@198.51.100.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK"+method+"\n"+
		"From: \"Alice\" <sip:2001@10.1.1.1>;tag=caller1\nTo: <sip:1001@198.51.100.1>;tag="+tag+"\n"+
		fmt.Sprintf("Call-ID: call-r\nCSeq: %d %s\n", cseq, method)+extra+ct+
		fmt.Sprintf("Content-Length: %d\n\n", len(body)), body).(*sip.Request)
}

// In-dialog requests other than re-INVITE pass through with their body
// and the headers they need, and their answers come back.
func TestInDialogRelay(t *testing.T) {
	h := newHarness(t, Config{})
	bInv, tag := confirmedCall(t, h)

	// INFO with a DTMF digit, caller → back end.
	h.fromCaller(t, fromCallerInDialog(t, "INFO", tag, 2, "", "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"))
	info := wantRequest(t, h.b.next(t), sip.INFO)
	if headerValue(info, "Content-Type") != "application/dtmf-relay" || string(info.Body()) != "Signal=5\r\nDuration=160\r\n" ||
		string(*info.CallID()) != string(*bInv.CallID()) || info.Recipient.User != "um" {
		t.Fatalf("INFO on leg B:\n%s", info)
	}
	h.fromBackend(t, answer(t, info, 200, "OK", "", "", ""), backendAddr)
	if res := wantStatus(t, h.a.next(t), 200); res.CSeq().MethodName != sip.INFO || string(*res.CallID()) != "call-r" {
		t.Fatalf("INFO answer to the caller:\n%s", res)
	}

	// UPDATE with an offer, caller → back end (a session refresh with a
	// new offer): the offer and the answer both go through the media
	// engine.
	h.fromCaller(t, fromCallerInDialog(t, "UPDATE", tag, 3, "Session-Expires: 1800;refresher=uac\n", "application/sdp", callerSDP))
	upd := wantRequest(t, h.b.next(t), sip.UPDATE)
	if !strings.Contains(string(upd.Body()), "offer-from-0") || headerValue(upd, "Session-Expires") != "1800;refresher=uac" {
		t.Fatalf("UPDATE on leg B:\n%s", upd)
	}
	h.fromBackend(t, answer(t, upd, 200, "OK", "", "", "v=0\no=umback 1 2 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), backendAddr)
	res := wantStatus(t, h.a.next(t), 200)
	if !strings.Contains(string(res.Body()), "answer-from-1") || strings.Contains(res.String(), "203.0.113.5") {
		t.Fatalf("UPDATE answer to the caller:\n%s", res)
	}

	// REFER from the back end (a UM transfer) reaches the caller with its
	// Refer-To; the 202 goes back.
	refer := inDialog(t, "REFER", bInv, 7, "203.0.113.5:5062", "")
	refer.To().Params.Add("tag", tagOf(bInv.From().Params))
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sip:2002@pbx.example.net>"))
	h.fromBackend(t, reparse(t, refer.String()), backendAddr)
	ar := wantRequest(t, h.a.next(t), sip.REFER)
	if headerValue(ar, "Refer-To") != "<sip:2002@pbx.example.net>" || tagOf(ar.From().Params) != tag || string(*ar.CallID()) != "call-r" {
		t.Fatalf("REFER to the caller:\n%s", ar)
	}
	in := Inbound{Transport: router.UDP, Source: callerAddr, Local: frontAddr, Reply: senderTo{h.a, callerAddr}, Requests: senderTo{h.a, callerAddr}}
	if !h.e.Handle(answer(t, ar, 202, "Accepted", "", "", ""), in) {
		t.Fatal("the caller's 202 was not taken")
	}
	if res := wantStatus(t, h.b.next(t), 202); res.CSeq().SeqNo != 7 || res.CSeq().MethodName != sip.REFER {
		t.Fatalf("202 to the back end:\n%s", res)
	}
}

// Session timers (RFC 4028) run end to end through the engine: the
// caller's request reaches the back end and the back end's answer the
// caller; of the option tags only "timer" passes (no 100rel: the engine
// does not do PRACK).
func TestSessionTimerThrough(t *testing.T) {
	h := newHarness(t, Config{})
	h.e.Invite(invite(t, "c1", "b1", callerSDP, "Session-Expires: 1800\r\n", "Min-SE: 90\r\n", "Supported: 100rel, timer\r\n"), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	inv := wantRequest(t, h.b.next(t), sip.INVITE)
	if headerValue(inv, "Session-Expires") != "1800" || headerValue(inv, "Min-SE") != "90" || headerValue(inv, "Supported") != "timer" {
		t.Fatalf("leg B's INVITE:\n%s", inv)
	}
	res := answer(t, inv, 200, "OK", "be", "<sip:203.0.113.5:5062;transport=tcp>", "v=0\no=umback 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n")
	res.AppendHeader(sip.NewHeader("Require", "timer"))
	res.AppendHeader(sip.NewHeader("Session-Expires", "1800;refresher=uac"))
	h.fromBackend(t, reparse(t, res.String()), backendAddr)
	ok := wantStatus(t, h.a.next(t), 200)
	if headerValue(ok, "Session-Expires") != "1800;refresher=uac" || headerValue(ok, "Require") != "timer" {
		t.Fatalf("the caller's 200:\n%s", ok)
	}
}

// A caller over UDP is kept reachable by in-dialog OPTIONS; one that says
// it lost the dialog, or no longer answers, ends the call on both legs.
func TestKeepAliveOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer bool
		reason string
	}{{"481", true, "caller lost the dialog (keep-alive 481)"}, {"silence", false, "caller unreachable (keep-alive)"}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{KeepAlive: KeepAliveOptions, KeepAliveInterval: 50 * time.Millisecond, T1: 10 * time.Millisecond})
			confirmedCall(t, h)
			var opt *sip.Request
			for opt == nil { // with T1 10 ms a loaded machine may see the 200 retransmitted before its ACK was taken
				s := h.a.next(t)
				if res, ok := s.msg.(*sip.Response); ok && res.StatusCode == 200 && res.CSeq().MethodName == sip.INVITE {
					continue
				}
				opt = wantRequest(t, s, sip.OPTIONS)
			}
			if string(*opt.CallID()) != "call-r" {
				t.Fatalf("OPTIONS outside the dialog:\n%s", opt)
			}
			if tc.answer {
				h.fromCaller(t, answer(t, opt, 481, "Call/Transaction Does Not Exist", "", "", ""))
			}
			for {
				s := h.b.next(t)
				if req, ok := s.msg.(*sip.Request); ok && req.Method == sip.BYE {
					break
				}
			}
			recs := h.records(t)
			if len(recs) != 1 || recs[0].Reason != tc.reason {
				t.Fatalf("CDRs = %+v", recs)
			}
		})
	}
}

// Leg B's Diversion is written anew (R-SBC-9): duplicates dropped, our
// host, and from History-Info when the caller sent only that.
func TestDiversionNormalised(t *testing.T) {
	for _, tc := range []struct {
		name string
		call *router.Call
		want []string
	}{
		{"duplicates", &router.Call{Diversion: []router.Diversion{{User: "1001", Reason: "no-answer"}, {User: "1001", Reason: "no-answer"}, {User: "2002", Reason: "user-busy"}}},
			[]string{"<sip:1001@sbc.example.net>;reason=no-answer", "<sip:2002@sbc.example.net>;reason=user-busy"}},
		{"from History-Info", &router.Call{HistoryInfo: []router.HistoryInfo{{Index: "1", User: "1001"}, {Index: "1.1", User: "vm", Cause: "486"}}},
			[]string{"<sip:1001@sbc.example.net>;reason=user-busy"}},
		{"crafted user and reason", &router.Call{Diversion: []router.Diversion{{User: "1001>;x=\"y\r\nEvil: 1", Reason: "a b"}}},
			[]string{"<sip:1001%3E;x=%22y%0D%0AEvil%3A%201@sbc.example.net>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.target.Call = tc.call
			h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
			wantStatus(t, h.a.next(t), 100)
			req := wantRequest(t, h.b.next(t), sip.INVITE)
			var got []string
			for _, d := range req.GetHeaders("Diversion") {
				got = append(got, d.Value())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") || req.GetHeader("Evil") != nil {
				t.Errorf("Diversion = %q, want %q\n%s", got, tc.want, req)
			}
		})
	}
}

// Towards a UCMA peer a 180 with SDP becomes 180 and 183 with the SDP.
func TestEarly183(t *testing.T) {
	h := newHarness(t, Config{Peers: map[string]Peer{"gw": {Early183: true}}})
	h.e.Invite(invite(t, "c1", "b1", callerSDP), h.inbound(), h.target)
	wantStatus(t, h.a.next(t), 100)
	req := wantRequest(t, h.b.next(t), sip.INVITE)
	h.fromBackend(t, answer(t, req, 180, "Ringing", "be", "<sip:203.0.113.5:5062;transport=tcp>", "v=0\no=umback 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0\n"), backendAddr)
	if r := wantStatus(t, h.a.next(t), 180); len(r.Body()) != 0 {
		t.Errorf("180 with a body:\n%s", r)
	}
	if r := wantStatus(t, h.a.next(t), 183); !strings.Contains(string(r.Body()), "answer-from-1") {
		t.Errorf("183 without the SDP:\n%s", r)
	}
}
