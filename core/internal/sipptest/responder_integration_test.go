//go:build integration

package sipptest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// answerFunc decides the final response to an INVITE: status code, reason
// and extra header lines. Returning 0 drops the request.
type answerFunc func(req *sip.Request) (code int, reason string, headers map[string]string)

// redirect302 answers every INVITE with a 302 to the Request-URI user on
// the local UM service, as the Call Router does.
func redirect302(req *sip.Request) (int, string, map[string]string) {
	return 302, "Moved Temporarily", map[string]string{
		"Contact": fmt.Sprintf("<sip:%s@127.0.0.1:5062;transport=tcp>", req.Recipient.User),
	}
}

// responder is a stateless SIP server for the tests: it answers INVITE with
// answer, OPTIONS with 200 and absorbs ACK. The To tag is derived from the
// Call-ID, so a retransmitted INVITE gets a byte-identical response.
type responder struct {
	answer      answerFunc
	optionsHdrs map[string]string

	mu          sync.Mutex
	invites     map[string]int // Via branch -> INVITEs seen
	acks        map[string]int // Via branch -> ACKs seen
	clientCerts int            // TLS connections with a client certificate
}

func newResponder(answer answerFunc) *responder {
	return &responder{
		answer:      answer,
		optionsHdrs: map[string]string{"Allow": "INVITE, ACK, CANCEL, BYE, OPTIONS", "Accept": "application/sdp", "Supported": "timer"},
		invites:     map[string]int{},
		acks:        map[string]int{},
	}
}

// handle returns the response to msg, or nil.
func (r *responder) handle(msg sip.Message) []byte {
	req, ok := msg.(*sip.Request)
	if !ok || req.Via() == nil {
		return nil
	}
	branch, _ := req.Via().Params.Get("branch")
	var (
		code    int
		reason  string
		headers map[string]string
	)
	switch req.Method {
	case sip.ACK:
		r.mu.Lock()
		r.acks[branch]++
		r.mu.Unlock()
		return nil
	case sip.INVITE:
		r.mu.Lock()
		r.invites[branch]++
		r.mu.Unlock()
		code, reason, headers = r.answer(req)
	case sip.OPTIONS:
		code, reason, headers = 200, "OK", r.optionsHdrs
	default:
		code, reason = 405, "Method Not Allowed"
	}
	if code == 0 {
		return nil
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if to := res.To(); to != nil && code > 100 {
		h := fnv.New64a()
		h.Write([]byte(req.CallID().Value()))
		to.Params = to.Params.Add("tag", fmt.Sprintf("%x", h.Sum64()))
	}
	for _, name := range []string{"Contact", "Retry-After", "Allow", "Accept", "Supported"} {
		if v, ok := headers[name]; ok {
			res.AppendHeader(sip.NewHeader(name, v))
		}
	}
	return []byte(res.String())
}

// serveUDP answers on a loopback UDP socket until it is closed.
func (r *responder) serveUDP(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, src, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			if out := r.handle(msg); out != nil {
				conn.WriteToUDP(out, src)
			}
		}
	}()
	return conn.LocalAddr().String()
}

// serveStream answers on a loopback TCP listener, or a TLS one when cfg is
// not nil, until it is closed.
func (r *responder) serveStream(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	if cfg != nil {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", cfg)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r.serveConn(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func (r *responder) serveConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return
		}
		if len(tc.ConnectionState().PeerCertificates) > 0 {
			r.mu.Lock()
			r.clientCerts++
			r.mu.Unlock()
		}
	}
	stream := sip.NewParser().NewSIPStream()
	defer stream.Close()
	w := bufio.NewWriter(c)
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		err = stream.ParseSIPStream(buf[:n], func(msg sip.Message) {
			if out := r.handle(msg); out != nil {
				w.Write(out)
			}
		})
		if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
			return
		}
		if w.Flush() != nil {
			return
		}
	}
}

// counts returns how many INVITE branches were seen and how many ACKs
// carried the branch of an INVITE (RFC 3261 17.1.1.3) or another one.
func (r *responder) counts() (invites, matchingACKs, strayACKs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for b, n := range r.acks {
		if r.invites[b] > 0 {
			matchingACKs += n
		} else {
			strayACKs += n
		}
	}
	return len(r.invites), matchingACKs, strayACKs
}
