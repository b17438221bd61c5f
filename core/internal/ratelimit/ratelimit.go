// Package ratelimit is the core's one call-rate limiter: a token bucket
// holding at most one second of calls, shared by the Call Router's
// per-gateway rate and the SBC's calls-per-second admission (R-SBC-8).
package ratelimit

import (
	"sync"
	"time"
)

// Bucket admits at most Rate calls per second on average and a burst of
// one second's worth (at least one call). Safe for concurrent use.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

// New returns a full bucket for rate calls per second (> 0).
func New(rate float64) *Bucket {
	return &Bucket{rate: rate, tokens: max(rate, 1)}
}

// Rate is the bucket's calls per second.
func (b *Bucket) Rate() float64 { return b.rate }

// Allow takes a token at now and reports whether there was one.
func (b *Bucket) Allow(now time.Time) bool {
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
