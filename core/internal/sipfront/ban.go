package sipfront

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// The ban list (R-SBC-8): a source that is not a configured peer and has
// more than BanThreshold requests refused within banWindow (a scanner
// trying extensions, a flood of INVITEs to numbers that do not exist) is
// banned for BanTime: its datagrams are dropped before they are parsed and
// its connections refused at accept, so that it costs a lookup, not a
// parse and an answer. Configured peers are never banned — a spoofed flood
// from a gateway's address must not lock the gateway out; their load is
// bounded by their calls-per-second limit in the routing table.
//
// The table is fixed: banSlots entries in banShards shards, an entry per
// source address (an IPv6 source by its /64, as the connection limits
// count it), placed by a keyed hash so that no source can aim at another's
// entry. A new source takes a slot whose entry is neither banned nor
// counting in the current window; when none is free it is not tracked,
// so memory stays bounded whatever a flood sends.

// banWindow is the period over which refusals are counted.
const banWindow = 10 * time.Second

const (
	banShards = 64
	banSlots  = 16384
	banWays   = 4 // slots a source may use: its hash and the next three
)

type banEntry struct {
	src         netip.Addr
	window      int64 // start of the counting window, unix nanoseconds
	count       int
	bannedUntil int64
}

type banShard struct {
	mu    sync.Mutex
	slots [banSlots / banShards]banEntry
}

type banList struct {
	seed      maphash.Seed
	threshold int           // refusals within banWindow that ban; 0 = off
	banTime   time.Duration // how long a ban lasts
	shards    [banShards]banShard
}

func newBanList() *banList { return &banList{seed: maphash.MakeSeed()} }

func (b *banList) set(threshold int, banTime time.Duration) {
	for i := range b.shards {
		b.shards[i].mu.Lock()
	}
	b.threshold, b.banTime = threshold, banTime
	for i := range b.shards {
		b.shards[i].mu.Unlock()
	}
}

func (b *banList) locate(src netip.Addr) (*banShard, uint64) {
	k := sourceKey(src)
	h := maphash.Comparable(b.seed, k)
	return &b.shards[h%banShards], h / banShards
}

// banned reports whether src is banned at now.
func (b *banList) banned(src netip.Addr, now time.Time) bool {
	k := sourceKey(src)
	sh, h := b.locate(src)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for w := range uint64(banWays) {
		e := &sh.slots[(h+w)%uint64(len(sh.slots))]
		if e.src == k {
			return e.bannedUntil > now.UnixNano()
		}
	}
	return false
}

// refused counts one refused request of src and reports whether that
// banned it just now.
func (b *banList) refused(src netip.Addr, now time.Time) (bannedNow bool) {
	k := sourceKey(src)
	sh, h := b.locate(src)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b.threshold <= 0 {
		return false
	}
	t := now.UnixNano()
	var e, free *banEntry
	for w := range uint64(banWays) {
		s := &sh.slots[(h+w)%uint64(len(sh.slots))]
		if s.src == k {
			e = s
			break
		}
		if free == nil && s.bannedUntil <= t && t-s.window > int64(banWindow) {
			free = s
		}
	}
	if e == nil {
		if free == nil {
			return false // the neighbourhood is busy: not tracked
		}
		e = free
		*e = banEntry{src: k, window: t}
	}
	if e.bannedUntil > t {
		return false
	}
	if t-e.window > int64(banWindow) {
		e.window, e.count = t, 0
	}
	e.count++
	if e.count > b.threshold {
		e.bannedUntil, e.count = t+int64(b.banTime), 0
		return true
	}
	return false
}
