package media

import (
	"math"
	"testing"
)

func TestRecvStatsLossAcrossWrap(t *testing.T) {
	var r recvStats
	r.reset(1)
	seq := uint16(65530)
	for i := range 20 {
		if i == 3 || i == 9 { // two lost, one of them after the wrap
			seq++
			continue
		}
		r.update(seq, uint32(i)*160, int64(i)*20000, 8000)
		seq++
	}
	if got := r.lost(); got != 2 {
		t.Errorf("lost = %d, want 2", got)
	}
	r.update(seq-5, 0, 400000, 8000) // a late duplicate is not a credit
	if got := r.lost(); got != 1 {
		t.Errorf("after a late packet lost = %d, want 1 (RFC 3550 counts it as received)", got)
	}
}

func TestRecvStatsJitter(t *testing.T) {
	var steady, shaky recvStats
	steady.reset(1)
	shaky.reset(1)
	for i := range 2000 {
		ts := uint32(i) * 160 // 20 ms at 8 kHz
		steady.update(uint16(i), ts, int64(i)*20000, 8000)
		late := int64(0)
		if i%2 == 1 {
			late = 4000 // every other packet 4 ms late: |D| = 4 ms each time
		}
		shaky.update(uint16(i), ts, int64(i)*20000+late, 8000)
	}
	if j := steady.jitterMs(); j != 0 {
		t.Errorf("steady stream jitter = %.3f ms, want 0", j)
	}
	if j := shaky.jitterMs(); math.Abs(j-4) > 0.3 {
		t.Errorf("alternating 4 ms jitter = %.3f ms, want ≈ 4 (RFC 3550 A.8 converges to |D|)", j)
	}
}
