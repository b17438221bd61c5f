package routing

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/umedge/umedge/core/internal/health"
	"github.com/umedge/umedge/core/sdk/router"
)

// Config is the part of the core configuration the engine uses.
type Config struct {
	CacheTTL  time.Duration // 0 disables the decision cache
	CacheSize int           // bound on cached decisions
}

// Health is what the engine needs of the OPTIONS prober.
type Health interface {
	Set(targets []health.Target)
	Up(name string) bool
}

// Target is where a call goes: the plugin's decision and the back end
// picked from its pool.
type Target struct {
	Decision *router.Decision
	Backend  *router.Backend
}

// Engine routes calls. It is safe for concurrent use.
type Engine struct {
	router router.Router
	health Health
	log    *slog.Logger
	now    func() time.Time

	cfg    atomic.Pointer[Config]
	topo   atomic.Pointer[topology]
	cache  cache
	calls  singleflight.Group
	hits   atomic.Uint64
	misses atomic.Uint64
}

// Option adjusts an Engine; for tests and advanced wiring.
type Option func(*Engine)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// New returns an engine that asks r for decisions and h for health. It has
// no topology until Refresh succeeds; until then every call gets
// ErrPluginUnavailable.
func New(cfg Config, r router.Router, h Health, opts ...Option) *Engine {
	e := &Engine{router: r, health: h, log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(e)
	}
	e.SetConfig(cfg)
	return e
}

// SetConfig applies new cache settings (config reload).
func (e *Engine) SetConfig(cfg Config) {
	e.cfg.Store(&cfg)
	e.cache.resize(cfg.CacheSize)
}

// Refresh fetches the plugin's topology, updates the health targets and,
// when the generation changed, drops the decision cache.
func (e *Engine) Refresh(ctx context.Context) error {
	t, err := e.router.Topology(ctx)
	if err != nil {
		return fmt.Errorf("fetch router topology: %w", err)
	}
	nt := newTopology(t)
	old := e.topo.Swap(nt)
	if old == nil || old.gen != nt.gen {
		e.cache.clear()
	}
	e.health.Set(nt.targets)
	return nil
}

// CacheStats returns the decision cache's hits, misses and size.
func (e *Engine) CacheStats() (hits, misses uint64, entries int) {
	return e.hits.Load(), e.misses.Load(), e.cache.Len()
}

// Topology returns the current topology, or nil before the first Refresh.
func (e *Engine) Topology() *router.Topology {
	if t := e.topo.Load(); t != nil {
		return t.src
	}
	return nil
}

// Route decides where a call goes. Its error is a *router.Rejection, or
// wraps ErrNoBackend, ErrRateLimited, ErrPluginUnavailable or
// ErrBadDecision. The Target's Decision is set when the plugin decided,
// even if the error is not nil (for events: gateway and dial plan).
func (e *Engine) Route(ctx context.Context, call *router.Call) (Target, error) {
	topo := e.topo.Load()
	if topo == nil {
		return Target{}, fmt.Errorf("%w: no topology yet", ErrPluginUnavailable)
	}
	dec, err := e.decide(ctx, call)
	if err != nil {
		return Target{Decision: dec}, err
	}
	if gw := topo.gateways[dec.Gateway]; gw != nil && gw.limiter != nil && !gw.limiter.allow(e.now()) {
		return Target{Decision: dec}, fmt.Errorf("%w: gateway %s over %g calls/s", ErrRateLimited, dec.Gateway, gw.src.CallsPerSecond)
	}
	p := topo.pools[dec.Pool]
	if p == nil {
		return Target{Decision: dec}, fmt.Errorf("%w: pool %q is not in the topology", ErrBadDecision, dec.Pool)
	}
	be := p.pick(call.CallID, e.health)
	if be == nil {
		return Target{Decision: dec}, fmt.Errorf("%w: pool %s", ErrNoBackend, dec.Pool)
	}
	return Target{Decision: dec, Backend: be}, nil
}

// decide returns the cached decision or asks the plugin. Rejections are
// cached like decisions; failures to decide are not.
func (e *Engine) decide(ctx context.Context, call *router.Call) (*router.Decision, error) {
	cfg := e.cfg.Load()
	key := call.Key()
	now := e.now()
	ent, found := e.cache.get(key)
	if found && now.Before(ent.expires) {
		e.hits.Add(1)
		return ent.decision, ent.err
	}
	e.misses.Add(1)
	v, err, _ := e.calls.Do(key, func() (any, error) {
		dec, err := e.router.Route(ctx, call)
		if err != nil && !isRejection(err) {
			return nil, err
		}
		ent := entry{decision: dec, err: err, expires: now.Add(cfg.CacheTTL)}
		if cfg.CacheTTL > 0 {
			e.cache.put(key, ent)
		}
		return ent, nil
	})
	if err != nil {
		if found { // the plugin cannot answer: a stale decision beats a refusal
			e.log.Debug("serving stale router decision", "key", key, "err", err)
			return ent.decision, ent.err
		}
		return nil, fmt.Errorf("%w: %w", ErrPluginUnavailable, err)
	}
	ent = v.(entry)
	return ent.decision, ent.err
}

func isRejection(err error) bool {
	_, ok := err.(*router.Rejection) //nolint:errorlint // the plugin returns it unwrapped by contract
	return ok
}

// topology is a router.Topology indexed for the per-call path.
type topology struct {
	src      *router.Topology
	gen      uint64
	gateways map[string]*gateway
	pools    map[string]*pool
	targets  []health.Target
}

type gateway struct {
	src     router.Gateway
	limiter *bucket
}

type pool struct {
	backends []*router.Backend
	names    []string // health target names, parallel to backends
	seeds    []uint64 // rendezvous hash seeds, parallel to backends
}

func newTopology(t *router.Topology) *topology {
	nt := &topology{src: t, gen: t.Generation, gateways: map[string]*gateway{}, pools: map[string]*pool{}}
	for _, g := range t.Gateways {
		gw := &gateway{src: g}
		if g.CallsPerSecond > 0 {
			gw.limiter = newBucket(g.CallsPerSecond)
		}
		nt.gateways[g.Name] = gw
		if g.Ping > 0 && g.PingTarget != "" {
			nt.targets = append(nt.targets, health.Target{
				Name: GatewayTarget(g.Name), Addr: g.PingTarget, Transport: string(g.PingTransport), Interval: g.Ping,
			})
		}
	}
	for _, p := range t.Pools {
		np := &pool{}
		for i := range p.Backends {
			b := &p.Backends[i]
			name := BackendTarget(p.Name, b.Name)
			np.backends = append(np.backends, b)
			np.names = append(np.names, name)
			np.seeds = append(np.seeds, hash64(name))
			if b.Ping > 0 {
				nt.targets = append(nt.targets, health.Target{
					Name: name, Addr: net.JoinHostPort(b.Host, strconv.Itoa(b.TCPPort)), Transport: "tcp", Interval: b.Ping,
				})
			}
		}
		nt.pools[p.Name] = np
	}
	return nt
}

// GatewayTarget names the health target of a gateway.
func GatewayTarget(gw string) string { return "gateway/" + gw }

// BackendTarget names the health target of a back end.
func BackendTarget(pool, backend string) string { return "backend/" + pool + "/" + backend }

// pick chooses a healthy back end by rendezvous hashing of the Call-ID, so
// that a retransmitted INVITE gets the same back end and calls spread
// evenly. Back ends without a health probe count as healthy.
func (p *pool) pick(callID string, h Health) *router.Backend {
	key := hash64(callID)
	var best *router.Backend
	var bestScore uint64
	for i, b := range p.backends {
		if b.Ping > 0 && !h.Up(p.names[i]) {
			continue
		}
		if s := mix(key ^ p.seeds[i]); best == nil || s > bestScore {
			best, bestScore = b, s
		}
	}
	return best
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

// bucket is a token bucket holding at most one second of calls.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket {
	return &bucket{rate: rate, tokens: rate}
}

func (b *bucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > max(b.rate, 1) {
			b.tokens = max(b.rate, 1)
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
