package sipfront

import (
	"net/netip"
	"sync"
	"time"
)

// Stream connection limits. One connection holds one file descriptor, a
// reader and a writer goroutine and up to two send queues, so a flood must
// be stopped at accept: per source, so one address cannot lock the
// gateways out, and across all stream listeners, so the process keeps the
// descriptors its admin API, plugins, UDP sockets and health probes need.

// DefaultMaxConnsPerSource is the per-source limit when Config leaves it 0:
// a gateway holds a few connections, an SBC pool a few dozen.
const DefaultMaxConnsPerSource = 64

// fdReserveMin is the fewest descriptors kept out of the stream
// connections' reach: they keep max(256, 10 %) of RLIMIT_NOFILE, at most
// half of it, for the admin API, plugins, UDP sockets and health probes.
const fdReserveMin = 256

// maxDerivedConns caps the derived limit when RLIMIT_NOFILE is unlimited
// or absurdly high.
const maxDerivedConns = 1 << 20

// connLimit is the global stream connection limit for an RLIMIT_NOFILE of
// nofile: configured when it is set (> 0) and fits, else what the limit
// leaves after the reserve. clamped reports that a configured value was
// cut down to fit.
func connLimit(nofile uint64, configured int) (limit int, clamped bool) {
	reserve := max(fdReserveMin, nofile/10)
	reserve = min(reserve, nofile/2)
	allowed := int(min(nofile-reserve, maxDerivedConns))
	switch {
	case configured <= 0:
		return allowed, false
	case configured > allowed:
		return allowed, true
	default:
		return configured, false
	}
}

// Why a connection was refused at accept; the values are metric labels.
const (
	refusedPerSource = "per-source"
	refusedGlobal    = "global"
	refusedBanned    = "banned" // the source is on the ban list (ban.go)
)

// connTable counts open stream connections per source and in total, across
// all stream listeners of a Server. Safe for concurrent use.
//
// Sources that are no configured peer may hold at most half of the total,
// so that a flood from many addresses cannot lock the gateways out.
type connTable struct {
	mu        sync.Mutex
	perSource map[netip.Addr]int
	total     int
	strangers int // connections from sources that are no configured peer
	maxSource int
	maxTotal  int
}

func newConnTable() *connTable {
	return &connTable{perSource: map[netip.Addr]int{}, maxSource: DefaultMaxConnsPerSource, maxTotal: maxDerivedConns}
}

// setLimits changes the limits; open connections over a lowered limit stay.
func (t *connTable) setLimits(perSource, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maxSource, t.maxTotal = perSource, total
}

// acquire counts a new connection from src, or returns why it must be
// refused and the limit it hit. Every successful acquire is paired with
// one release.
func (t *connTable) acquire(src netip.Addr, known bool) (refused string, limit int) {
	k := sourceKey(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.total >= t.maxTotal:
		return refusedGlobal, t.maxTotal
	case !known && t.strangers >= t.maxTotal/2:
		return refusedGlobal, t.maxTotal / 2
	case t.perSource[k] >= t.maxSource:
		return refusedPerSource, t.maxSource
	}
	t.perSource[k]++
	t.total++
	if !known {
		t.strangers++
	}
	return "", 0
}

// release undoes one acquire(src, known).
func (t *connTable) release(src netip.Addr, known bool) {
	k := sourceKey(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.perSource[k]--; t.perSource[k] <= 0 {
		delete(t.perSource, k)
	}
	t.total--
	if !known {
		t.strangers--
	}
}

// open returns the number of open connections.
func (t *connTable) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// sourceKey is what the per-source limit counts by: the IPv4 address, or
// the IPv6 /64, since one host is handed a whole /64 (RFC 4291 §2.5.1) and
// could otherwise open 64 connections from each of its 2^64 addresses.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// refusedLogInterval is how often a refused connection is logged at most,
// per reason; the metric counts every one.
const refusedLogInterval = 10 * time.Second

// logLimiter lets one log line through per interval and counts the rest,
// so a flood is logged without the log becoming the flood.
type logLimiter struct {
	mu         sync.Mutex
	interval   time.Duration
	next       time.Time
	suppressed int
}

// allow reports whether to log now and how many events were held back
// since the last line.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = now.Add(l.interval)
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
