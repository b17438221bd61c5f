package sipfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/sdk/router"
)

// The front end is the B2BUA's transport (b2bua.Transport): leg B's UDP
// messages leave from our listening socket, so that the back end's answers
// come back to it; TCP and TLS ones on connections we open, read by the
// same code as accepted ones. Either way, whatever arrives reaches
// handleMessage and from there the engine.

// SetB2BUA hands the calls of proxy pools to e; nil sends them 503.
func (s *Server) SetB2BUA(e *b2bua.Engine) { s.b2b.Store(e) }

var _ b2bua.Transport = (*Server)(nil)

// dialTimeout bounds opening a connection to a back end, TLS included.
const dialTimeout = 5 * time.Second

// maxPending bounds the messages queued for a connection still opening.
const maxPending = 256

// outbound is the connections we opened, by transport and address.
type outbound struct {
	mu    sync.Mutex
	conns map[listenerKey]*outConn
}

// outConn is one connection we opened: messages queue in pending until it
// is up.
type outConn struct {
	mu      sync.Mutex
	sc      *streamConn // nil while opening
	raw     net.Conn    // the TCP connection once dialled, for Close
	pending [][]byte
	failed  bool
}

func (oc *outConn) send(b []byte) error {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	switch {
	case oc.failed:
		return errConnFailed
	case oc.sc != nil:
		if !oc.sc.enqueue(b) {
			return errConnFailed
		}
	case len(oc.pending) >= maxPending:
		return errConnBusy
	default:
		oc.pending = append(oc.pending, b)
	}
	return nil
}

var (
	errConnFailed = errors.New("connection failed")
	errConnBusy   = errors.New("connection still opening, queue full")
	errNoListener = errors.New("no listener")
	errNoAddress  = errors.New("no address")
)

// Send implements b2bua.Transport.
func (s *Server) Send(tp router.Transport, dst netip.AddrPort, serverName string, msg []byte) error {
	if tp == router.UDP {
		u := s.udpSocket(dst.Addr())
		if u == nil {
			return fmt.Errorf("udp to %s: %w", dst, errNoListener)
		}
		return u.send(msg, dst)
	}
	key := listenerKey{tp, dst}
	s.out.mu.Lock()
	if s.out.conns == nil {
		s.out.conns = map[listenerKey]*outConn{}
	}
	oc := s.out.conns[key]
	if oc == nil {
		oc = &outConn{}
		s.out.conns[key] = oc
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.dial(key, serverName, oc)
		}()
	}
	s.out.mu.Unlock()
	return oc.send(msg)
}

// dial opens an outbound connection and reads it until it closes.
func (s *Server) dial(key listenerKey, serverName string, oc *outConn) {
	defer s.forgetOut(key, oc)
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	defer cancel()
	tos := int(s.tos.Load())
	raw, err := (&net.Dialer{Control: tosControl(tos)}).DialContext(ctx, "tcp", key.addr.String())
	if err != nil {
		s.log.Info("cannot reach back end", "transport", key.transport, "addr", key.addr.String(), "err", err)
		s.unreachable(key, oc)
		return
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(streamSendBuffer)
		_ = setUserTimeout(tc, max(s.writeTimeout(), minUserTimeout))
	}
	oc.mu.Lock()
	oc.raw = raw
	if now := int(s.tos.Load()); now != tos {
		// sip.dscp changed while we dialled, and Apply's remark found
		// no connection here yet.
		_ = markConn(raw, now)
	}
	closed := oc.failed // Close ran while we dialled
	oc.mu.Unlock()
	if closed {
		_ = raw.Close()
		return
	}
	c := raw
	if key.transport == router.TLS {
		tc := tls.Client(raw, s.clientTLS(serverName))
		if err := tc.HandshakeContext(ctx); err != nil {
			s.log.Info("tls handshake with back end failed", "addr", key.addr.String(), "server_name", serverName, "err", err)
			_ = raw.Close()
			s.unreachable(key, oc)
			return
		}
		c = tc
	}
	s.metrics.SIPConnsOpen.Inc()
	defer s.metrics.SIPConnsOpen.Dec()
	defer func() { _ = c.Close() }()
	s.readStream(c, raw, peer{transport: key.transport, src: remoteAddr(raw)}, func(sc *streamConn) {
		oc.mu.Lock()
		oc.sc = sc
		for _, b := range oc.pending {
			sc.enqueue(b)
		}
		oc.pending = nil
		oc.mu.Unlock()
	})
}

// unreachable fails the connection oc and tells the B2BUA, so that the
// calls waiting for it move on at once.
func (s *Server) unreachable(key listenerKey, oc *outConn) {
	s.forgetOut(key, oc)
	if b := s.b2b.Load(); b != nil {
		b.Unreachable(key.transport, key.addr)
	}
}

// closeOutbound closes every connection we opened, so that their readers
// return (Close waits for them).
func (s *Server) closeOutbound() {
	s.out.each(func(oc *outConn) {
		oc.failed = true
		if oc.raw != nil {
			_ = oc.raw.Close()
		}
	})
}

// forgetOut marks oc failed and removes it, so that the next message to
// its address opens a new connection.
func (s *Server) forgetOut(key listenerKey, oc *outConn) {
	s.out.mu.Lock()
	if s.out.conns[key] == oc {
		delete(s.out.conns, key)
	}
	s.out.mu.Unlock()
	oc.mu.Lock()
	oc.failed, oc.pending = true, nil
	oc.mu.Unlock()
}

// each calls fn for every connection we opened, with its lock held.
func (o *outbound) each(fn func(oc *outConn)) {
	o.mu.Lock()
	conns := make([]*outConn, 0, len(o.conns))
	for _, oc := range o.conns {
		conns = append(conns, oc)
	}
	o.mu.Unlock()
	for _, oc := range conns {
		oc.mu.Lock()
		fn(oc)
		oc.mu.Unlock()
	}
}

// clientTLS is the TLS client side of the listener's configuration: our
// certificate (mutual TLS, R-SEC-3), the configured CA bundle as roots.
func (s *Server) clientTLS(serverName string) *tls.Config {
	st := s.state.Load()
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if st.tls != nil {
		cfg.Certificates = st.tls.Certificates
		cfg.RootCAs = st.tls.ClientCAs
		cfg.MinVersion = st.tls.MinVersion
		cfg.CipherSuites = st.tls.CipherSuites
	}
	return cfg
}

// udpSocket returns a UDP listener's socket of dst's address family.
func (s *Server) udpSocket(dst netip.Addr) *udpSocket {
	l := s.listenerFor(router.UDP, dst)
	if l == nil {
		return nil
	}
	return l.udp
}

// listenerFor returns an open listener of tp whose address family is
// dst's, preferring a loopback one for a loopback dst and else a
// non-loopback one.
func (s *Server) listenerFor(tp router.Transport, dst netip.Addr) *listener {
	dst = dst.Unmap()
	s.mu.Lock()
	var cands []*listener
	for k, l := range s.listeners {
		if k.transport == tp && k.addr.Addr().Is4() == dst.Is4() {
			cands = append(cands, l)
		}
	}
	s.mu.Unlock()
	switch len(cands) {
	case 0:
		return nil
	case 1:
		return cands[0]
	}
	// Several: the one on the address the kernel sends to dst from (on a
	// box with an inside and an outside interface, the inside back end
	// must see the inside address in Via, Contact and SDP), else a
	// wildcard one, else one of dst's kind (loopback or not); ties by
	// address, so the choice does not change from call to call.
	src, _ := s.sources.lookup(dst)
	rank := func(l *listener) int {
		a := l.key.addr.Addr()
		switch {
		case a == src:
			return 0
		case a.IsUnspecified():
			return 1
		case a.IsLoopback() == dst.IsLoopback():
			return 2
		}
		return 3
	}
	best := cands[0]
	for _, l := range cands[1:] {
		if r, rb := rank(l), rank(best); r < rb || r == rb && l.key.addr.Compare(best.key.addr) < 0 {
			best = l
		}
	}
	return best
}

// Local implements b2bua.Transport: our listener's address for tp towards
// dst; an unspecified listener address is replaced by the one the kernel
// would send from.
func (s *Server) Local(tp router.Transport, dst netip.Addr) (netip.AddrPort, error) {
	l := s.listenerFor(tp, dst)
	if l == nil && tp == router.TCP {
		l = s.listenerFor(router.UDP, dst) // a UDP-only front still has our port
	}
	if l == nil {
		return netip.AddrPort{}, fmt.Errorf("%s towards %s: %w", tp, dst, errNoListener)
	}
	ap := l.key.addr
	if ap.Addr().IsUnspecified() {
		a, err := s.sources.lookup(dst)
		if err != nil {
			return netip.AddrPort{}, err
		}
		ap = netip.AddrPortFrom(a, ap.Port())
	}
	return ap, nil
}

// sourceFor asks the kernel which address it sends to dst from: a
// connected UDP socket sends nothing.
func sourceFor(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", dst, err)
	}
	defer func() { _ = c.Close() }()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// kernelSource is sourceFor; a var for tests.
var kernelSource = sourceFor

// sourceTTL is how long the kernel's source address towards a peer is
// remembered: asking costs a socket, a connect and a close (~20 µs), and
// listenerFor asks for every UDP message the B2BUA sends when several
// listeners share a family. A route change shows within it.
const sourceTTL = time.Second

// maxSources bounds the peers remembered; past it the cache starts over.
const maxSources = 4096

// sourceCache remembers the kernel's source address towards peers.
type sourceCache struct {
	mu  sync.Mutex
	m   map[netip.Addr]sourceEntry
	now func() time.Time // nil = time.Now; for tests
}

type sourceEntry struct {
	src netip.Addr
	err error
	at  time.Time
}

// lookup is sourceFor(dst), asked at most once per sourceTTL.
func (c *sourceCache) lookup(dst netip.Addr) (netip.Addr, error) {
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	c.mu.Lock()
	e, ok := c.m[dst]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < sourceTTL {
		return e.src, e.err
	}
	src, err := kernelSource(dst)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxSources {
		c.m = make(map[netip.Addr]sourceEntry)
	}
	c.m[dst] = sourceEntry{src: src, err: err, at: now}
	c.mu.Unlock()
	return src, err
}

// Resolve implements b2bua.Transport. A back end named by DNS is looked
// up with a short deadline.
func (s *Server) Resolve(host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(as) == 0 {
		return netip.Addr{}, fmt.Errorf("%s: %w", host, errNoAddress)
	}
	return as[0].Unmap(), nil
}

// inbound describes the peer of a message for the B2BUA.
func (s *Server) inbound(p *peer, req *sip.Request) b2bua.Inbound {
	in := b2bua.Inbound{Transport: p.transport, Source: p.src, Local: p.local}
	if in.Local.Addr().IsUnspecified() {
		if a, err := s.sources.lookup(p.src.Addr()); err == nil {
			in.Local = netip.AddrPortFrom(a, in.Local.Port())
		}
	}
	switch rp := p.reply; {
	case rp.stream != nil:
		in.Reply, in.Requests = sender{rp.stream}, sender{rp.stream}
		if req != nil {
			// Only to the host the peer connected from: a peer's Contact
			// must not make the appliance connect elsewhere.
			if dst, name, ok := contactAddr(req, p.transport); ok && dst.Addr() == p.src.Addr() {
				in.Requests = streamRequests{sc: rp.stream, s: s, tp: p.transport, dst: dst, name: name}
			}
		}
	case rp.udp != nil:
		// One boxed sender when answers and requests go to the same
		// address (the usual case: no Via sent-by elsewhere): this runs
		// for every message of a proxy call.
		requests := b2bua.Sender(udpReplier{rp.udp, p.src})
		in.Reply, in.Requests = requests, requests
		if req != nil {
			if dst := responseAddr(req, p); dst != p.src {
				in.Reply = udpReplier{rp.udp, dst}
			}
		}
	default:
		in.Reply, in.Requests = sender{noReply{}}, sender{noReply{}}
	}
	return in
}

// sender adapts a replier to b2bua.Sender.
type sender struct{ r replier }

func (s sender) Send(b []byte) { s.r.reply(b) }

// streamRequests sends our requests to a stream peer on the connection its
// request came on, and once that has closed on a new connection to its
// Contact (RFC 3261 §18.1.1): a gateway whose connection idled out or
// whose NAT rebound still gets the back end's BYE.
type streamRequests struct {
	sc   *streamConn
	s    *Server
	tp   router.Transport
	dst  netip.AddrPort
	name string
}

func (r streamRequests) Send(b []byte) {
	if r.sc.enqueue(b) {
		return
	}
	if err := r.s.Send(r.tp, r.dst, r.name, b); err != nil {
		r.s.log.Debug("request to a stream peer lost", "dst", r.dst, "err", err)
	}
}

// contactAddr is where a new connection to req's sender goes: its
// Contact's host, an IP literal, and port (5060, 5061 for TLS by default).
// A Contact naming a host by DNS is not dialled: the peer's own connection
// is all there is then.
func contactAddr(req *sip.Request, tp router.Transport) (netip.AddrPort, string, bool) {
	ct := req.Contact()
	if ct == nil {
		return netip.AddrPort{}, "", false
	}
	a, err := netip.ParseAddr(strings.Trim(ct.Address.Host, "[]"))
	if err != nil || a.IsUnspecified() || a.IsMulticast() {
		return netip.AddrPort{}, "", false
	}
	port := ct.Address.Port
	if port == 0 {
		port = 5060
		if tp == router.TLS {
			port = 5061
		}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), a.String(), true
}
