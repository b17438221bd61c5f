package sipfront

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/sdk/router"
)

// handshakeTimeout bounds a TLS handshake, so a silent client cannot hold
// a goroutine.
const handshakeTimeout = 10 * time.Second

// maxConns bounds the open connections of one stream listener (~30 KiB
// each): gateways hold a few each, so the bound is only ever reached by a
// connection flood, which then costs memory it cannot grow.
const maxConns = 10000

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
		if l.open.Add(1) > maxConns {
			l.open.Add(-1)
			_ = c.Close()
			if l.refused.Add(1)%1000 == 1 {
				s.log.Warn("connection limit reached, refusing connections", "transport", l.key.transport,
					"addr", l.key.addr.String(), "limit", maxConns, "refused", l.refused.Load())
			}
			continue
		}
		l.conns.Store(c, struct{}{})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer l.open.Add(-1)
			defer l.conns.Delete(c)
			defer c.Close()
			s.serveConn(c, l.key.transport)
		}()
	}
}

// serveConn reads SIP messages from one TCP or TLS connection and answers
// each on the same connection (RFC 3261 §18.2.2).
func (s *Server) serveConn(c net.Conn, tp router.Transport) {
	src, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return
	}
	p := peer{transport: tp, src: src}
	st := s.state.Load()
	if tp == router.TLS {
		tc := tls.Server(c, st.tls)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			// A peer without a certificate chaining to the configured CA
			// never gets past here (um-spec R-SEC-3).
			s.log.Info("tls handshake refused", "peer", src, "err", err)
			return
		}
		p.names = peerNames(tc.ConnectionState())
		c = tc
	}
	ps := s.parser.NewSIPStream()
	defer ps.Close()
	buf := make([]byte, 16*1024)
	var out, pending bytes.Buffer
	for {
		if st := s.state.Load(); st.idle > 0 {
			_ = c.SetReadDeadline(time.Now().Add(st.idle))
		}
		n, err := c.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("stream read", "transport", tp, "peer", src, "err", err)
			}
			return
		}
		data := buf[:n]
		if ps.Buffer().Len() == 0 && isKeepAlive(data) {
			if len(data) >= 4 { // RFC 5626 §3.5.1: a double-CRLF ping gets a CRLF pong
				if _, err := c.Write([]byte("\r\n")); err != nil {
					return
				}
			}
			continue
		}
		// Answers to every message of this read go out in one write: a
		// loaded peer packs many requests into a segment.
		pending.Reset()
		err = ps.ParseSIPStream(data, func(msg sip.Message) {
			s.handleMessage(msg, &p, &out)
			pending.Write(out.Bytes())
		})
		if pending.Len() > 0 {
			if _, werr := c.Write(pending.Bytes()); werr != nil {
				return
			}
		}
		if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
			// The framing is lost: answer what can be answered and close.
			s.metrics.SIPBadRequests.WithLabelValues(string(tp)).Inc()
			s.log.Info("unparsable message, closing connection", "transport", tp, "peer", src, "err", err)
			if rawAnswer(&out, ps.Buffer().Bytes(), s.state.Load().fqdn, "parse error: "+err.Error()) ||
				rawAnswer(&out, data, s.state.Load().fqdn, "parse error: "+err.Error()) {
				_, _ = c.Write(out.Bytes())
			}
			return
		}
	}
}

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
