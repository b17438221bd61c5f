// Package health probes SIP peers and back ends with OPTIONS and keeps their
// reachability.
//
// Every configured Target gets its own goroutine that sends an OPTIONS
// request (RFC 3261 §11) every Interval, with a little jitter so that many
// targets do not fire together. Any final response counts as reachable,
// except 5xx: a UM back end over MaxCallsAllowed answers OPTIONS with 503
// (R-WK-3, R-ERR-3) and must stop receiving calls. A timeout or a transport
// error counts as a failure. After Config.FailAfter consecutive failures the
// target goes down; after Config.OKAfter consecutive successes it is up again
// (R-HLTH-1). A target may set its own thresholds and a slower (or faster)
// interval while it is down (Tuning: the per-peer keep-alive of R-SBC-6).
// Each transition is logged once and reported to the OnChange callback.
//
// Up is the hot-path query used by call routing; it is lock-free.
package health

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultFailAfter = 2
	DefaultOKAfter   = 1
)

// Transports a Target may use.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
	TransportTLS = "tls"
)

// Target is one SIP peer or back end to probe.
type Target struct {
	Name      string        // stable ID, e.g. "backend/local/um1" or "gateway/lab"
	Addr      string        // host:port; host is an IP address or a DNS name
	Transport string        // "udp", "tcp" or "tls"
	Interval  time.Duration // time between probes; must be > 0
	Tuning
}

// Tuning is a target's own probe settings; zero fields take the
// Prober's (Config) or the target's Interval.
type Tuning struct {
	IntervalDown time.Duration // time between probes while the target is down
	UpAfter      int           // consecutive successes that bring a down target up
	DownAfter    int           // consecutive failures that take an up target down
}

// Validate reports every problem with t that does not depend on the
// Prober's Config. Each problem wraps ErrInvalidTarget.
func (t Target) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidTarget, fmt.Sprintf(format, args...)))
	}
	if t.Name == "" {
		bad("empty name")
	}
	if host, port, err := net.SplitHostPort(t.Addr); err != nil {
		bad("address %q: %v", t.Addr, err)
	} else {
		if host == "" {
			bad("address %q: empty host", t.Addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad("address %q: port must be 1..65535", t.Addr)
		}
	}
	switch strings.ToLower(t.Transport) {
	case TransportUDP, TransportTCP, TransportTLS:
	default:
		bad("transport %q: want udp, tcp or tls", t.Transport)
	}
	if t.Interval <= 0 {
		bad("interval %s: must be > 0", t.Interval)
	}
	if t.IntervalDown < 0 {
		bad("interval when down %s: must not be negative", t.IntervalDown)
	}
	if t.UpAfter < 0 || t.DownAfter < 0 {
		bad("up after %d, down after %d: must not be negative", t.UpAfter, t.DownAfter)
	}
	return errors.Join(errs...)
}

// Config tunes a Prober. Zero numeric fields take the defaults above.
type Config struct {
	// FromHost is our SIP identity (FQDN), written into From and into the
	// Via sent-by of every probe. Required.
	FromHost string
	// Timeout bounds one probe, from connecting to the final response.
	// Default 2s.
	Timeout time.Duration
	// FailAfter is how many consecutive failed probes take an up target
	// down. Default 2.
	FailAfter int
	// OKAfter is how many consecutive successful probes bring a down target
	// up again. Default 1.
	OKAfter int
	// TLS is the client config for "tls" targets: our certificate for mutual
	// TLS and the RootCAs that verify peers. ServerName is filled per target
	// when empty. With TLS nil, "tls" targets are never probed and stay down
	// with ErrNoTLSConfig in their status.
	TLS *tls.Config
}

// TargetStatus is a snapshot of one target's state.
type TargetStatus struct {
	Name      string
	Addr      string
	Transport string
	Up        bool
	// LastCode is the status code of the last final response; 0 when the
	// last probe got none.
	LastCode int
	// LastRTT is the time from sending the last probe to its final
	// response; 0 when the last probe got none.
	LastRTT time.Duration
	// LastError describes why the last probe failed; empty when it
	// succeeded or no probe ran yet.
	LastError string
	// LastChange is when Up last changed, or when the target was
	// configured if it never changed.
	LastChange time.Time
	// Probes and Failures count probes sent and probes failed since the
	// target was configured.
	Probes, Failures uint64
	// ConsecutiveOK and ConsecutiveFailed are the current run of
	// successful or failed probes (one of them is 0).
	ConsecutiveOK, ConsecutiveFailed int
	// Interval is the time between probes in the target's current state.
	Interval time.Duration
}

// Option adjusts a Prober beyond its Config.
type Option func(*Prober)

// WithLogger sets the logger for transitions and for the SIP stack.
// Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(p *Prober) {
		if l != nil {
			p.log = l
		}
	}
}

// WithOnChange registers f to be called once per transition, after the new
// state is visible through Up and Status. f runs on the target's probe
// goroutine: it must return quickly and must not call Set or Close.
func WithOnChange(f func(name string, up bool, st TargetStatus)) Option {
	return func(p *Prober) { p.onChange = f }
}

// Prober probes a set of targets and answers whether each one is up.
// Its methods are safe for concurrent use.
type Prober struct {
	cfg      Config
	log      *slog.Logger
	onChange func(name string, up bool, st TargetStatus)

	// targets is replaced as a whole by Set; the map is never written after
	// it has been stored, so Up can read it without a lock.
	targets atomic.Pointer[map[string]*target]

	mu     sync.Mutex // serialises Set and Close
	closed bool
}

// New validates cfg, applies defaults and returns a Prober with no targets.
func New(cfg Config, opts ...Option) (*Prober, error) {
	var errs []error
	if cfg.FromHost == "" || strings.ContainsAny(cfg.FromHost, " \t\r\n<>;:@") {
		errs = append(errs, fmt.Errorf("%w: from host %q must be a host name", ErrInvalidConfig, cfg.FromHost))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: timeout %s must not be negative", ErrInvalidConfig, cfg.Timeout))
	}
	if cfg.FailAfter < 0 {
		errs = append(errs, fmt.Errorf("%w: fail after %d must not be negative", ErrInvalidConfig, cfg.FailAfter))
	}
	if cfg.OKAfter < 0 {
		errs = append(errs, fmt.Errorf("%w: ok after %d must not be negative", ErrInvalidConfig, cfg.OKAfter))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FailAfter == 0 {
		cfg.FailAfter = DefaultFailAfter
	}
	if cfg.OKAfter == 0 {
		cfg.OKAfter = DefaultOKAfter
	}

	p := &Prober{cfg: cfg, log: slog.Default()}
	for _, o := range opts {
		o(p)
	}
	empty := map[string]*target{}
	p.targets.Store(&empty)
	return p, nil
}

// Set replaces the target set, for example on reload. A target whose Name,
// Addr and Transport are unchanged keeps its state and counters (a changed
// Interval or Tuning applies from its next probe); a target that is new or whose
// address or transport changed starts fresh; targets no longer listed are
// stopped before Set returns. When a name appears twice, the first entry
// wins.
//
// A target that fails Validate, or a "tls" target without Config.TLS, is
// kept in Status as down with the reason in LastError and is never probed.
// Set after Close does nothing.
func (p *Prober) Set(targets []Target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}

	old := *p.targets.Load()
	next := make(map[string]*target, len(targets))
	var started []*target
	for _, tg := range targets {
		tg.Transport = strings.ToLower(tg.Transport)
		if _, dup := next[tg.Name]; dup {
			p.log.Warn("duplicate SIP health target ignored",
				"target", tg.Name, "transport", tg.Transport, "addr", tg.Addr)
			continue
		}
		err := p.validate(tg)
		if cur, ok := old[tg.Name]; ok && err == nil && cur.invalid == nil &&
			cur.spec.Addr == tg.Addr && cur.spec.Transport == tg.Transport {
			cur.retune(tg.Interval, tg.Tuning)
			next[tg.Name] = cur
			continue
		}
		t := newTarget(tg, err)
		next[tg.Name] = t
		if err != nil {
			p.log.Warn("SIP health target not probed",
				"target", tg.Name, "transport", tg.Transport, "addr", tg.Addr, "error", err)
			continue
		}
		started = append(started, t)
	}
	p.targets.Store(&next)

	for name, t := range old {
		if next[name] != t {
			if err := t.stop(); err != nil {
				// Set has no caller to return this to; the target is
				// gone either way.
				p.log.Warn("stop SIP health target", "target", name, "error", err)
			}
		}
	}
	for _, t := range started {
		t.start(p)
	}
}

// validate adds the Config-dependent checks to Target.Validate.
func (p *Prober) validate(t Target) error {
	err := t.Validate()
	if t.Transport == TransportTLS && p.cfg.TLS == nil {
		err = errors.Join(err, ErrNoTLSConfig)
	}
	return err
}

// Up reports whether the named target is currently reachable and accepting
// calls. It is lock-free and meant for the call-routing hot path.
//
// A newly configured target is optimistically up until its probes prove
// otherwise (FailAfter consecutive failures), so that adding a back end or
// reloading the configuration never causes 503s during the first interval.
// Unknown names and targets that cannot be probed (see Set) are down.
// After Close, Up keeps reporting the last known state.
func (p *Prober) Up(name string) bool {
	t, ok := (*p.targets.Load())[name]
	return ok && t.up.Load()
}

// Status returns a snapshot of every configured target, sorted by Name.
func (p *Prober) Status() []TargetStatus {
	m := *p.targets.Load()
	out := make([]TargetStatus, 0, len(m))
	for _, t := range m {
		out = append(out, t.status())
	}
	slices.SortFunc(out, func(a, b TargetStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close stops all probes and waits for them to end. Up and Status keep
// reporting the last known state. Close is idempotent.
func (p *Prober) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for name, t := range *p.targets.Load() {
		if err := t.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop health target %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// record applies one probe result to t and reports a transition, if any.
func (p *Prober) record(t *target, res result) {
	st, changed := t.record(res, p.cfg.FailAfter, p.cfg.OKAfter)
	if !changed {
		return
	}
	if st.Up {
		p.log.Info("SIP peer responds to OPTIONS again",
			"target", st.Name, "transport", st.Transport, "addr", st.Addr,
			"code", st.LastCode, "rtt", st.LastRTT)
	} else {
		attrs := []any{"target", st.Name, "transport", st.Transport, "addr", st.Addr}
		if st.LastCode != 0 {
			attrs = append(attrs, "code", st.LastCode)
		}
		attrs = append(attrs, "error", st.LastError, "failures", st.ConsecutiveFailed)
		p.log.Warn("SIP peer did not respond as expected to a SIP OPTIONS request", attrs...)
	}
	if p.onChange != nil {
		p.onChange(st.Name, st.Up, st)
	}
}
