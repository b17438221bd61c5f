package routing

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/umedge/umedge/core/sdk/router"
)

const shards = 16

type entry struct {
	decision *router.Decision
	err      error
	expires  time.Time
}

// cache is a sharded map of decisions. It is bounded crudely but safely:
// a shard that reaches its share of the limit is emptied.
type cache struct {
	shards   [shards]shard
	perShard atomic.Int64
}

type shard struct {
	mu sync.RWMutex
	m  map[string]entry
}

func (c *cache) resize(size int) {
	c.perShard.Store(int64(max(size/shards, 1)))
}

func (c *cache) shard(key string) *shard {
	return &c.shards[hash64(key)%shards]
}

func (c *cache) get(key string) (entry, bool) {
	s := c.shard(key)
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	return e, ok
}

func (c *cache) put(key string, e entry) {
	limit := int(c.perShard.Load())
	s := c.shard(key)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= limit {
		s.m = make(map[string]entry)
	}
	s.m[key] = e
	s.mu.Unlock()
}

func (c *cache) clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.m = nil
		s.mu.Unlock()
	}
}

// Len returns how many decisions are cached.
func (c *cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
