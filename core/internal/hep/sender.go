package hep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/umedge/umedge/core/internal/telemetry"
)

// Config says where captures go and what they carry.
type Config struct {
	Collector netip.AddrPort // the collector's address, resolved (Resolve)
	Network   string         // "udp" or "tcp"
	AgentID   uint32         // the capture agent id chunk
	AuthKey   string         // the auth key chunk; "" sends none
	Queue     int            // messages waiting for the sender at most; 0 = DefaultQueue
}

// DefaultQueue is the queue length when Config leaves it 0.
const DefaultQueue = 8192

const (
	// slotBytes bounds the memory of the queue: it holds at most Queue ×
	// slotBytes bytes of messages (SIP messages are mostly below 2 KiB),
	// so a flood of large ones cannot take more.
	slotBytes = 4096
	// keepBuffer is the largest copy buffer returned to the pool.
	keepBuffer = 64 << 10
	// batchBytes is what one TCP write carries at most.
	batchBytes = 64 << 10
	// tcpSendBuffer caps the kernel's send buffer towards a TCP
	// collector: one that stops reading costs this, not tcp_wmem's 4 MiB.
	tcpSendBuffer = 256 << 10
	// warnInterval spaces the warnings about an unreachable collector.
	warnInterval = 30 * time.Second
	// drainTime is how long Close goes on sending what is queued.
	drainTime = 500 * time.Millisecond
)

// Timeouts towards a TCP collector, and its reconnect backoff; vars for tests.
var (
	dialTimeout  = 2 * time.Second
	writeTimeout = time.Second
	backoffMin   = time.Second
	backoffMax   = 30 * time.Second
)

// Why a message was not sent; the values are metric labels.
const (
	dropQueueFull = "queue-full"     // the queue or its byte budget was full
	dropDown      = "collector-down" // no TCP connection, waiting to reconnect
	dropSendError = "send-error"     // the write failed (e.g. ICMP port unreachable)
	dropTooLarge  = "too-large"      // more than a HEP packet holds
	dropShutdown  = "shutdown"       // still queued when the sender closed
)

// Option adjusts a Sender.
type Option func(*Sender)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Sender) { s.log = l } }

// WithMetrics counts into m's HEP metrics.
func WithMetrics(m *telemetry.Metrics) Option {
	return func(s *Sender) { s.sent, s.dropped = m.HEPSent, m.HEPDropped }
}

// Sender queues copies of SIP messages and sends them to one collector.
// Capture is safe for concurrent use and never blocks.
type Sender struct {
	cfg      Config
	tcp      bool
	authKey  []byte
	log      *slog.Logger
	sent     prometheus.Counter
	dropped  *prometheus.CounterVec
	drops    map[string]prometheus.Counter // dropped, by reason, resolved once
	queue    chan item
	budget   atomic.Int64 // bytes in the queue
	maxBytes int64
	pool     sync.Pool // *[]byte
	closed   atomic.Bool
	quit     chan struct{}
	done     chan struct{}
	ctx      context.Context // ends at Close: aborts a dial
	cancel   context.CancelFunc
	once     sync.Once

	// The goroutine's own.
	conn     net.Conn // to the collector; nil while a TCP one is down
	out      []byte
	locals   map[netip.Addr]netip.Addr // our source address towards a peer
	failing  bool
	lastWarn time.Time
	nextDial time.Time
	backoff  time.Duration
}

// item is one queued copy.
type item struct {
	proto    Proto
	src, dst netip.AddrPort
	at       int64 // capture time, Unix nanoseconds
	buf      *[]byte
}

// New returns a Sender to cfg.Collector and starts its goroutine. A UDP
// socket is opened at once; a TCP connection is opened by the goroutine
// and reopened with backoff when it fails.
func New(cfg Config, opts ...Option) (*Sender, error) {
	if cfg.Network != "udp" && cfg.Network != "tcp" {
		return nil, fmt.Errorf("%w: %q", ErrNetwork, cfg.Network)
	}
	if !cfg.Collector.IsValid() || cfg.Collector.Port() == 0 {
		return nil, ErrNoCollector
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	s := &Sender{cfg: cfg, tcp: cfg.Network == "tcp", authKey: []byte(cfg.AuthKey), log: slog.Default(),
		queue: make(chan item, cfg.Queue), maxBytes: int64(cfg.Queue) * slotBytes,
		quit: make(chan struct{}), done: make(chan struct{}), locals: map[netip.Addr]netip.Addr{}}
	s.pool.New = func() any { b := make([]byte, 0, 2048); return &b }
	for _, o := range opts {
		o(s)
	}
	if s.sent == nil {
		s.sent = prometheus.NewCounter(prometheus.CounterOpts{Name: "hep_sent"})
		s.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hep_dropped"}, []string{"reason"})
	}
	s.drops = map[string]prometheus.Counter{}
	for _, r := range []string{dropQueueFull, dropDown, dropSendError, dropTooLarge, dropShutdown} {
		s.drops[r] = s.dropped.WithLabelValues(r)
	}
	if !s.tcp {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(cfg.Collector))
		if err != nil {
			return nil, fmt.Errorf("hep: udp to %s: %w", cfg.Collector, err)
		}
		s.conn = c
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Capture queues a copy of msg, a SIP message that went from src to dst
// over proto at this moment. Over TCP and TLS msg may hold several
// messages back to back, as written to the stream. It never blocks: when
// the queue is full the copy is dropped and counted.
func (s *Sender) Capture(proto Proto, src, dst netip.AddrPort, msg []byte) {
	if len(msg) == 0 || s.closed.Load() {
		return
	}
	n := int64(len(msg))
	if s.budget.Add(n) > s.maxBytes {
		s.budget.Add(-n)
		s.drops[dropQueueFull].Inc()
		return
	}
	bp := s.pool.Get().(*[]byte)
	*bp = append((*bp)[:0], msg...)
	select {
	case s.queue <- item{proto: proto, src: src, dst: dst, at: time.Now().UnixNano(), buf: bp}:
	default:
		s.release(bp)
		s.drops[dropQueueFull].Inc()
	}
}

// release gives a copy's bytes back to the budget and its buffer to the pool.
func (s *Sender) release(bp *[]byte) {
	s.budget.Add(-int64(len(*bp)))
	if cap(*bp) <= keepBuffer {
		s.pool.Put(bp)
	}
}

// Close stops the sender: what is queued is sent for a short while, the
// rest is dropped and counted, and the connection is closed. A nil Sender
// closes as nothing.
func (s *Sender) Close() error {
	if s == nil {
		return nil
	}
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.quit)
	})
	<-s.done
	return nil
}

// Collector is where the sender sends.
func (s *Sender) Collector() netip.AddrPort { return s.cfg.Collector }

func (s *Sender) run() {
	defer close(s.done)
	defer s.cancel()
	for {
		select {
		case <-s.quit:
			s.drain()
			s.setConn(nil)
			return
		case it := <-s.queue:
			s.handle(it)
		}
	}
}

// drain sends what is queued at Close for up to drainTime.
func (s *Sender) drain() {
	end := time.Now().Add(drainTime)
	for time.Now().Before(end) {
		select {
		case it := <-s.queue:
			s.handle(it)
		default:
			return
		}
	}
	for {
		select {
		case it := <-s.queue:
			s.drops[dropShutdown].Inc()
			s.release(it.buf)
		default:
			return
		}
	}
}

// handle sends one queued copy: over UDP each message in a datagram of its
// own; over TCP together with what else is queued, in one write.
func (s *Sender) handle(first item) {
	s.out = s.out[:0]
	n := s.encode(first)
	if !s.tcp {
		return
	}
more:
	for len(s.out) < batchBytes {
		select {
		case it := <-s.queue:
			n += s.encode(it)
		default:
			break more
		}
	}
	s.writeTCP(n)
}

// encode appends the HEP packets of it to s.out (over UDP: sends each at
// once) and returns how many it appended.
func (s *Sender) encode(it item) int {
	defer s.release(it.buf)
	p := Packet{Proto: it.proto, Src: s.fill(it.src, it.dst), Dst: s.fill(it.dst, it.src),
		Time: time.Unix(0, it.at), AgentID: s.cfg.AgentID, AuthKey: s.authKey}
	n := 0
	for rest := *it.buf; len(rest) > 0; {
		var msg []byte
		if it.proto == UDP {
			msg, rest = rest, nil
		} else {
			msg, rest = nextMessage(rest)
		}
		if len(msg) == 0 {
			break
		}
		p.Payload, p.CorrelationID = msg, callID(msg)
		start := len(s.out)
		out, err := Append(s.out, &p)
		if err != nil {
			s.drops[dropTooLarge].Inc()
			continue
		}
		s.out = out
		if s.tcp {
			n++
			continue
		}
		s.writeUDP(s.out[start:])
		s.out = s.out[:start]
	}
	return n
}

func (s *Sender) writeUDP(pkt []byte) {
	if _, err := s.conn.Write(pkt); err != nil {
		s.drops[dropSendError].Inc()
		s.failed(err)
		return
	}
	s.sent.Inc()
	s.recovered()
}

func (s *Sender) writeTCP(n int) {
	if n == 0 {
		return
	}
	c := s.connect()
	if c == nil {
		s.drops[dropDown].Add(float64(n))
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(s.out); err != nil {
		// A partial write leaves the stream out of frame: reconnect.
		s.drops[dropSendError].Add(float64(n))
		s.setConn(nil)
		s.nextDial = time.Now().Add(s.nextBackoff())
		s.failed(err)
		return
	}
	s.sent.Add(float64(n))
	s.recovered()
}

// connect returns the TCP connection, opening it unless a reconnect is
// not due yet.
func (s *Sender) connect() net.Conn {
	if s.conn != nil {
		return s.conn
	}
	if time.Now().Before(s.nextDial) {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.cfg.Collector.String())
	if err != nil {
		s.nextDial = time.Now().Add(s.nextBackoff())
		s.failed(err)
		return nil
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(tcpSendBuffer)
	}
	s.backoff = 0
	s.setConn(c)
	return c
}

func (s *Sender) nextBackoff() time.Duration {
	s.backoff = min(max(2*s.backoff, backoffMin), backoffMax)
	return s.backoff
}

func (s *Sender) setConn(c net.Conn) {
	if s.conn != nil && s.conn != c {
		_ = s.conn.Close()
	}
	s.conn = c
}

// failed logs that the collector cannot be reached: on the change, and
// then at most every warnInterval.
func (s *Sender) failed(err error) {
	if errors.Is(err, net.ErrClosed) && s.closed.Load() {
		return
	}
	now := time.Now()
	if !s.failing || now.Sub(s.lastWarn) >= warnInterval {
		s.log.Warn("hep collector unreachable; captures are dropped", "collector", s.cfg.Collector.String(),
			"transport", s.cfg.Network, "err", err)
		s.lastWarn = now
	}
	s.failing = true
}

func (s *Sender) recovered() {
	if s.failing {
		s.failing = false
		s.log.Info("hep collector reachable again", "collector", s.cfg.Collector.String(), "transport", s.cfg.Network)
	}
}

// maxLocals bounds the cache of our source addresses by peer.
const maxLocals = 1024

// fill replaces an unspecified address of ours (a listener on 0.0.0.0 or
// ::) by the one the kernel sends to peer from, as a collector wants to
// see it; asked once per peer address.
func (s *Sender) fill(a, peer netip.AddrPort) netip.AddrPort {
	if !a.Addr().IsUnspecified() || !peer.Addr().IsValid() {
		return a
	}
	local, ok := s.locals[peer.Addr()]
	if !ok {
		local = a.Addr()
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer.Addr(), 9))); err == nil {
			local = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
			_ = c.Close()
		}
		if len(s.locals) >= maxLocals {
			clear(s.locals)
		}
		s.locals[peer.Addr()] = local
	}
	return netip.AddrPortFrom(local, a.Port())
}

// Resolve turns a collector's host:port into an address: an IP literal as
// it is, a host name by DNS (its first address) within ctx.
func Resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("hep collector %q: %w", hostport, err)
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil || pn <= 0 || pn > 65535 {
		return netip.AddrPort{}, fmt.Errorf("hep collector %q: %w: %q", hostport, ErrBadPort, port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(pn)), nil
	}
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("hep collector %q: resolve %s: %w", hostport, host, err)
	}
	if len(as) == 0 {
		return netip.AddrPort{}, fmt.Errorf("hep collector %q: %s: %w", hostport, host, ErrNoAddress)
	}
	return netip.AddrPortFrom(as[0].Unmap(), uint16(pn)), nil
}
