package b2bua

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/umedge/umedge/core/internal/hdrrules"
	"github.com/umedge/umedge/core/internal/ratelimit"
	"github.com/umedge/umedge/core/sdk/router"
)

// Config tunes the engine. Zero values take the defaults named.
type Config struct {
	FQDN     string // our identity: host of the From we send on leg B
	MaxCalls int    // calls at once, all gateways; 0 = unlimited
	// CallsPerSecond bounds new calls, all gateways (R-SBC-8); 0 =
	// unlimited. A token bucket: one second's worth may come at once.
	CallsPerSecond float64
	MaxRedirects   int           // 3xx followed per call; 0 = DefaultMaxRedirects
	RetryAfter     time.Duration // of a 503; 0 = 30 s
	T1             time.Duration // RFC 3261 round-trip estimate; 0 = 500 ms
	T2             time.Duration // RFC 3261 retransmission cap; 0 = 4 s
	// RingTimeout ends a call the back end has not answered within it
	// after a provisional answer (RFC 3261 §16.6 Timer C); 0 = 3 min.
	RingTimeout time.Duration
	// FailoverTimeout is how long a back end may leave an INVITE without
	// any answer before the call moves to the next back end of the pool
	// (a back end that hangs); 0 = 4 s. Without another back end Timer B
	// (64×T1) applies.
	FailoverTimeout time.Duration
	// KeepAlive, when set, keeps the NAT binding of a caller over UDP open
	// for the length of its call (R-SBC-2): every KeepAliveInterval a CRLF
	// (KeepAliveCRLF) or an in-dialog OPTIONS (KeepAliveOptions), whose
	// failure (no answer, 481) ends the call on both legs.
	KeepAlive         KeepAlive
	KeepAliveInterval time.Duration
	// Peers are per-peer options by router gateway name (the caller's leg)
	// or pool name (the back end's).
	Peers map[string]Peer
	// Table is the routing table in force: where a transfer handled
	// locally may go (transfer.go); nil = nowhere.
	Table func() *router.Table
	// MarkerTTL is how long the caller may call a Contact that
	// RedirectRewrite wrote; 0 = DefaultMarkerTTL.
	MarkerTTL time.Duration
	// MaxEnded bounds the ended calls kept as tombstones (tomb.go) to
	// answer retransmissions; at it the oldest is forgotten early.
	// 0 = DefaultMaxEnded.
	MaxEnded int
}

// DefaultMaxEnded is Config.MaxEnded when left 0: what 6,000 calls/s
// leave in 64×T1, ~300 MiB of tombstones.
const DefaultMaxEnded = 200_000

// Peer are the options of one calling peer.
type Peer struct {
	// Early183 relays provisional answers with SDP to this peer as 183
	// Session Progress, a 180 as 180 without SDP followed by the 183: UCMA
	// (Exchange UM, Lync) peers lose the media of SDP in a 180 (R-WK-5,
	// R-SBC-9).
	Early183 bool
	// RedirectMode is what a back end's 3xx does to a call from this peer
	// (R-SBC-7); "" = RedirectLocal.
	RedirectMode RedirectMode
	// Rules rewrite the headers sent to and received from this peer
	// (R-SBC-10, rules.go); nil = none.
	Rules *hdrrules.Set
	// ReferMode is what a REFER from the back end does to a call from
	// this peer (R-SBC-7, R-ID-8, transfer.go), and for a pool what a
	// REFER from the caller does to a call to it (transfer_caller.go);
	// "" = ReferTransparent.
	ReferMode ReferMode
	// CallsPerSecond bounds the new calls from this gateway, or to this
	// pool (R-SBC-8); 0 = unlimited.
	CallsPerSecond float64
}

// KeepAlive is how calls' UDP callers are kept reachable.
type KeepAlive string

// Keep-alive modes.
const (
	KeepAliveOff     KeepAlive = ""
	KeepAliveCRLF    KeepAlive = "crlf"
	KeepAliveOptions KeepAlive = "options"
)

// DefaultMaxRedirects is how many 3xx one call follows when Config leaves
// it 0: the UM service's redirect to a worker is one.
const DefaultMaxRedirects = 5

func (c *Config) defaults() {
	if c.MaxRedirects <= 0 {
		c.MaxRedirects = DefaultMaxRedirects
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 30 * time.Second
	}
	if c.T1 <= 0 {
		c.T1 = 500 * time.Millisecond
	}
	if c.T2 <= 0 {
		c.T2 = 4 * time.Second
	}
	if c.RingTimeout <= 0 {
		c.RingTimeout = 3 * time.Minute
	}
	if c.FailoverTimeout <= 0 {
		c.FailoverTimeout = 4 * time.Second
	}
	if c.MarkerTTL <= 0 {
		c.MarkerTTL = DefaultMarkerTTL
	}
	if c.MaxEnded <= 0 {
		c.MaxEnded = DefaultMaxEnded
	}
}

// Sender queues one SIP message towards a peer; it never blocks.
type Sender interface{ Send(b []byte) }

// Inbound is leg A as the front received it.
type Inbound struct {
	Transport router.Transport
	Source    netip.AddrPort // where the INVITE came from
	Local     netip.AddrPort // the listener it came to: our address in leg A's Contact
	Reply     Sender         // answers to the caller's requests (RFC 3261 §18.2.2)
	// Requests carries our requests to the caller (BYE, re-INVITE): over
	// UDP to the address the INVITE came from, so that a caller behind NAT
	// gets them (R-SBC-2, RFC 3581); over a stream, on its connection.
	Requests Sender
}

// Transport sends leg B's messages. The SIP front implements it.
type Transport interface {
	// Send queues msg to dst over tp: from our UDP socket, or on an open
	// TCP/TLS connection to dst, or one it opens (verifying serverName's
	// certificate over TLS). It never blocks on the network.
	Send(tp router.Transport, dst netip.AddrPort, serverName string, msg []byte) error
	// Local is our address for tp towards dst: the sent-by of our Via and
	// the host of our Contact.
	Local(tp router.Transport, dst netip.Addr) (netip.AddrPort, error)
	// Resolve returns the addresses of host ("" error when it has none).
	Resolve(host string) (netip.Addr, error)
}

// Target is where the router sent a proxy call.
type Target struct {
	Gateway  string // the calling gateway
	DialPlan string
	Pool     string
	Backend  *router.Backend
	// Addr, when valid, is Backend's address, checked already (a marker's
	// target, redirect.go): Backend.Host is then only the name to call it
	// by, never looked up.
	Addr     netip.Addr
	Security router.Security // of the dial plan: SIPSecured and Secured call the back end over TLS
	// User is the Request-URI user for the back end, escaped, as a 302
	// Contact would carry it.
	User string
	// MaxGatewayCalls is the gateway's MaxConcurrentCalls; 0 = unlimited.
	MaxGatewayCalls int
	// Call is the call as the router saw it: its parsed Diversion and
	// History-Info entries, from which leg B's Diversion is written.
	Call *router.Call
	// Alternates are the pool's other healthy back ends, best first: the
	// call moves on to the next when its back end cannot be reached, does
	// not answer within Config.FailoverTimeout, or answers 408 or 5xx.
	Alternates []*router.Backend
}

// Side names a leg to the media engine.
type Side int

// The legs.
const (
	SideA Side = iota // the caller's
	SideB             // the back end's
)

// Media creates a call's media session; aLocal and bLocal are our
// addresses on each leg, which its media binds and announces.
type Media interface {
	NewSession(callID string, t *Target, aLocal, bLocal netip.Addr, onTimeout func()) (MediaSession, error)
}

// MediaSession is one call's anchored media (core/internal/media).
type MediaSession interface {
	Offer(from Side, sdp []byte) ([]byte, error)
	Answer(from Side, sdp []byte) ([]byte, error)
	Reject(from Side)
	Close()
	Stats() any // JSON-encodable, for /calls and the CDR
}

// A MediaSession that is also a Settler is told when its call is
// confirmed (the caller's ACK): it may forget then what only a repeated
// answer to the call's first offer reads (media.Session.Settle), which
// every active call would keep otherwise.
type Settler interface{ Settle() }

// Errors a Media returns (wrapped with detail).
var (
	ErrNoMediaPorts = errors.New("no media ports free")         // → 503 + Retry-After
	ErrSDP          = errors.New("session description refused") // → 488 with a Warning
)

// Engine runs the proxy calls.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	tp    Transport
	media Media
	cdr   *CDRWriter
	// markers signs the Contacts of rewritten 3xx (redirect.go).
	markers markerKey

	mu        sync.RWMutex     // read-locked per SIP message (Has, Handle), write-locked per call
	byA       map[string]*call // by leg A's Call-ID
	byB       map[string]*call // by leg B's Call-ID
	active    int              // calls holding an admission slot
	perGW     map[string]int
	perBE     map[string]int     // by pool/backend
	moreB     map[*call][]string // leg-B Call-IDs of transfers' new legs, by call
	closed    bool
	callsDone sync.WaitGroup

	ended endedQueue // ended calls, until forget or their tombstone
	tombs tombs      // ended calls settled, until forgotten (tomb.go); under mu

	rate     *ratelimit.Bucket            // all calls; nil = unlimited
	peerRate map[string]*ratelimit.Bucket // by gateway or pool name

	Metrics Counters
}

// Counters are the engine's totals since it started.
type Counters struct {
	Calls, Answered, Failed, Refused, Redirects atomic.Uint64
	RulesRefused                                atomic.Uint64 // header-rule results not applied: unsafe or over a bound
	RateLimited                                 atomic.Uint64 // of Refused: over a calls-per-second limit
}

// New returns an engine that sends through tp and anchors media with m;
// cdr may be nil (no records).
func New(cfg Config, tp Transport, m Media, cdr *CDRWriter, log *slog.Logger) *Engine {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{cfg: cfg, log: log, tp: tp, media: m, cdr: cdr,
		byA: map[string]*call{}, byB: map[string]*call{}, perGW: map[string]int{}, perBE: map[string]int{},
		peerRate: map[string]*ratelimit.Bucket{}}
	e.tombs.max = cfg.MaxEnded
	_, _ = rand.Read(e.markers[:]) // crypto/rand.Read never fails (Go 1.24)
	if cfg.CallsPerSecond > 0 {
		e.rate = ratelimit.New(cfg.CallsPerSecond)
	}
	for name, p := range cfg.Peers {
		if p.CallsPerSecond > 0 {
			e.peerRate[name] = ratelimit.New(p.CallsPerSecond)
		}
	}
	return e
}

// Invite takes a new call of a proxy pool: it answers the caller with 100
// Trying (or a rejection) and places leg B. req must have passed the
// front's checks (one Via at least, From and To tags as RFC 3261 asks).
func (e *Engine) Invite(req *sip.Request, in Inbound, t Target) {
	e.inviteRules(req, &t)
	c := newCall(e, req, e.withRules(e.cfg.Peers[t.Gateway].Rules, in), t)
	if st := e.admit(c); st != nil {
		if st.code == 0 {
			return // a retransmission that overtook its first copy's admission
		}
		e.Metrics.Refused.Add(1)
		c.a.respond(st.code, st.phrase, st.extra...)
		return
	}
	e.Metrics.Calls.Add(1)
	if _, err := netip.ParseAddr(t.Backend.Host); err == nil || t.Addr.IsValid() {
		c.start()
		return
	}
	go c.start() // a back end named by DNS: not on the front's reader
}

type status struct {
	code   int
	phrase string
	extra  []string
}

// admit takes an admission slot for c and registers it, or says why not.
// The rate limits come last: only a call that would be admitted takes a
// token.
func (e *Engine) admit(c *call) *status {
	ra := fmt.Sprintf("Retry-After: %d", max(int(e.cfg.RetryAfter/time.Second), 1))
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.byA[c.a.callID]
	var tb string
	tombed := false
	if old == nil {
		tb, tombed = e.tombBranch(c.a.callID, now)
	}
	if old != nil && old.a.branch == c.a.branch || tombed && tb == c.a.branch {
		return &status{}
	} else if old != nil || tombed {
		// The same Call-ID again with another transaction: a merged or
		// looped request (RFC 3261 §8.2.2.2).
		return &status{482, "Loop Detected", []string{e.warning("Call-ID of a call in progress")}}
	}
	gw, be := c.target.Gateway, c.beKey()
	unavailable := func(why string) *status {
		return &status{503, "Service Unavailable", []string{ra, e.warning(why)}}
	}
	switch {
	case e.closed:
		return unavailable("shutting down")
	case e.cfg.MaxCalls > 0 && e.active >= e.cfg.MaxCalls:
		return unavailable("call limit of the appliance reached")
	case c.target.MaxGatewayCalls > 0 && e.perGW[gw] >= c.target.MaxGatewayCalls:
		return unavailable("call limit of gateway " + gw + " reached")
	case c.target.Backend.MaxCallsAllowed > 0 && e.perBE[be] >= c.target.Backend.MaxCallsAllowed:
		return unavailable("back end " + c.target.Backend.Name + " is full")
	}
	if why := e.overRate(c.target, now); why != "" {
		e.Metrics.RateLimited.Add(1)
		return unavailable(why)
	}
	e.active++
	e.perGW[gw]++
	e.perBE[be]++
	c.keyA, c.keyB = c.a.callID, c.b.callID
	e.byA[c.keyA] = c
	e.byB[c.keyB] = c
	e.callsDone.Add(1)
	return nil
}

// overRate says which calls-per-second limit a new call to t is over, or
// "": the calling gateway's, the pool's, the appliance's (R-SBC-8).
func (e *Engine) overRate(t Target, now time.Time) string {
	for _, l := range []struct{ name, what string }{{t.Gateway, "gateway "}, {t.Pool, "pool "}} {
		if b := e.peerRate[l.name]; b != nil && !b.Allow(now) {
			return fmt.Sprintf("%s%s over %g calls/s", l.what, l.name, b.Rate())
		}
	}
	if e.rate != nil && !e.rate.Allow(now) {
		return fmt.Sprintf("appliance over %g calls/s", e.rate.Rate())
	}
	return ""
}

// moveBackend moves c's back-end admission count from one back end to
// another; false when the other is full.
func (e *Engine) moveBackend(c *call, from, to *router.Backend) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	kf, kt := c.target.Pool+"/"+from.Name, c.target.Pool+"/"+to.Name
	if to.MaxCallsAllowed > 0 && e.perBE[kt] >= to.MaxCallsAllowed {
		return false
	}
	if e.perBE[kf]--; e.perBE[kf] <= 0 {
		delete(e.perBE, kf)
	}
	e.perBE[kt]++
	return true
}

// Unreachable tells the engine that messages to dst over tp cannot be
// delivered (the connection could not be opened): calls waiting for that
// back end move to the next or fail at once, not at Timer B.
func (e *Engine) Unreachable(tp router.Transport, dst netip.AddrPort) {
	for _, c := range e.snapshot() {
		c.unreachable(tp, dst)
	}
}

// release gives c's admission slot back; its map entries stay until
// forget, so that late retransmissions are still absorbed.
func (e *Engine) release(c *call) {
	e.mu.Lock()
	e.active--
	if e.perGW[c.target.Gateway]--; e.perGW[c.target.Gateway] <= 0 {
		delete(e.perGW, c.target.Gateway)
	}
	if e.perBE[c.beKey()]--; e.perBE[c.beKey()] <= 0 {
		delete(e.perBE, c.beKey())
	}
	e.mu.Unlock()
	e.callsDone.Done()
}

// endedQueue holds the ended calls until they have settled (tomb.go) or
// their 64×T1 is over, in the order they are next looked at: every call
// waits as long, so the order they end in is the order they are due in,
// and one timer serves them all (a timer and a closure per call were two
// more objects each of the ~100,000 ended calls at 3,000 calls/s held for
// the collector to mark, and 100,000 entries in the runtime's timer heap).
// The same timer ends the tombstones.
type endedQueue struct {
	mu    sync.Mutex
	calls []endedCall // calls[head:] wait, oldest first
	head  int
	t     *time.Timer
	next  time.Time // when t fires; zero: not armed
}

// forgetBatch is the least time between two firings of the ended calls'
// timer: a call may stay that much longer than its 64×T1.
const forgetBatch = 10 * time.Millisecond

type endedCall struct {
	due  time.Time // 64×T1 after it ended: forgotten at the first look from then
	look time.Time // looked at then: made a tombstone if it has settled
	c    *call
}

// settleTime is how long after its end a call is first looked at for its
// tombstone, and then again until it has settled: T1. By then the last
// exchange has been answered in the usual case (the BYE's 200), and a
// lost message's first retransmission answered by the call itself; at
// 4,500 calls/s it keeps ~2,250 ended calls whole out of ~144,000.
func (e *Engine) settleTime() time.Duration { return e.cfg.T1 }

// forgetLater forgets c once 64×T1 has passed, or makes it a tombstone
// once it has settled.
func (e *Engine) forgetLater(c *call) {
	q := &e.ended
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	due := now.Add(64 * e.cfg.T1)
	look := earlier(now.Add(e.settleTime()), due)
	q.calls = append(q.calls, endedCall{due, look, c})
	e.armLocked(now, look)
}

// armLocked has the timer fire at at, unless it fires before; q.mu held.
func (e *Engine) armLocked(now, at time.Time) {
	q := &e.ended
	if !q.next.IsZero() && !q.next.After(at) {
		return
	}
	wait := max(at.Sub(now), forgetBatch)
	q.next = now.Add(wait)
	if q.t == nil {
		q.t = time.AfterFunc(wait, e.forgetDue)
	} else {
		q.t.Reset(wait)
	}
}

// forgetDue looks at the ended calls whose time has come — forgets those
// whose 64×T1 is over, makes tombstones of those settled, looks at the
// rest again a T1 later — ends the tombstones whose time is up, and arms
// the timer for the next.
func (e *Engine) forgetDue() {
	q := &e.ended
	now := time.Now()
	q.mu.Lock()
	q.next = time.Time{}
	var due []endedCall
	for q.head < len(q.calls) && !q.calls[q.head].look.After(now) {
		due = append(due, q.calls[q.head])
		q.calls[q.head] = endedCall{}
		q.head++
	}
	if q.head == len(q.calls) {
		q.calls, q.head = q.calls[:0], 0
	} else if q.head > len(q.calls)/2 { // the waiting half moves to the front
		n := copy(q.calls, q.calls[q.head:])
		clear(q.calls[n:])
		q.calls, q.head = q.calls[:n], 0
	}
	q.mu.Unlock()

	var again []endedCall
	var rec []byte
	for _, x := range due {
		if !x.due.After(now) {
			continue
		}
		var ok bool
		if rec, ok = e.bury(x, rec[:0]); !ok {
			// Looked at again a T1 later, forgotten then if its 64×T1
			// is over by then (up to T1 late): no look is earlier than
			// one set before, so the queue stays in order by appending.
			x.look = now.Add(e.settleTime())
			again = append(again, x)
		}
	}
	e.mu.Lock()
	for _, x := range due {
		if !x.due.After(now) {
			e.forgetLocked(x.c)
		}
	}
	nextTomb := e.tombs.expire(now)
	e.mu.Unlock()

	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, again...)
	if q.head < len(q.calls) {
		e.armLocked(now, q.calls[q.head].look)
	}
	if !nextTomb.IsZero() {
		e.armLocked(now, nextTomb)
	}
}

// bury replaces x's call by its tombstone if it has settled and is still
// the one its Call-IDs find, with rec as scratch (returned); false when
// the call stays.
func (e *Engine) bury(x endedCall, rec []byte) ([]byte, bool) {
	c := x.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.settled() {
		return rec, false
	}
	rec = c.tombstone(rec)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byA[c.keyA] != c || e.byB[c.keyB] != c {
		return rec, true // forgotten already (a new call took its Call-ID)
	}
	if len(e.moreB[c]) > 0 || !e.tombs.insert(rec, c.a.callID, c.b.callID, x.due) {
		return rec, false
	}
	e.forgetLocked(c)
	return rec, true
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// tombBranch is the INVITE branch of the tombstone of the call whose leg A
// has Call-ID id, and whether there is one at now; e.mu held.
func (e *Engine) tombBranch(id string, now time.Time) (string, bool) {
	rec, _ := e.tombs.lookup(id, now, nil)
	if rec == nil {
		return "", false
	}
	if t, ok := readTomb(rec); ok && t.aCallID == id {
		return t.aBranch, true
	}
	return "", false
}

func (e *Engine) forget(c *call) {
	e.mu.Lock()
	e.forgetLocked(c)
	e.mu.Unlock()
}

// forgetLocked drops c from the maps; e.mu held.
func (e *Engine) forgetLocked(c *call) {
	if e.byA[c.keyA] == c {
		delete(e.byA, c.keyA)
	}
	if e.byB[c.keyB] == c {
		delete(e.byB, c.keyB)
	}
	e.forgetMoreB(c)
}

// Has reports whether msg's Call-ID is one of the engine's calls: a map
// lookup, for the front to call on every message.
func (e *Engine) Has(msg sip.Message) bool {
	h := msg.CallID()
	if h == nil {
		return false
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(e.byA) == 0 && len(e.byB) == 0 && e.tombs.len() == 0 {
		return false
	}
	id := string(*h)
	return e.byA[id] != nil || e.byB[id] != nil || e.tombs.has(id)
}

// Handle takes a message of one of the engine's calls and reports true, or
// reports false for a message that belongs to none (the front handles it).
// src is where it came from; in is how to answer it (for leg A's
// messages).
func (e *Engine) Handle(msg sip.Message, in Inbound) bool {
	if !complete(msg) {
		return false // nothing the engine can match or answer: the front drops or refuses it
	}
	var id string
	if h := msg.CallID(); h != nil {
		id = string(*h)
	}
	if id == "" {
		return false
	}
	e.mu.RLock()
	ca, cb := e.byA[id], e.byB[id]
	var tomb []byte
	var n uint64
	if ca == nil && cb == nil {
		src := in.Source.Addr()
		tomb, n = e.tombs.lookup(id, time.Now(), func(rec []byte) bool { return tombFrom(rec, id, src) })
	}
	e.mu.RUnlock()
	if tomb != nil {
		return e.handleTomb(tomb, n, id, msg, in)
	}
	switch {
	case cb != nil && cb.fromB(in.Source):
		rs := cb.rulesOf(SideB)
		e.inbound(rs, msg)
		cb.handleB(msg, e.withRules(rs, in))
		return true
	case ca != nil && ca.fromA(in):
		rs := ca.rulesOf(SideA)
		e.inbound(rs, msg)
		in = e.withRules(rs, in)
		ca.relatch(msg, in)
		return ca.handleA(msg, in)
	}
	return false
}

// complete reports whether msg has what every step of the engine reads:
// Via, From, To, Call-ID and CSeq (the front checks requests; responses
// come as they are).
func complete(msg sip.Message) bool {
	type heads interface {
		Via() *sip.ViaHeader
		From() *sip.FromHeader
		To() *sip.ToHeader
		CallID() *sip.CallIDHeader
		CSeq() *sip.CSeqHeader
	}
	h, ok := msg.(heads)
	return ok && h.Via() != nil && h.From() != nil && h.To() != nil && h.CallID() != nil && h.CSeq() != nil
}

// Shutdown ends every call (BYE on both legs, CDR reason "shutdown") and
// waits until they are ended or ctx-free timeout passes.
func (e *Engine) Shutdown(timeout time.Duration) {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	calls := e.snapshot()
	for _, c := range calls {
		c.hangup("shutdown")
	}
	done := make(chan struct{})
	go func() { e.callsDone.Wait(); close(done) }()
	// A channel that stays closed once the time is up: both waits below
	// see it (a time.After channel delivers once, and the second wait then
	// ran on until the BYEs timed out, 64×T1).
	expired, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline := expired.Done()
	select {
	case <-done:
	case <-deadline:
		e.log.Warn("calls still ending at shutdown", "timeout", timeout)
	}
	// Let the BYEs and CANCELs be answered (or time out) while the front
	// can still carry them: a peer whose BYE is lost keeps its side up.
	for tick := time.NewTicker(20 * time.Millisecond); ; {
		if !slices.ContainsFunc(calls, (*call).byePending) {
			tick.Stop()
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			tick.Stop()
			e.log.Warn("BYEs unanswered at shutdown", "timeout", timeout)
			e.closeCDR()
			return
		}
	}
	e.closeCDR()
}

// closeCDR closes the record file, logging a failure.
func (e *Engine) closeCDR() {
	if e.cdr != nil {
		if err := e.cdr.Close(); err != nil {
			e.log.Error("closing the call detail records", "err", err)
		}
	}
}

// CallInfo is one active call as /calls shows it.
type CallInfo struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Gateway  string    `json:"gateway"`
	Pool     string    `json:"pool"`
	Backend  string    `json:"backend"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
	LegA     LegInfo   `json:"leg_a"`
	LegB     LegInfo   `json:"leg_b"`
	Media    any       `json:"media,omitempty"`
}

// LegInfo is one leg's signalling.
type LegInfo struct {
	Transport router.Transport `json:"transport"`
	Peer      string           `json:"peer"`
	CallID    string           `json:"call_id"`
}

// Calls lists the calls in progress, oldest first.
func (e *Engine) Calls() []CallInfo {
	calls := e.snapshot()
	out := make([]CallInfo, 0, len(calls))
	for _, c := range calls {
		if ci, ok := c.info(); ok {
			out = append(out, ci)
		}
	}
	slices.SortFunc(out, func(x, y CallInfo) int {
		if c := x.Started.Compare(y.Started); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return out
}

// snapshot returns the calls known now, ended ones included.
func (e *Engine) snapshot() []*call {
	e.mu.RLock()
	defer e.mu.RUnlock()
	calls := make([]*call, 0, len(e.byA))
	for _, c := range e.byA {
		calls = append(calls, c)
	}
	return calls
}

// Ended is the number of ended calls kept as tombstones and of those
// forgotten early at Config.MaxEnded.
func (e *Engine) Ended() (kept int, evicted uint64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.tombs.len(), e.tombs.evicted
}

// Active is the number of calls holding an admission slot.
func (e *Engine) Active() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.active
}

func (e *Engine) warning(text string) string {
	return "Warning: 399 " + e.cfg.FQDN + ` "` + warningText(text) + `"`
}
