package ratelimit

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		giveRate  float64
		giveAfter time.Duration // between the burst and the second try
		wantBurst int           // calls allowed at t0
		wantLater int           // calls allowed at t0+giveAfter
	}{
		{name: "one second of calls at once", giveRate: 5, giveAfter: 0, wantBurst: 5, wantLater: 0},
		{name: "refills at the rate", giveRate: 5, giveAfter: 400 * time.Millisecond, wantBurst: 5, wantLater: 2},
		{name: "never more than a second's worth", giveRate: 5, giveAfter: time.Hour, wantBurst: 5, wantLater: 5},
		{name: "a slow rate still lets one call through", giveRate: 0.5, giveAfter: time.Second, wantBurst: 1, wantLater: 0},
		{name: "a slow rate refills in its own time", giveRate: 0.5, giveAfter: 2 * time.Second, wantBurst: 1, wantLater: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.giveRate)
			count := func(now time.Time) int {
				n := 0
				for b.Allow(now) {
					n++
				}
				return n
			}
			if got := count(t0); got != tt.wantBurst {
				t.Errorf("burst: %d allowed, want %d", got, tt.wantBurst)
			}
			if got := count(t0.Add(tt.giveAfter)); got != tt.wantLater {
				t.Errorf("after %s: %d allowed, want %d", tt.giveAfter, got, tt.wantLater)
			}
		})
	}
}
