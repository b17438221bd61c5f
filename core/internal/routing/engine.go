package routing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umedge/umedge/core/internal/health"
	"github.com/umedge/umedge/core/internal/ratelimit"
	"github.com/umedge/umedge/core/sdk/router"
)

// Config is the part of the core configuration the engine uses.
type Config struct {
	AskWorkers int           // goroutines that call the plugin's Route
	AskQueue   int           // calls waiting for a worker at most
	AskTimeout time.Duration // deadline of one ask, counted from when it is queued
	// Probes are per-peer OPTIONS keep-alive settings (R-SBC-6) by the
	// name of a gateway (its probe) or a pool (the probes of its back
	// ends); the interval when up is the table's Ping.
	Probes map[string]health.Tuning
}

// Defaults for zero Config fields.
const (
	DefaultAskWorkers = 16
	DefaultAskQueue   = 1024
	DefaultAskTimeout = 2 * time.Second
)

func (c Config) withDefaults() Config {
	if c.AskWorkers <= 0 {
		c.AskWorkers = DefaultAskWorkers
	}
	if c.AskQueue <= 0 {
		c.AskQueue = DefaultAskQueue
	}
	if c.AskTimeout <= 0 {
		c.AskTimeout = DefaultAskTimeout
	}
	return c
}

// Health is what the engine needs of the OPTIONS prober.
type Health interface {
	Set(targets []health.Target)
	Up(name string) bool
}

// Target is where a call goes: the decision and the back end picked from
// its pool.
type Target struct {
	Decision *router.Decision
	Backend  *router.Backend
	Action   router.Action   // of the decision's pool: redirect (302) or proxy (B2BUA)
	Security router.Security // of the decision's dial plan
	MaxCalls int             // the calling gateway's MaxConcurrentCalls; 0 = unlimited
	// Alternates are the pool's other healthy back ends, best first: a
	// proxy call that its back end fails moves on to them (R-SBC-7).
	Alternates []*router.Backend
}

// Done receives the answer to a call handed to Ask. It is called once,
// from an engine worker (or from Close, for calls still queued), never
// from the goroutine that called Ask.
type Done func(Target, error)

// Stats counts what the engine did since it started.
type Stats struct {
	Generation   uint64 // of the table in force; 0 before the first
	Decided      uint64 // calls answered from the table
	Asked        uint64 // calls handed to the plugin
	AskFailed    uint64 // of those, the ones the plugin did not answer in time or at all
	AskQueueFull uint64 // calls refused because the queue was full
	AskQueued    int    // calls waiting for a worker now
	BadTables    uint64 // tables the plugin published that Compile refused
}

// Engine routes calls. It is safe for concurrent use.
type Engine struct {
	router router.Router
	health Health
	live   func() bool // the router plugin answers its health probes; nil = assume so
	log    *slog.Logger
	now    func() time.Time
	cfg    Config

	tbl       atomic.Pointer[table]
	refreshMu sync.Mutex // one Refresh at a time, so tables are stored in order

	jobs    chan *job
	quit    chan struct{}
	workers sync.WaitGroup
	close   sync.Once

	decided, asked, askFailed, askFull, badTables atomic.Uint64
	refreshErr                                    atomic.Pointer[string] // why the last Refresh failed; nil after a good one
}

// Option adjusts an Engine; for tests and advanced wiring.
type Option func(*Engine)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithLiveness tells the engine whether the router plugin is live (it
// answers its health probes). While it is not, calls the table leaves to
// the plugin get 503 at once instead of waiting out their deadline.
func WithLiveness(live func() bool) Option { return func(e *Engine) { e.live = live } }

func (e *Engine) pluginLive() bool { return e.live == nil || e.live() }

// New returns an engine that gets its table from r and health from h, and
// starts its ask workers. It has no table until Refresh succeeds; until
// then every call gets ErrPluginUnavailable. The queue and worker counts
// are fixed for the engine's life; Close stops the workers.
func New(cfg Config, r router.Router, h Health, opts ...Option) *Engine {
	cfg = cfg.withDefaults()
	e := &Engine{
		router: r, health: h, log: slog.Default(), now: time.Now, cfg: cfg,
		jobs: make(chan *job, cfg.AskQueue), quit: make(chan struct{}),
	}
	for _, o := range opts {
		o(e)
	}
	for range cfg.AskWorkers {
		e.workers.Add(1)
		go e.work()
	}
	return e
}

// Close stops the workers. Calls still queued are answered with
// ErrPluginUnavailable.
func (e *Engine) Close() {
	e.close.Do(func() {
		close(e.quit)
		e.workers.Wait()
		for {
			select {
			case j := <-e.jobs:
				j.done(Target{Decision: j.partial}, fmt.Errorf("%w: shutting down", ErrPluginUnavailable))
			default:
				return
			}
		}
	})
}

// Refresh fetches the plugin's table, compiles it and puts it in force. A
// table that does not compile is refused and the last good one stays. Rate
// buckets of gateways whose rate did not change carry over.
func (e *Engine) Refresh(ctx context.Context) (err error) {
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	defer func() {
		if err != nil {
			msg := err.Error()
			e.refreshErr.Store(&msg)
			e.log.Error("routing table not refreshed", "err", err)
		} else {
			e.refreshErr.Store(nil)
		}
	}()
	t, err := e.router.Table(ctx)
	if err != nil {
		return fmt.Errorf("fetch routing table: %w", err)
	}
	if old := e.tbl.Load(); old != nil && old.gen == t.Generation {
		return nil // the same content (Table's contract): nothing to compile
	}
	c, err := router.Compile(t)
	if err != nil {
		e.badTables.Add(1)
		if old := e.tbl.Load(); old != nil {
			return fmt.Errorf("routing table of generation %d refused, generation %d stays in force: %w", t.Generation, old.gen, err)
		}
		return fmt.Errorf("routing table refused: %w", err)
	}
	old := e.tbl.Load()
	nt := newTable(c, old, e.cfg.Probes)
	e.tbl.Store(nt)
	e.health.Set(nt.targets)
	if old == nil || old.gen != nt.gen {
		e.log.Info("routing table in force", "generation", nt.gen, "gateways", len(t.Gateways),
			"dial_plans", len(t.DialPlans), "pools", len(t.Pools))
	}
	return nil
}

// Table returns the table in force, or nil before the first Refresh. It
// must not be changed.
func (e *Engine) Table() *router.Table {
	if t := e.tbl.Load(); t != nil {
		return t.compiled.Table()
	}
	return nil
}

// KnownSource reports whether a is an address of a gateway of the table in
// force: the SIP front keeps room for those against strangers.
func (e *Engine) KnownSource(a netip.Addr) bool {
	t := e.tbl.Load()
	return t != nil && t.compiled.HasAddress(a)
}

// RefreshError says why the last Refresh failed, or "" when it did not: the
// table in force is then older than the plugin's configuration.
func (e *Engine) RefreshError() string {
	if p := e.refreshErr.Load(); p != nil {
		return *p
	}
	return ""
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		Decided: e.decided.Load(), Asked: e.asked.Load(), AskFailed: e.askFailed.Load(),
		AskQueueFull: e.askFull.Load(), AskQueued: len(e.jobs), BadTables: e.badTables.Load(),
	}
	if t := e.tbl.Load(); t != nil {
		s.Generation = t.gen
	}
	return s
}

// Route decides where a call goes, from the table, at once. Its error is
// a *router.Rejection, or wraps ErrNoBackend, ErrRateLimited,
// ErrPluginUnavailable or ErrBadDecision — or, for a call the table leaves
// to the plugin, is ErrAskPlugin: the caller then hands the call to Ask
// with the returned Target (its gateway has passed the rate check). The
// Target's Decision is set whenever the gateway is known, even with an
// error (for events: gateway and dial plan).
func (e *Engine) Route(call *router.Call) (Target, error) {
	t := e.tbl.Load()
	if t == nil {
		return Target{}, fmt.Errorf("%w: no routing table yet", ErrPluginUnavailable)
	}
	d, err := t.compiled.Decide(call)
	if err != nil && !errors.Is(err, router.ErrAskPlugin) {
		e.decided.Add(1)
		return Target{Decision: decisionOf(err)}, err
	}
	if !t.allow(d.Gateway, e.now()) {
		return Target{Decision: d}, t.rateError(d.Gateway)
	}
	if err != nil { // the table leaves it to the plugin
		if !e.pluginLive() {
			e.askFailed.Add(1)
			return Target{Decision: d}, fmt.Errorf("%w: the router plugin is not live", ErrPluginUnavailable)
		}
		return Target{Decision: d}, router.ErrAskPlugin
	}
	e.decided.Add(1)
	return e.target(t, call, d)
}

// Ask queues a call that Route left to the plugin, with the Target Route
// returned; done then gets the answer from a worker. When the queue is
// full it returns an error wrapping ErrOverloaded and done is not called.
func (e *Engine) Ask(call *router.Call, tg Target, done Done) error {
	j := &job{call: call, partial: tg.Decision, table: e.tbl.Load(), done: done, deadline: e.now().Add(e.cfg.AskTimeout)}
	select {
	case e.jobs <- j:
		e.asked.Add(1)
		return nil
	default:
		e.askFull.Add(1)
		return fmt.Errorf("%w: %d calls already wait for the router plugin", ErrOverloaded, e.cfg.AskQueue)
	}
}

// decisionOf returns the gateway and dial plan a rejection names, for events.
func decisionOf(err error) *router.Decision {
	var rej *router.Rejection
	if errors.As(err, &rej) && rej.Gateway != "" {
		return &router.Decision{Gateway: rej.Gateway, DialPlan: rej.DialPlan}
	}
	return nil
}

// job is one call waiting for the plugin.
type job struct {
	call     *router.Call
	partial  *router.Decision // gateway and dial plan from the table
	table    *table           // in force when the call was decided
	done     Done
	deadline time.Time
}

// maxAsks bounds how often one call is asked when the table keeps
// changing under it; then it gets 503 rather than an answer for an old
// configuration.
const maxAsks = 2

func (e *Engine) work() {
	defer e.workers.Done()
	for {
		select {
		case <-e.quit:
			return
		case j := <-e.jobs:
			tg, err := e.ask(j)
			if err != nil && !router.IsRejection(err) {
				e.askFailed.Add(1)
			}
			j.done(tg, err)
		}
	}
}

// ask asks the plugin about one queued call and checks its answer against
// the table in force when it comes back. If the table changed since the
// call was decided — while it waited in the queue or while the plugin
// worked on it — the call is decided again on the new table, and asked
// again if that table still leaves it to the plugin: an answer computed
// for another configuration is never given.
func (e *Engine) ask(j *job) (Target, error) {
	for attempt := 1; ; attempt++ {
		if !e.now().Before(j.deadline) {
			return Target{Decision: j.partial}, fmt.Errorf("%w: no answer within %s", ErrPluginUnavailable, e.cfg.AskTimeout)
		}
		if !e.pluginLive() { // it went away while the call was queued
			return Target{Decision: j.partial}, fmt.Errorf("%w: the router plugin is not live", ErrPluginUnavailable)
		}
		ctx, cancel := context.WithDeadline(context.Background(), j.deadline)
		d, err := e.router.Route(ctx, j.call)
		cancel()
		if now := e.tbl.Load(); now != j.table {
			if attempt == maxAsks {
				return Target{Decision: j.partial}, fmt.Errorf("%w: the routing table changed twice while the plugin decided", ErrPluginUnavailable)
			}
			nd, nerr := now.compiled.Decide(j.call)
			switch {
			case errors.Is(nerr, router.ErrAskPlugin):
				j.partial, j.table = nd, now
				continue // ask again, under the new configuration
			case nerr != nil:
				return Target{Decision: decisionOf(nerr)}, nerr
			}
			return e.target(now, j.call, nd)
		}
		var rej *router.Rejection
		switch {
		case errors.As(err, &rej):
			r := *rej
			r.Gateway, r.DialPlan = j.partial.Gateway, j.partial.DialPlan
			return Target{Decision: j.partial}, &r
		case errors.Is(err, router.ErrContract):
			return Target{Decision: j.partial}, fmt.Errorf("%w: %w", ErrBadDecision, err)
		case err != nil:
			return Target{Decision: j.partial}, fmt.Errorf("%w: %w", ErrPluginUnavailable, err)
		case d == nil:
			return Target{Decision: j.partial}, fmt.Errorf("%w: no decision and no error", ErrBadDecision)
		}
		out := *d
		out.Gateway, out.DialPlan = j.partial.Gateway, j.partial.DialPlan
		return e.target(j.table, j.call, &out)
	}
}

// table is a compiled router.Table with what the core adds per call: rate
// buckets, back-end hash seeds and health target names.
type table struct {
	compiled *router.Compiled
	gen      uint64
	buckets  map[string]*ratelimit.Bucket // by gateway name; absent = unlimited
	rates    map[string]float64
	pools    map[string]*pool
	targets  []health.Target
}

type pool struct {
	action   router.Action
	backends []*router.Backend
	names    []string // health target names, parallel to backends
	seeds    []uint64 // rendezvous hash seeds, parallel to backends
}

func newTable(c *router.Compiled, old *table, probes map[string]health.Tuning) *table {
	t := c.Table()
	nt := &table{
		compiled: c, gen: t.Generation,
		buckets: map[string]*ratelimit.Bucket{}, rates: map[string]float64{}, pools: map[string]*pool{},
	}
	for _, g := range t.Gateways {
		if g.CallsPerSecond > 0 {
			nt.rates[g.Name] = g.CallsPerSecond
			if old != nil && old.buckets[g.Name] != nil && old.rates[g.Name] == g.CallsPerSecond {
				nt.buckets[g.Name] = old.buckets[g.Name] // the calls already counted stay counted
			} else {
				nt.buckets[g.Name] = ratelimit.New(g.CallsPerSecond)
			}
		}
		if g.Ping > 0 && g.PingTarget != "" {
			nt.targets = append(nt.targets, health.Target{
				Name: GatewayTarget(g.Name), Addr: g.PingTarget, Transport: string(g.PingTransport), Interval: g.Ping,
				Tuning: probes[g.Name],
			})
		}
	}
	for _, p := range t.Pools {
		np := &pool{action: p.Action}
		for i := range p.Backends {
			b := &p.Backends[i]
			name := BackendTarget(p.Name, b.Name)
			np.backends = append(np.backends, b)
			np.names = append(np.names, name)
			np.seeds = append(np.seeds, hash64(name))
			if tp, port := probeTransport(p.Action, b); b.Ping > 0 && port > 0 {
				nt.targets = append(nt.targets, health.Target{
					Name: name, Addr: net.JoinHostPort(b.Host, strconv.Itoa(port)), Transport: tp, Interval: b.Ping,
					Tuning: probes[p.Name],
				})
			}
		}
		nt.pools[p.Name] = np
	}
	return nt
}

// probeTransport is how a back end's OPTIONS go: over TCP when it has a
// TCP port, else TLS; a proxy pool's back end (any SIP peer) over UDP when
// that is all it speaks, the way the B2BUA calls it. Without a port it is
// not probed (port 0).
func probeTransport(action router.Action, b *router.Backend) (string, int) {
	switch {
	case b.TCPPort > 0:
		return health.TransportTCP, b.TCPPort
	case action == router.Proxy && b.UDPPort > 0:
		return health.TransportUDP, b.UDPPort
	case b.TLSPort > 0:
		return health.TransportTLS, b.TLSPort
	}
	return "", 0
}

func (t *table) allow(gateway string, now time.Time) bool {
	b := t.buckets[gateway]
	return b == nil || b.Allow(now)
}

func (t *table) rateError(gateway string) error {
	return fmt.Errorf("%w: gateway %s over %g calls/s", ErrRateLimited, gateway, t.rates[gateway])
}

// target picks the back end for a decision from table t.
func (e *Engine) target(t *table, call *router.Call, d *router.Decision) (Target, error) {
	p := t.pools[d.Pool]
	if p == nil {
		return Target{Decision: d}, fmt.Errorf("%w: pool %q is not in the routing table", ErrBadDecision, d.Pool)
	}
	if err := t.compiled.Secure(call, d); err != nil {
		return Target{Decision: d}, err // a plugin's answer, or a table one, into a secured plan
	}
	tg := Target{Decision: d, Action: p.action}
	if dp := t.compiled.DialPlan(d.DialPlan); dp != nil {
		tg.Security = dp.Security
	}
	if g := t.compiled.Gateway(call); g != nil {
		tg.MaxCalls = g.MaxConcurrentCalls
	}
	if tg.Backend = p.pick(call, tg.Action, e.health); tg.Backend == nil {
		return tg, fmt.Errorf("%w: pool %s", ErrNoBackend, d.Pool)
	}
	if tg.Action == router.Proxy {
		tg.Alternates = p.alternates(call, tg.Backend, e.health)
	}
	return tg, nil
}

// GatewayTarget names the health target of a gateway.
func GatewayTarget(gw string) string { return "gateway/" + gw }

// BackendTarget names the health target of a back end.
func BackendTarget(pool, backend string) string { return "backend/" + pool + "/" + backend }

// pick chooses a healthy back end that serves the call, by rendezvous
// hashing of the Call-ID, so that a retransmitted INVITE gets the same back
// end and calls spread evenly. A redirect needs the port of the caller's
// transport (the 302 keeps it, UDP moved to TCP); a proxy call leaves on
// whichever transport the back end has. Back ends without a health probe
// count as healthy.
func (p *pool) pick(call *router.Call, action router.Action, h Health) *router.Backend {
	key := hash64(call.CallID)
	tls := call.Transport == router.TLS
	var best *router.Backend
	var bestScore uint64
	for i, b := range p.backends {
		if action != router.Proxy && (tls && b.TLSPort == 0 || !tls && b.TCPPort == 0) {
			continue
		}
		if b.Ping > 0 && !h.Up(p.names[i]) {
			continue
		}
		if s := mix(key ^ p.seeds[i]); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
}

// alternates returns the healthy back ends of the pool other than first,
// in the order pick would choose them for call.
func (p *pool) alternates(call *router.Call, first *router.Backend, h Health) []*router.Backend {
	key := hash64(call.CallID)
	type scored struct {
		b *router.Backend
		s uint64
	}
	var out []scored
	for i, b := range p.backends {
		if b == first || b.Ping > 0 && !h.Up(p.names[i]) {
			continue
		}
		out = append(out, scored{b, mix(key ^ p.seeds[i])})
	}
	slices.SortFunc(out, func(x, y scored) int { return cmp.Compare(y.s, x.s) })
	bs := make([]*router.Backend, len(out))
	for i, o := range out {
		bs[i] = o.b
	}
	return bs
}

func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// mix is the splitmix64 finalizer: it turns a combined key into a score
// with good avalanche, which rendezvous hashing needs.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
