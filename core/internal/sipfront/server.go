package sipfront

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"golang.org/x/sys/unix"

	"github.com/umedge/umedge/core/internal/b2bua"
	"github.com/umedge/umedge/core/internal/mmsg"
	"github.com/umedge/umedge/core/internal/routing"
	"github.com/umedge/umedge/core/internal/telemetry"
	"github.com/umedge/umedge/core/sdk/router"
)

// Config is what the front end listens on and how it answers.
type Config struct {
	Listen      []netip.Addr // addresses to bind
	UDP, TCP    bool         // UDP and TCP on TCPPort
	TLS         bool         // mutual TLS on TLSPort
	TCPPort     int
	TLSPort     int
	TLSConfig   *tls.Config   // required with TLS; must demand and verify client certificates
	UDPBuffer   int           // socket buffer bytes for UDP
	DSCP        int           // DSCP of everything sent, 0..63 (dscp.go); 0 = unmarked
	IdleTimeout time.Duration // closes idle TCP/TLS connections
	RetryAfter  time.Duration // Retry-After on 503
	FQDN        string        // our identity, used in Warning headers

	// MaxConnections bounds the TCP and TLS connections of all listeners
	// together; 0 derives it from RLIMIT_NOFILE (connLimit), and a value
	// above what that allows is clamped to it.
	MaxConnections int
	// MaxConnectionsPerSource bounds the connections of one source address
	// (an IPv6 source: its /64); 0 means DefaultMaxConnsPerSource.
	MaxConnectionsPerSource int
	// WriteTimeout is the deadline of every TCP/TLS write; a peer that does
	// not take its answers within it is dropped. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// BanThreshold bans a source that is no configured peer once more than
	// this many of its requests were refused within 10 s (ban.go); 0 = off.
	BanThreshold int
	BanTime      time.Duration // how long a ban lasts
}

// DefaultWriteTimeout is the stream write deadline when Config leaves it 0.
const DefaultWriteTimeout = 2 * time.Second

// fallbackNoFile is the descriptor budget assumed when RLIMIT_NOFILE cannot
// be read.
const fallbackNoFile = 1024

// Router is what the front end asks where a call goes.
type Router interface {
	// Route answers call from the routing table at once, or returns
	// router.ErrAskPlugin for a call the table leaves to the plugin.
	Route(call *router.Call) (routing.Target, error)
	// Ask queues such a call with the Target Route returned; done gets
	// the answer later, from another goroutine. An error (a full queue)
	// means done is not called.
	Ask(call *router.Call, tg routing.Target, done routing.Done) error
}

// Server is the Call Router front end.
type Server struct {
	router  Router
	log     *slog.Logger
	metrics *telemetry.Metrics
	parser  *sip.Parser

	state atomic.Pointer[state]

	conns      *connTable
	refusedLog map[string]*logLimiter // by refusal reason
	rejectLog  logLimiter             // "call rejected" events
	inputLog   logLimiter             // bad requests, unparsable messages, refused TLS handshakes
	queued     atomic.Int64           // bytes queued on all stream connections (maxQueuedTotal)
	known      func(netip.Addr) bool  // configured peers (WithKnownSource); nil = none
	asking     pendingAsks            // INVITEs waiting for the router plugin, for CANCEL
	answers    *answers               // recent UDP INVITE answers, for retransmissions
	bans       *banList               // sources refused too often (ban.go)
	banning    atomic.Bool            // the ban list is on
	b2b        atomic.Pointer[b2bua.Engine]
	capture    tap                // the HEP sender, when capture is on (capture.go)
	out        outbound           // connections we opened for the B2BUA
	sources    sourceCache        // the kernel's source address towards peers
	tos        atomic.Int32       // the TOS byte sockets are marked with (dscp.go)
	ctx        context.Context    // ends at Close: bounds dials in progress
	cancel     context.CancelFunc // of ctx

	mu          sync.Mutex
	listeners   map[listenerKey]*listener
	clampLogged int // the sip.max_connections value last reported as clamped
	wg          sync.WaitGroup
}

// state is the part of the config read per message.
type state struct {
	fqdn         string
	retryAfter   string // the whole header line
	idle         time.Duration
	writeTimeout time.Duration
	tls          *tls.Config
}

type listenerKey struct {
	transport router.Transport
	addr      netip.AddrPort
}

type listener struct {
	key    listenerKey
	closer interface{ Close() error }
	udp    *udpSocket // UDP listeners: the socket, which also sends the B2BUA's requests
	conns  sync.Map   // net.Conn → struct{}, open stream connections
	// marking is held while a connection is added to conns and marked,
	// and while Apply marks the listener and conns anew: no connection
	// keeps the old TOS byte.
	marking sync.Mutex
}

// Option adjusts a Server.
type Option func(*Server)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithKnownSource tells the front end which source addresses are
// configured peers (the routing table's gateways): the others may hold at
// most half of the stream connections. Without it every source is a
// stranger.
func WithKnownSource(known func(netip.Addr) bool) Option {
	return func(s *Server) { s.known = known }
}

func (s *Server) knownSource(a netip.Addr) bool { return s.known != nil && s.known(a) }

// WithMetrics sets the metrics to count into.
func WithMetrics(m *telemetry.Metrics) Option { return func(s *Server) { s.metrics = m } }

// New returns a front end that asks r where calls go. It listens once
// Apply is called.
func New(r Router, opts ...Option) *Server {
	s := &Server{router: r, log: slog.Default(), parser: newParser(), listeners: map[listenerKey]*listener{},
		conns: newConnTable(), answers: newAnswers(), bans: newBanList(), rejectLog: logLimiter{interval: rejectLogInterval},
		inputLog: logLimiter{interval: rejectLogInterval},
		refusedLog: map[string]*logLimiter{
			refusedPerSource: {interval: refusedLogInterval},
			refusedGlobal:    {interval: refusedLogInterval},
			refusedBanned:    {interval: refusedLogInterval},
		}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		o(s)
	}
	if s.metrics == nil {
		s.metrics = telemetry.NewMetrics()
	}
	return s
}

// Apply makes the listeners match cfg: it opens what is new and closes
// what is gone, leaving unchanged listeners and their connections alone
// (um-spec R-SEC-2: mode changes apply live). It returns every bind error;
// listeners that could be opened stay open.
func (s *Server) Apply(cfg Config) error {
	if cfg.TLS && cfg.TLSConfig == nil {
		return ErrNoTLSConfig
	}
	writeTimeout := cfg.WriteTimeout
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	s.state.Store(&state{
		fqdn:         cfg.FQDN,
		retryAfter:   "Retry-After: " + strconv.Itoa(max(int(cfg.RetryAfter/time.Second), 1)),
		idle:         cfg.IdleTimeout,
		writeTimeout: writeTimeout,
		tls:          cfg.TLSConfig,
	})
	want := map[listenerKey]bool{}
	for _, a := range cfg.Listen {
		if cfg.UDP {
			want[listenerKey{router.UDP, netip.AddrPortFrom(a, uint16(cfg.TCPPort))}] = true
		}
		if cfg.TCP {
			want[listenerKey{router.TCP, netip.AddrPortFrom(a, uint16(cfg.TCPPort))}] = true
		}
		if cfg.TLS {
			want[listenerKey{router.TLS, netip.AddrPortFrom(a, uint16(cfg.TLSPort))}] = true
		}
	}
	s.bans.set(cfg.BanThreshold, cfg.BanTime)
	s.banning.Store(cfg.BanThreshold > 0 && cfg.BanTime > 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLimits(cfg)
	for k, l := range s.listeners {
		if !want[k] {
			s.closeListener(l)
			delete(s.listeners, k)
		}
	}
	var errs []error
	tos := tosByte(cfg.DSCP)
	if int(s.tos.Swap(int32(tos))) != tos { //nolint:gosec // 0..252
		errs = append(errs, s.remark(tos)...)
	}
	keys := make([]listenerKey, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b listenerKey) int { return cmpKey(a, b) })
	for _, k := range keys {
		if _, ok := s.listeners[k]; ok {
			continue
		}
		l, err := s.open(k, cfg.UDPBuffer, tos)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.listeners[k] = l
		s.log.Info("listening", "transport", k.transport, "addr", k.addr.String())
	}
	return errors.Join(errs...)
}

// applyLimits sets the stream connection limits of cfg. Called with s.mu
// held.
func (s *Server) applyLimits(cfg Config) {
	nofile, err := fdLimit()
	if err != nil {
		s.log.Warn("cannot read the file descriptor limit; assuming a small one", "assumed", fallbackNoFile, "err", err)
		nofile = fallbackNoFile
	}
	total, clamped := connLimit(nofile, cfg.MaxConnections)
	if clamped && s.clampLogged != cfg.MaxConnections {
		s.log.Warn("sip.max_connections is more than the file descriptor limit allows; clamped",
			"configured", cfg.MaxConnections, "limit", total, "rlimit_nofile", nofile)
	}
	s.clampLogged = 0
	if clamped {
		s.clampLogged = cfg.MaxConnections
	}
	perSource := cfg.MaxConnectionsPerSource
	if perSource <= 0 {
		perSource = DefaultMaxConnsPerSource
	}
	s.conns.setLimits(perSource, total)
}

func cmpKey(a, b listenerKey) int {
	if a.transport != b.transport {
		if a.transport < b.transport {
			return -1
		}
		return 1
	}
	return a.addr.Compare(b.addr)
}

// Listeners returns the open listeners as "transport addr" strings.
func (s *Server) Listeners() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.listeners))
	for k := range s.listeners {
		out = append(out, string(k.transport)+" "+k.addr.String())
	}
	slices.Sort(out)
	return out
}

// Close stops every listener and connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	for k, l := range s.listeners {
		s.closeListener(l)
		delete(s.listeners, k)
	}
	s.mu.Unlock()
	s.cancel()
	s.closeOutbound()
	s.wg.Wait()
	return nil
}

func (s *Server) closeListener(l *listener) {
	_ = l.closer.Close()
	l.conns.Range(func(c, _ any) bool {
		_ = c.(net.Conn).Close()
		return true
	})
	s.log.Info("stopped listening", "transport", l.key.transport, "addr", l.key.addr.String())
}

func (s *Server) open(k listenerKey, udpBuffer, tos int) (*listener, error) {
	l := &listener{key: k}
	lc := net.ListenConfig{Control: tosControl(tos)}
	switch k.transport {
	case router.UDP:
		c, err := lc.ListenPacket(context.Background(), "udp", k.addr.String())
		if err != nil {
			return nil, listenError(k, err)
		}
		pc := c.(*net.UDPConn)
		if udpBuffer > 0 {
			got, err := setBuffers(pc, udpBuffer)
			if err != nil || got < udpBuffer {
				s.log.Warn("udp socket buffers smaller than configured", "addr", k.addr.String(),
					"want", udpBuffer, "got", got, "err", err)
			}
		}
		l.closer, l.udp = pc, newUDPSocket(pc, k.addr, &s.capture, s.log)
		// Several readers per socket: a datagram is handled start to end
		// on the goroutine that read it, with no hand-off.
		for range max(runtime.GOMAXPROCS(0), 2) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveUDP(l.udp)
			}()
		}
	case router.TCP, router.TLS:
		ln, err := lc.Listen(context.Background(), "tcp", k.addr.String())
		if err != nil {
			return nil, listenError(k, err)
		}
		l.closer = ln
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.accept(ln, l)
		}()
	}
	return l, nil
}

// listenError names the listener k in err, once: net's own error says
// "listen tcp [::1]:5061" too, but not whether that is TLS.
func listenError(k listenerKey, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "listen" {
		err = oe.Err
	}
	return fmt.Errorf("listen %s %s: %w", k.transport, k.addr, err)
}

// remark marks the open listeners and connections with tos, after a
// change of sip.dscp. Called with s.mu held; a connection's failure (one
// closing meanwhile) is not reported. Two or three system calls a socket:
// with a hundred thousand connections open a reload holds s.mu, and each
// listener's accepts, for a fraction of a second.
func (s *Server) remark(tos int) []error {
	var errs []error
	for _, l := range s.listeners {
		l.marking.Lock()
		if err := markConn(l.closer, tos); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", l.key.transport, l.key.addr, err))
		}
		l.conns.Range(func(c, _ any) bool {
			_ = markConn(c, tos)
			return true
		})
		l.marking.Unlock()
	}
	s.out.each(func(oc *outConn) {
		if oc.raw != nil {
			_ = markConn(oc.raw, tos)
		}
	})
	return errs
}

// maxDatagram is the read buffer of a UDP socket: any datagram fits, so
// the parser sees it whole and refuses one over maxMessage with 513.
const maxDatagram = 65535

// udpBatch is how many datagrams one read of a UDP socket takes
// (recvmmsg): under load the queue holds several, and one system call and
// one wake-up for them all is the reader's saving; 1 MiB of buffers a
// socket.
const udpBatch = 16

func (s *Server) serveUDP(u *udpSocket) {
	rc, err := u.pc.SyscallConn()
	if err != nil {
		s.log.Error("udp socket without a descriptor: not served", "addr", u.local, "err", err)
		return
	}
	r := mmsg.NewReader(udpBatch, maxDatagram)
	var out bytes.Buffer
	p := peer{transport: router.UDP, local: u.local}
	p.reply = replyPath{udp: u}
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = r.Read(int(fd))            //nolint:gosec // a descriptor
			return !errors.Is(rerr, unix.EAGAIN) // EAGAIN: wait until the socket is readable
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("udp read", "err", err)
			continue
		}
		u.serve()
		for i := range n {
			data, src, _ := r.Datagram(i) // never cut: a buffer holds any datagram
			if isKeepAlive(data) {
				continue // RFC 5626 §3.5.1 CRLF keep-alive over UDP: nothing to answer
			}
			if s.isBanned(src.Addr()) {
				continue
			}
			p.src = src
			dst := s.handleDatagram(data, &p, &out)
			if out.Len() > 0 && dst.IsValid() {
				if err := u.send(out.Bytes(), dst); err != nil {
					s.log.Debug("udp write", "dst", dst, "err", err)
				}
			}
		}
		u.done()
	}
}

// handleDatagram parses and answers one UDP datagram.
func (s *Server) handleDatagram(data []byte, p *peer, out *bytes.Buffer) netip.AddrPort {
	s.capture.received(p, data)
	msg, err := s.parser.ParseSIP(data)
	if err != nil {
		s.metrics.SIPBadRequests.WithLabelValues(string(p.transport)).Inc()
		s.logInput("unparsable message", "transport", p.transport, "peer", p.src, "bytes", len(data), "err", err)
		fqdn := s.state.Load().fqdn
		answered := false
		if len(data) > maxMessage {
			// sipgo also says ErrMessageTooLarge for a Content-Length
			// beyond the limit in a small datagram: that one is a lie
			// about the body, a 400 (RFC 3261 §18.3).
			answered = rawTooLarge(out, data, fqdn, fmt.Sprintf("message of %d bytes exceeds %d", len(data), maxMessage))
		} else {
			answered = rawAnswer(out, data, fqdn, "parse error: "+err.Error())
		}
		if answered {
			return p.src
		}
		return netip.AddrPort{}
	}
	return s.handleMessage(msg, p, out)
}

func isKeepAlive(data []byte) bool {
	for _, c := range data {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// isBanned reports whether messages from src are dropped unread: the ban
// list is on, src is banned and is no configured peer.
func (s *Server) isBanned(src netip.Addr) bool {
	if !s.banning.Load() || !s.bans.banned(src, time.Now()) || s.knownSource(src) {
		return false
	}
	s.metrics.SIPBannedDrops.Inc()
	return true
}

// refusedFrom counts a refused request of a source that is no configured
// peer towards its ban.
func (s *Server) refusedFrom(src netip.Addr) {
	if !s.banning.Load() || s.knownSource(src) {
		return
	}
	if s.bans.refused(src, time.Now()) {
		s.metrics.SIPBans.Inc()
		if ok, n := s.refusedLog[refusedBanned].allow(time.Now()); ok {
			s.log.Warn("source banned: too many refused requests", "peer", src.String(), "ban_time", s.bans.banTime, "bans_unlogged", n)
		}
	}
}

// logInput logs a line about bad input from the network, at most 100 a
// second whatever a flood sends; a logged line says how many were left out
// before it. The metrics count every one.
func (s *Server) logInput(msg string, attrs ...any) {
	if ok, n := s.inputLog.allow(time.Now()); ok {
		if n > 0 {
			attrs = append(attrs, "not_logged_before", n)
		}
		s.log.Info(msg, attrs...)
	}
}
