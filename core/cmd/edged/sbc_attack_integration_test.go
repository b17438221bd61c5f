//go:build integration

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Attacks on the SBC through real edged: a raw TCP back end and a raw UDP
// caller, to show what passes the front.

// rawBackend accepts one TCP connection of edged's on port and hands each
// message edged sends (head and body, as bytes) to msgs.
type rawBackend struct {
	ln   net.Listener
	conn chan net.Conn
	msgs chan []byte
}

func newRawBackend(t *testing.T, port int) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln, conn: make(chan net.Conn, 1), msgs: make(chan []byte, 100)}
	accepted := make(chan net.Conn, 1)
	t.Cleanup(func() {
		ln.Close()
		if c := <-accepted; c != nil {
			c.Close()
		}
	})
	go func() {
		c, err := ln.Accept()
		accepted <- c
		if err != nil {
			return
		}
		b.conn <- c
		readMessages(c, b.msgs)
	}()
	return b
}

// readMessages hands each SIP message read from c (head and body, as
// bytes) to msgs until c fails.
func readMessages(c net.Conn, msgs chan<- []byte) {
	r := bufio.NewReader(c)
	for {
		var head bytes.Buffer
		n := -1
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			if head.Len() == 0 && string(line) == "\r\n" {
				continue // a keep-alive
			}
			head.Write(line)
			if k, v, ok := strings.Cut(string(line), ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if string(line) == "\r\n" {
				break
			}
		}
		body := make([]byte, max(n, 0))
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		msgs <- append(head.Bytes(), body...)
	}
}

func (b *rawBackend) next(t *testing.T) []byte {
	t.Helper()
	return nextOf(t, b.msgs, "the back end")
}

func nextOf(t *testing.T, msgs <-chan []byte, who string) []byte {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("%s got nothing from edged", who)
		return nil
	}
}

// header returns the value of the first header name in msg, a raw message.
func header(msg []byte, name string) string {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg)))
	_, _ = tp.ReadLine() // start line
	h, _ := tp.ReadMIMEHeader()
	return h.Get(name)
}

// sbcCallerInvite is a gateway's INVITE to mailbox 1001 (the proxy pool of
// sbcLab) with extra raw header lines.
func sbcCallerInvite(p *udpPeer, callID, extra string) string {
	sdp := "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
	return "INVITE sip:1001@127.0.0.1 SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n", p.port, callID) +
		"Max-Forwards: 70\r\n" +
		"From: <sip:4000@127.0.0.1>;tag=atk\r\nTo: <sip:1001@127.0.0.1>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\n" +
		fmt.Sprintf("Contact: <sip:4000@127.0.0.1:%d>\r\n", p.port) +
		"Diversion: <sip:1001@127.0.0.1>;reason=no-answer\r\n" + extra +
		"Content-Type: application/sdp\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(sdp)) + sdp
}

// Found by attack: one response without a To header, from the back end's address
// with leg B's Call-ID, kills edged: sipfront hands responses to the
// B2BUA unvalidated (handler.go:34-39) and success() dereferences res.To()
// (b2bua/handle.go:273); nothing recovers. Every call and the whole
// appliance go down.
func TestIntegrationAttackResponseWithoutToKillsEdged(t *testing.T) {
	callee := freePort(t)
	be := newRawBackend(t, callee)
	e := startEdged(t, sbcLab(t, callee, filepath.Join(t.TempDir(), "cdr.jsonl"), ""))
	p := newUDPPeer(t, e)
	if _, err := p.conn.Write([]byte(sbcCallerInvite(p, "atk-noto", ""))); err != nil {
		t.Fatal(err)
	}
	inv := be.next(t)
	c := <-be.conn
	res := "SIP/2.0 200 OK\r\nVia: " + header(inv, "Via") + "\r\nCall-ID: " + header(inv, "Call-ID") +
		"\r\nCSeq: 1 INVITE\r\nFrom: " + header(inv, "From") + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(res)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.exited:
		t.Fatalf("edged died of a 200 without To:\n%s", tail(e.logText(), 15))
	case <-time.After(time.Second):
	}
	if code, _ := e.healthz(); code == 0 {
		t.Fatal("edged does not answer /healthz after a 200 without To")
	}
}

// Found by attack: a bare LF inside a header value the B2BUA copies to leg B
// passes the front (sipgo keeps it in the value; validate does not look)
// and reaches the back end as a line of its own for any parser that ends
// lines at LF: a header the caller injected across the SBC.
func TestIntegrationAttackBareLFReachesBackend(t *testing.T) {
	callee := freePort(t)
	be := newRawBackend(t, callee)
	e := startEdged(t, sbcLab(t, callee, filepath.Join(t.TempDir(), "cdr.jsonl"), ""))
	p := newUDPPeer(t, e)
	if _, err := p.conn.Write([]byte(sbcCallerInvite(p, "atk-lf", "Subject: hello\nX-Injected: by-the-caller\r\n"))); err != nil {
		t.Fatal(err)
	}
	inv := be.next(t)
	if i := bytes.Index(inv, []byte("\nX-Injected")); i > 0 && inv[i-1] != '\r' {
		t.Fatalf("the back end's INVITE carries the caller's bare LF and the header after it:\n%q", inv)
	}
}

// Found by attack: a TCP (or TLS) caller's requests are bound to the connection
// its INVITE came on (b2bua.Inbound.Requests; sipfront's inbound,
// client.go:261-285): once that connection closes — a gateway's idle
// timeout, a NAT rebinding, a restart of its TLS stack — the back end's
// BYE is relayed to nowhere. edged opens no connection to the caller's
// Contact (RFC 3261 §18.1.1), so the gateway's call stays up until its
// media timeout, while the CDR says the call ended.
func TestIntegrationAttackByeLostAfterCallerReconnects(t *testing.T) {
	callee := freePort(t)
	be := newRawBackend(t, callee)
	e := startEdged(t, sbcLab(t, callee, filepath.Join(t.TempDir(), "cdr.jsonl"), ""))
	// The caller listens for edged's connections on its Contact's port.
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	lport := cl.Addr().(*net.TCPAddr).Port
	toCaller := make(chan []byte, 10)
	go func() {
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); readMessages(c, toCaller) }()
		}
	}()
	conn, err := net.Dial("tcp", e.target("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	fromEdged := make(chan []byte, 10)
	go readMessages(conn, fromEdged)
	sdp := "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
	head := "INVITE sip:1001@127.0.0.1 SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-rc1\r\n", lport) +
		"Max-Forwards: 70\r\nFrom: <sip:4000@127.0.0.1>;tag=rc\r\nTo: <sip:1001@127.0.0.1>\r\n" +
		"Call-ID: atk-reconnect\r\nCSeq: 1 INVITE\r\n" +
		fmt.Sprintf("Contact: <sip:4000@127.0.0.1:%d;transport=tcp>\r\n", lport) +
		"Diversion: <sip:1001@127.0.0.1>;reason=no-answer\r\nContent-Type: application/sdp\r\n"
	if _, err := fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n%s", head, len(sdp), sdp); err != nil {
		t.Fatal(err)
	}
	inv := be.next(t)
	bc := <-be.conn
	bsdp := "v=0\r\no=um 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40010 RTP/AVP 0\r\n"
	ok := "SIP/2.0 200 OK\r\nVia: " + header(inv, "Via") + "\r\nFrom: " + header(inv, "From") + "\r\nTo: " + header(inv, "To") +
		";tag=um1\r\nCall-ID: " + header(inv, "Call-ID") + "\r\nCSeq: " + header(inv, "CSeq") +
		fmt.Sprintf("\r\nContact: <sip:um@127.0.0.1:%d;transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", callee, len(bsdp), bsdp)
	if _, err := bc.Write([]byte(ok)); err != nil {
		t.Fatal(err)
	}
	var toTag string
	for toTag == "" {
		m := nextOf(t, fromEdged, "the caller")
		if strings.HasPrefix(string(m), "SIP/2.0 200") {
			_, toTag, _ = strings.Cut(header(m, "To"), ";tag=")
		}
	}
	fmt.Fprintf(conn, "ACK sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-rc2\r\nMax-Forwards: 70\r\n"+
		"From: <sip:4000@127.0.0.1>;tag=rc\r\nTo: <sip:1001@127.0.0.1>;tag=%s\r\nCall-ID: atk-reconnect\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", lport, toTag)
	if ack := be.next(t); !strings.HasPrefix(string(ack), "ACK ") {
		t.Fatalf("the back end got %q, want the ACK", ack)
	}
	conn.Close() // the gateway's connection goes away; the call is up
	time.Sleep(200 * time.Millisecond)

	// The back end hangs up.
	bye := "BYE " + strings.Trim(header(inv, "Contact"), "<>") + " SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-bbye\r\nMax-Forwards: 70\r\n", callee) +
		"From: " + header(inv, "To") + ";tag=um1\r\nTo: " + header(inv, "From") + "\r\nCall-ID: " + header(inv, "Call-ID") +
		"\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
	if _, err := bc.Write([]byte(bye)); err != nil {
		t.Fatal(err)
	}
	if res := be.next(t); !strings.HasPrefix(string(res), "SIP/2.0 200") {
		t.Fatalf("the back end's BYE got %q", res)
	}
	select {
	case m := <-toCaller:
		if !strings.HasPrefix(string(m), "BYE ") {
			t.Fatalf("the caller got %q, want the BYE", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the back end hung up; the caller, whose connection had closed, never got a BYE (edged opened no connection to its Contact)")
	}
}
