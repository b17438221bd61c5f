package b2bua

import (
	"time"

	"github.com/umedge/umedge/core/sdk/router"
)

// retrans is one transaction's timer: over UDP it retransmits a message
// (RFC 3261 §17: Timer A for an INVITE, doubling; Timers E and G for the
// rest, doubling up to T2), and on every transport it ends the
// transaction after 64×T1 (Timers B, F, H) with its timeout. Its methods
// run with the call's mutex held.
type retrans struct {
	t       *time.Timer
	stopped bool
	silent  bool // answered provisionally: no more retransmissions, the deadline stays
}

// transaction starts a retrans for a message just sent; resend sends it
// again, timeout (may be nil) runs when no answer came in time. Called
// with c.mu held; both callbacks run with it held.
func (c *call) transaction(tp router.Transport, invite bool, resend, timeout func()) *retrans {
	return c.transactionFor(tp, invite, 64*c.e.cfg.T1, resend, timeout)
}

// transactionFor is transaction with another deadline than 64×T1.
func (c *call) transactionFor(tp router.Transport, invite bool, within time.Duration, resend, timeout func()) *retrans {
	r := &retrans{}
	t1, t2 := c.e.cfg.T1, c.e.cfg.T2
	deadline := time.Now().Add(within)
	interval := t1
	first := min(t1, within)
	if tp != router.UDP {
		first = within // a reliable transport retransmits for us
	}
	r.t = time.AfterFunc(first, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if r.stopped {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			r.stopped, r.t = true, nil
			if timeout != nil {
				timeout()
			}
			return
		}
		if r.silent {
			r.t.Reset(left)
			return
		}
		resend()
		if interval *= 2; !invite {
			interval = min(interval, t2)
		}
		r.t.Reset(min(interval, left))
	})
	return r
}

// quiet stops the retransmissions but keeps the deadline: a provisional
// answer says the request arrived, not that a final one will; nil-safe.
func (r *retrans) quiet() {
	if r != nil {
		r.silent = true
	}
}

// stop ends the retransmissions; nil-safe. The timer goes with them, and
// with it the callbacks and the message they hold: an ended call keeps
// its stopped transactions for 64×T1, and each would pin three more
// objects for the collector to mark.
func (r *retrans) stop() {
	if r != nil && !r.stopped {
		r.stopped = true
		r.t.Stop()
		r.t = nil
	}
}
