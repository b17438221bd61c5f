package media

import (
	"fmt"
	"sync"
)

// portPool hands out RTP/RTCP port pairs: RTP on an even port, RTCP on the
// next one. Pairs are reused in FIFO order so that late packets of an ended
// call are unlikely to reach the next call on the same ports.
type portPool struct {
	mu    sync.Mutex
	base  int      // first RTP port, even
	ring  []uint32 // free pair indexes, FIFO
	head  int      // index of the oldest free pair in ring
	free  int      // pairs in ring
	total int
}

func newPortPool(portMin, portMax int) (*portPool, error) {
	if portMin < 1 || portMin%2 != 0 || portMax > 65535 || portMax <= portMin {
		return nil, fmt.Errorf("%w: port range %d-%d: want an even start and an end above it, at most 65535", ErrConfig, portMin, portMax)
	}
	// A last even port without its RTCP partner is never handed out.
	total := (portMax - portMin + 1) / 2
	p := &portPool{base: portMin, ring: make([]uint32, total), free: total, total: total}
	for i := range p.ring {
		p.ring[i] = uint32(i)
	}
	return p, nil
}

// get takes the oldest free pair and returns its RTP port.
func (p *portPool) get() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free == 0 {
		return 0, false
	}
	i := p.ring[p.head]
	p.head = (p.head + 1) % p.total
	p.free--
	return p.base + 2*int(i), true
}

// put returns the pair whose RTP port is rtp.
func (p *portPool) put(rtp int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := (rtp - p.base) / 2
	if rtp%2 != 0 || i < 0 || i >= p.total || p.free == p.total {
		panic(fmt.Sprintf("media: port %d returned to a pool of %d-%d it did not come from", rtp, p.base, p.base+2*p.total-1))
	}
	p.ring[(p.head+p.free)%p.total] = uint32(i)
	p.free++
}

// counts returns the pairs in use and free.
func (p *portPool) counts() (inUse, free int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total - p.free, p.free
}
