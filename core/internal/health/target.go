package health

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// target is the state and probe loop of one configured Target.
type target struct {
	spec    Target // Transport lower-cased; Interval lives in interval
	invalid error  // non-nil: never probed, always down

	interval atomic.Int64  // time.Duration
	poke     chan struct{} // interval changed
	up       atomic.Bool   // written only with mu held

	mu    sync.Mutex
	st    TargetStatus // Up is kept in up
	fails int          // consecutive failures
	oks   int          // consecutive successes
	tune  Tuning

	// Owned by the probe goroutine.
	client *sipClient

	cancel   context.CancelFunc // nil until started
	done     chan struct{}      // closed when the probe goroutine ends
	closeErr error              // set before done is closed
}

// result is the outcome of one probe.
type result struct {
	code int           // final response status; 0 if none
	rtt  time.Duration // 0 if no response
	err  error         // nil = reachable
}

func newTarget(spec Target, invalid error) *target {
	t := &target{
		spec:    spec,
		invalid: invalid,
		poke:    make(chan struct{}, 1),
		st: TargetStatus{
			Name:       spec.Name,
			Addr:       spec.Addr,
			Transport:  spec.Transport,
			LastChange: time.Now(),
		},
	}
	t.interval.Store(int64(spec.Interval))
	t.tune = spec.Tuning
	if invalid != nil {
		t.st.LastError = invalid.Error()
	} else {
		t.up.Store(true) // optimistic start, see Prober.Up
	}
	return t
}

// retune applies a new interval and tuning from the next probe on.
func (t *target) retune(d time.Duration, tu Tuning) {
	t.mu.Lock()
	changed := t.tune != tu
	t.tune = tu
	t.mu.Unlock()
	if time.Duration(t.interval.Swap(int64(d))) == d && !changed {
		return
	}
	select {
	case t.poke <- struct{}{}:
	default:
	}
}

func (t *target) tuning() Tuning {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tune
}

// start launches the probe goroutine.
func (t *target) start(p *Prober) {
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.done = make(chan struct{})
	go t.run(ctx, p)
}

// stop ends the probe goroutine, if any, and waits for it, including the
// release of its SIP client.
func (t *target) stop() error {
	if t.cancel == nil {
		return nil
	}
	t.cancel()
	<-t.done
	return t.closeErr
}

func (t *target) run(ctx context.Context, p *Prober) {
	defer close(t.done)
	defer func() { t.closeErr = t.closeClient() }()

	timer := time.NewTimer(firstDelay(t.period()))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.poke:
			timer.Reset(jitter(t.period()))
		case <-timer.C:
			start := time.Now()
			res := t.probe(ctx, p)
			if ctx.Err() != nil {
				return // stopped mid-probe; the result means nothing
			}
			p.record(t, res)
			timer.Reset(max(0, jitter(t.period())-time.Since(start)))
		}
	}
}

// period is the time between probes: the target's interval, or its
// interval when down while it is down.
func (t *target) period() time.Duration {
	if !t.up.Load() {
		if d := t.tuning().IntervalDown; d > 0 {
			return d
		}
	}
	return time.Duration(t.interval.Load())
}

// record applies res and returns the new status and whether Up changed.
func (t *target) record(res result, failAfter, okAfter int) (TargetStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.tune.DownAfter > 0 {
		failAfter = t.tune.DownAfter
	}
	if t.tune.UpAfter > 0 {
		okAfter = t.tune.UpAfter
	}
	t.st.Probes++
	t.st.LastCode = res.code
	t.st.LastRTT = res.rtt
	t.st.LastError = ""
	if res.err != nil {
		t.st.LastError = res.err.Error()
		t.st.Failures++
		t.fails++
		t.oks = 0
	} else {
		t.oks++
		t.fails = 0
	}

	up := t.up.Load()
	changed := false
	switch {
	case up && t.fails >= failAfter:
		up, changed = false, true
	case !up && t.oks >= okAfter:
		up, changed = true, true
	}
	if changed {
		t.up.Store(up)
		t.st.LastChange = time.Now()
	}
	return t.statusLocked(), changed
}

func (t *target) status() TargetStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.statusLocked()
}

func (t *target) statusLocked() TargetStatus {
	st := t.st
	st.Up = t.up.Load()
	st.ConsecutiveOK, st.ConsecutiveFailed = t.oks, t.fails
	st.Interval = time.Duration(t.interval.Load())
	if !st.Up && t.tune.IntervalDown > 0 {
		st.Interval = t.tune.IntervalDown
	}
	return st
}

// jitter spreads d by ±10% so that targets configured together drift apart.
func jitter(d time.Duration) time.Duration {
	span := int64(d) / 5
	if span <= 0 {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(rand.Int64N(span))
}

// firstDelay is a random start offset within the first fifth of d: soon
// enough that a dead target is found quickly, spread enough that a reload
// does not fire every probe at once.
func firstDelay(d time.Duration) time.Duration {
	span := int64(d) / 5
	if span <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(span))
}
