package sipfront

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// handshakeTimeout bounds a TLS handshake, so a silent client cannot hold
// a goroutine.
const handshakeTimeout = 10 * time.Second

// minUserTimeout is the least TCP_USER_TIMEOUT: a peer whose sent data
// stays unacknowledged this long is gone. It is longer than the write
// timeout so that a lossy path's retransmission backoff (RTO doubling)
// does not cut a healthy gateway; a peer that merely stops reading fills
// its capped send buffer and meets the write deadline first.
var minUserTimeout = 20 * time.Second // a var for tests

func (s *Server) accept(ln net.Listener, l *listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept", "transport", l.key.transport, "err", err)
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		src := remoteAddr(c)
		if s.isBanned(src.Addr()) {
			s.refuse(c, src, l.key.transport, refusedBanned, 0)
			continue
		}
		known := s.knownSource(src.Addr())
		if why, limit := s.conns.acquire(src.Addr(), known); why != "" {
			s.refuse(c, src, l.key.transport, why, limit)
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(streamSendBuffer)
			_ = setUserTimeout(tc, max(s.writeTimeout(), minUserTimeout))
		}
		s.metrics.SIPConnsOpen.Inc()
		l.marking.Lock()
		l.conns.Store(c, struct{}{})
		if err := markConn(c, int(s.tos.Load())); err != nil {
			s.log.Debug("accepted connection not marked", "transport", l.key.transport, "peer", src, "err", err)
		}
		l.marking.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.release(src.Addr(), known)
			defer s.metrics.SIPConnsOpen.Dec()
			defer l.conns.Delete(c)
			defer c.Close()
			s.serveConn(c, src, l.key.transport)
		}()
	}
}

// streamSendBuffer is the kernel send buffer of a stream connection. Left
// to autotuning it grows to net.ipv4.tcp_wmem's maximum (4 MiB by default)
// for a peer that does not read, so the kernel, not the send queue, would
// hold what that peer costs. 256 KiB (the kernel doubles it) carries some
// 20,000 answers a second on one connection at 50 ms round trip; at 64 KiB
// a trunk taking 17,000 calls/s on one connection could not be held.
const streamSendBuffer = 256 << 10

// localAddr is our end of a connection, IPv4 unmapped.
func localAddr(c net.Conn) netip.AddrPort {
	var ap netip.AddrPort
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// remoteAddr is the peer's address, IPv4 unmapped.
func remoteAddr(c net.Conn) netip.AddrPort {
	var ap netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap = a.AddrPort()
	} else {
		ap, _ = netip.ParseAddrPort(c.RemoteAddr().String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// refuse closes a connection over a limit at once, with a reset so that
// no closing state is kept for it, counts it and logs it rate-limited.
func (s *Server) refuse(c net.Conn, src netip.AddrPort, tp router.Transport, why string, limit int) {
	s.metrics.SIPConnsRefused.WithLabelValues(why).Inc()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	if ok, held := s.refusedLog[why].allow(time.Now()); ok {
		s.log.Warn("connection limit reached, refusing connections", "reason", why, "limit", limit,
			"transport", tp, "peer", src.Addr().String(), "refused_unlogged", held)
	}
}

// readBuffer is one read from a stream connection.
const readBuffer = 16 * 1024

// serveConn reads SIP messages from one TCP or TLS connection and answers
// each on the same connection (RFC 3261 §18.2.2), through the connection's
// send queue: the reader never waits for the peer to take its answers.
func (s *Server) serveConn(c net.Conn, src netip.AddrPort, tp router.Transport) {
	if !src.IsValid() {
		return
	}
	p := peer{transport: tp, src: src}
	st := s.state.Load()
	raw := c
	if tp == router.TLS {
		tc := tls.Server(c, st.tls)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			// A peer without a certificate chaining to the configured CA
			// never gets past here (um-spec R-SEC-3).
			s.logInput("tls handshake refused", "peer", src, "err", err)
			return
		}
		p.names = peerNames(tc.ConnectionState())
		c = tc
	}
	s.readStream(c, raw, p, nil)
}

// readStream reads SIP messages from a stream connection, ours (dialed
// for the B2BUA) or a peer's, until it closes; ready, when set, gets the
// connection's sending side before the first read.
func (s *Server) readStream(c, raw net.Conn, p peer, ready func(*streamConn)) {
	tp, src := p.transport, p.src
	p.local = localAddr(raw)
	sc := newStreamConn(c, raw, s.writeTimeout, func(reason string) {
		s.metrics.SIPConnsDropped.WithLabelValues(reason).Inc()
		s.logInput("peer does not read its answers, closing connection", "transport", tp, "peer", src, "reason", reason)
	})
	sc.budget, sc.budgetMax = &s.queued, maxQueuedTotal
	sc.tap, sc.tp, sc.local, sc.remote = &s.capture, tp, p.local, src
	sc.start()
	defer sc.finish()
	p.reply = replyPath{stream: sc}
	if ready != nil {
		ready(sc)
	}
	ps := s.parser.NewSIPStream()
	defer ps.Close()
	buf := make([]byte, readBuffer)
	// cur holds the bytes of the message being assembled, from its first
	// byte: sipgo drains header lines as it parses them, and an answer to a
	// message it refuses is formed from the raw text.
	var out, pending, cur bytes.Buffer
	pinged := 0 // CRLF bytes of a keep-alive ping read so far
	for {
		if st := s.state.Load(); st.idle > 0 {
			_ = c.SetReadDeadline(time.Now().Add(st.idle))
		}
		n, err := c.Read(buf)
		if err != nil {
			switch {
			case errors.Is(err, syscall.ETIMEDOUT):
				sc.drop(dropTCPTimeout)
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				s.log.Debug("stream read", "transport", tp, "peer", src, "err", err)
			}
			return
		}
		data := buf[:n]
		if isKeepAlive(cur.Bytes()) && isKeepAlive(data) {
			// Between messages. RFC 5626 §3.5.1: a double-CRLF ping gets
			// a CRLF pong, also when it arrives in pieces.
			if pinged += len(data); pinged >= 4 {
				pinged = 0
				if !sc.enqueue(crlf) {
					return
				}
			}
			continue
		}
		pinged = 0
		cur.Write(data)
		_, _ = ps.Write(data)
		// Answers to every message of this read are queued as one batch:
		// a loaded peer packs many requests into a segment.
		pending.Reset()
		lost := s.parseStream(ps, &p, &cur, &out, &pending)
		if cur.Len() == 0 && cur.Cap() > readBuffer {
			cur = bytes.Buffer{} // a large message's buffer is not kept for the connection's lifetime
		}
		if !sc.enqueue(pending.Bytes()) || lost || !sc.waitWriter() {
			return
		}
		if pending.Len() > 0 {
			// Let the writer send this batch now: a reader that always
			// finds more to read (a busy trunk) would otherwise keep it
			// waiting for preemption, ~10 ms with edged on one core.
			runtime.Gosched()
		}
	}
}

// parseStream handles every complete message in ps, appending the answers
// to pending, and keeps cur to the bytes of the message still incomplete.
// It reports whether the framing is lost: a message was refused, its
// answer (if one can be formed) is in pending, and the connection must
// close.
func (s *Server) parseStream(ps *sip.ParserStream, p *peer, cur, out, pending *bytes.Buffer) (lost bool) {
	for ps.Buffer().Len() > 0 {
		msg, used, err := ps.ParseNext()
		switch {
		case err == nil:
			s.capture.received(p, cur.Bytes()[:used])
			cur.Next(used)
			s.handleMessage(msg, p, out)
			pending.Write(out.Bytes())
		case errors.Is(err, io.ErrUnexpectedEOF):
			return false // the rest of the message is still to come
		default:
			s.capture.received(p, cur.Bytes())
			s.refuseMessage(msg, err, p, bytes.TrimLeft(cur.Bytes(), "\r\n"), out)
			pending.Write(out.Bytes())
			return true
		}
	}
	return false
}

var crlf = []byte("\r\n")

// refuseMessage answers a stream message the parser refused into out:
// 513 when it exceeds maxMessage (RFC 3261 §21.5.14), else what rawAnswer
// finds. head is the message's raw text from its first byte, as far as it
// was kept.
func (s *Server) refuseMessage(msg sip.Message, err error, p *peer, head []byte, out *bytes.Buffer) {
	out.Reset()
	tp := p.transport
	s.metrics.SIPBadRequests.WithLabelValues(string(tp)).Inc()
	fqdn := s.state.Load().fqdn
	if !errors.Is(err, sip.ErrMessageTooLarge) {
		s.logInput("unparsable message, closing connection", "transport", tp, "peer", p.src, "err", err)
		rawAnswer(out, head, fqdn, "parse error: "+err.Error())
		return
	}
	detail := fmt.Sprintf("message exceeds %d bytes", maxMessage)
	s.logInput("message too large, closing connection", "transport", tp, "peer", p.src, "limit", maxMessage)
	// With the headers parsed (a Content-Length over the limit) the answer
	// is formed from them; else from the raw text kept.
	if req, ok := msg.(*sip.Request); ok && answerable(req) {
		if req.Method == sip.ACK {
			return // never answered (RFC 3261 §17.1.1.3)
		}
		scanHeaders(req, &p.scan)
		writeResponse(out, req, p, p.scan.vias, 513, "Message Too Large", warning(fqdn, detail))
		return
	}
	if !bytes.HasPrefix(head, []byte("ACK ")) {
		rawTooLarge(out, head, fqdn, detail)
	}
}

// writeTimeout is the current stream write deadline.
func (s *Server) writeTimeout() time.Duration { return s.state.Load().writeTimeout }

// peerNames returns the DNS names of a verified client certificate: its
// SANs, or its Common Name when it has none. Wildcard names are left out:
// they never identify a UM IP gateway (um-spec R-SEC-6).
func peerNames(cs tls.ConnectionState) []string {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	cert := cs.PeerCertificates[0]
	names := cert.DNSNames
	if len(names) == 0 && cert.Subject.CommonName != "" {
		names = []string{cert.Subject.CommonName}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !strings.HasPrefix(n, "*") {
			out = append(out, strings.ToLower(n))
		}
	}
	return out
}
