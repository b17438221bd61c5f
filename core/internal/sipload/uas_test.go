package sipload

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// request is a request of call id from a caller at from (host:port) over
// transport, in the dialog when toTag is set.
func request(method, id, from, transport, toTag string, cseq int) string {
	to := "<sip:1001@127.0.0.1>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return fmt.Sprintf("%s sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s-%d\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-up\r\n"+
		"From: <sip:4000@%s>;tag=caller\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nRecord-Route: <sip:%s;lr>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		method, transport, from, id, cseq, from, to, id, cseq, method, from)
}

// udpPeer is a raw UDP socket talking to the UAS.
type udpPeer struct {
	t *testing.T
	c *net.UDPConn
}

func dialUAS(t *testing.T, u *UAS) *udpPeer {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(t, u.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{t: t, c: c}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (p *udpPeer) send(msg string) {
	if _, err := p.c.Write([]byte(msg)); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the next datagram, or "" after wait.
func (p *udpPeer) recv(wait time.Duration) string {
	buf := make([]byte, 65536)
	_ = p.c.SetReadDeadline(time.Now().Add(wait))
	n, err := p.c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// toTag returns the tag of an answer's To.
func toTag(t *testing.T, resp string) string {
	t.Helper()
	for _, l := range strings.Split(resp, "\r\n") {
		if v, ok := strings.CutPrefix(l, "To: "); ok {
			if _, tag, ok := strings.Cut(v, ";tag="); ok {
				return tag
			}
		}
	}
	t.Fatalf("no To tag in %q", resp)
	return ""
}

// The 200 to an INVITE copies the request's Vias, From, To (with a tag of
// its own), Call-ID, CSeq and Record-Route, carries a Contact and SDP; a
// retransmitted INVITE gets it again, and so does a retransmitted BYE its
// 200; OPTIONS get a 200, a BYE outside any call a 481.
func TestUASAnswers(t *testing.T) {
	u := listenUAS(t, UASConfig{})
	p := dialUAS(t, u)
	from := p.c.LocalAddr().String()
	inv := request("INVITE", "c1", from, "UDP", "", 1)
	p.send(inv)
	ok := p.recv(time.Second)
	for _, want := range []string{
		"SIP/2.0 200 OK\r\n", "Via: SIP/2.0/UDP " + from + ";branch=z9hG4bK-c1-1\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-up\r\n",
		"From: <sip:4000@" + from + ">;tag=caller\r\n", "To: <sip:1001@127.0.0.1>;tag=", "Call-ID: c1\r\n", "CSeq: 1 INVITE\r\n",
		"Record-Route: <sip:" + from + ";lr>\r\n", "Contact: <sip:" + u.Addr() + ";transport=udp>\r\n", "Content-Type: application/sdp\r\n", "\r\n\r\nv=0\r\n",
	} {
		if !strings.Contains(ok, want) {
			t.Errorf("200 lacks %q:\n%s", want, ok)
		}
	}
	head, body, _ := strings.Cut(ok, "\r\n\r\n")
	if !strings.Contains(head, "Content-Length: "+strconv.Itoa(len(body))+"\r\n") && !strings.HasSuffix(head, "Content-Length: "+strconv.Itoa(len(body))) {
		t.Errorf("Content-Length does not match the body of %d bytes:\n%s", len(body), ok)
	}
	p.send(inv)
	if again := p.recv(time.Second); again != ok {
		t.Errorf("a retransmitted INVITE got %q, want the same 200", again)
	}
	tag := toTag(t, ok)
	p.send(request("ACK", "c1", from, "UDP", tag, 1))
	bye := request("BYE", "c1", from, "UDP", tag, 2)
	p.send(bye)
	byeOK := p.recv(time.Second)
	if !strings.HasPrefix(byeOK, "SIP/2.0 200 OK\r\n") || !strings.Contains(byeOK, "CSeq: 2 BYE\r\n") || !strings.Contains(byeOK, ";tag="+tag+"\r\n") {
		t.Errorf("BYE got %q", byeOK)
	}
	p.send(bye)
	if again := p.recv(time.Second); again != byeOK {
		t.Errorf("a retransmitted BYE got %q, want %q", again, byeOK)
	}
	p.send(request("OPTIONS", "o1", from, "UDP", "", 1))
	if r := p.recv(time.Second); !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") || !strings.Contains(r, "CSeq: 1 OPTIONS\r\n") {
		t.Errorf("OPTIONS got %q", r)
	}
	p.send(request("BYE", "nocall", from, "UDP", "x", 2))
	if r := p.recv(time.Second); !strings.HasPrefix(r, "SIP/2.0 481 ") {
		t.Errorf("a BYE outside any call got %q, want 481", r)
	}
	if r := p.recv(600 * time.Millisecond); r != "" {
		t.Errorf("the ACKed call's 200 came again: %q", r)
	}
	st := u.Stats()
	if st.Calls != 1 || st.Acked != 1 || st.Ended != 1 || st.Current != 0 || st.Failed != 0 || st.Retransmissions != 1 || st.Unexpected != 1 {
		t.Errorf("stats %+v, want one call ACKed and ended, one retransmission, one unexpected BYE", st)
	}
}

// A 200 without its ACK is resent over UDP at T1, 2·T1, 4·T1 …, and the
// call fails 64·T1 after it; a BYE still ends a call whose ACK was lost.
func TestUASMissingAck(t *testing.T) {
	const t1 = 10 * time.Millisecond
	u := listenUAS(t, UASConfig{T1: t1})
	p := dialUAS(t, u)
	from := p.c.LocalAddr().String()
	start := time.Now()
	p.send(request("INVITE", "lost", from, "UDP", "", 1))
	var copies []time.Duration
	for {
		r := p.recv(64*t1 + time.Second)
		if r == "" {
			break
		}
		copies = append(copies, time.Since(start))
		if time.Since(start) > 64*t1+500*time.Millisecond {
			break
		}
	}
	// 0, 10, 30, 70, 150, 310, 630 ms (the intervals doubling up to T2).
	if len(copies) < 6 || len(copies) > 8 || copies[len(copies)-1] > 64*t1+100*time.Millisecond {
		t.Errorf("the 200 came at %v, want it resent doubling from T1 until 64·T1", copies)
	}
	st := u.Stats()
	if st.Calls != 1 || st.Failed != 1 || st.Current != 0 || st.Acked != 0 {
		t.Errorf("stats %+v, want the call failed", st)
	}

	p.send(request("INVITE", "ackless", from, "UDP", "", 1))
	tag := toTag(t, p.recv(time.Second))
	p.send(request("BYE", "ackless", from, "UDP", tag, 2))
	for r := p.recv(time.Second); !strings.Contains(r, "CSeq: 2 BYE"); r = p.recv(time.Second) {
		if r == "" {
			t.Fatal("no answer to the BYE")
		}
	}
	if st := u.Stats(); st.Ended != 1 || st.NoAck != 1 || st.Failed != 1 || st.Current != 0 {
		t.Errorf("stats %+v, want the second call ended by its BYE without ACK", st)
	}
}

// Over TCP a call is answered on its connection, the 200 never resent,
// and a message torn across writes still read whole.
func TestUASOverTCP(t *testing.T) {
	u := listenUAS(t, UASConfig{T1: 10 * time.Millisecond})
	c, err := net.Dial("tcp", u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := c.LocalAddr().String()
	rd := bufio.NewReader(c)
	read := func() string {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		var b strings.Builder
		n := 0
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				return b.String()
			}
			b.WriteString(l)
			if v, ok := strings.CutPrefix(l, "Content-Length: "); ok {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if l == "\r\n" {
				body := make([]byte, n)
				_, _ = io.ReadFull(rd, body)
				return b.String() + string(body)
			}
		}
	}
	inv := request("INVITE", "t1", from, "TCP", "", 1)
	_, _ = c.Write([]byte(inv[:40]))
	time.Sleep(20 * time.Millisecond)
	_, _ = c.Write([]byte(inv[40:]))
	ok := read()
	if !strings.HasPrefix(ok, "SIP/2.0 200 OK\r\n") || !strings.Contains(ok, ";transport=tcp>") || !strings.Contains(ok, "\r\n\r\nv=0") {
		t.Fatalf("INVITE over TCP got %q", ok)
	}
	tag := toTag(t, ok)
	time.Sleep(100 * time.Millisecond) // several T1: no retransmission over TCP
	_, _ = c.Write([]byte(request("ACK", "t1", from, "TCP", tag, 1) + request("BYE", "t1", from, "TCP", tag, 2)))
	if r := read(); !strings.HasPrefix(r, "SIP/2.0 200 OK\r\n") || !strings.Contains(r, "CSeq: 2 BYE") {
		t.Errorf("BYE over TCP got %q", r)
	}
	if st := u.Stats(); st.Calls != 1 || st.Acked != 1 || st.Ended != 1 || st.Retransmissions != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUASConfigInvalid(t *testing.T) {
	for _, addr := range []string{"localhost:5060", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000"} {
		if u, err := ListenUAS(UASConfig{Addr: addr}); err == nil {
			u.Close()
			t.Errorf("ListenUAS(%q) = nil error", addr)
		}
	}
}

// Over TCP too a call whose ACK does not come fails at 64·T1, without a
// retransmitted 200.
func TestUASMissingAckOverTCP(t *testing.T) {
	const t1 = 5 * time.Millisecond
	u := listenUAS(t, UASConfig{T1: t1, Tick: 500 * time.Microsecond})
	c, err := net.Dial("tcp", u.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(request("INVITE", "tcp-lost", c.LocalAddr().String(), "TCP", "", 1)))
	if !waitFor(func() bool { return u.Stats().Calls == 1 }) {
		t.Fatal("the INVITE was not taken")
	}
	// The tick runs the timers: wait for Timer H, then some.
	time.Sleep(64*t1 + 200*time.Millisecond)
	if st := u.Stats(); st.Failed != 1 || st.Current != 0 || st.Retransmissions != 0 {
		t.Errorf("stats %+v, want the call failed without retransmissions", st)
	}
}
