package sipfront

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/umedge/umedge/core/sdk/router"
)

// maxSendQueue bounds the bytes waiting for one stream connection's writer:
// a peer that reads keeps it near empty (the kernel's send buffer takes the
// rest), one that stops reading fills it and is dropped. It is large enough
// for a trunk that takes thousands of calls a second on one connection to
// pause for a scheduling hiccup (1 MiB is ~150 ms of 302s at 15,000 calls/s);
// a peer that stops for good meets the write timeout. With the batch in
// flight that is at most twice this much memory per connection.
const maxSendQueue = 1 << 20

// maxQueuedTotal bounds the bytes queued for all stream connections
// together, so that many peers that stop reading cannot add up to more: a
// connection whose answer would pass it is dropped.
const maxQueuedTotal = 64 << 20

// keepSpare is the largest batch buffer a connection keeps for reuse.
const keepSpare = 16 << 10

// Why a stream connection was dropped by its writer; the values are metric
// labels.
const (
	dropQueueFull    = "send-queue-full"
	dropWriteTimeout = "write-timeout"
	dropTCPTimeout   = "tcp-timeout" // the kernel gave up: TCP_USER_TIMEOUT or keep-alive
)

// streamConn is one TCP or TLS connection's sending side: a bounded queue
// drained by one writer goroutine with a deadline on every write, so that
// neither the reader nor a goroutine answering later ever waits for the
// peer (RFC 3261 §18.2.2 answers on the connection the request came on).
type streamConn struct {
	c            net.Conn             // written to: the TCP connection or the TLS one over it
	raw          net.Conn             // closed: the TCP connection under c
	writeTimeout func() time.Duration // read at every write, so a reload applies to open connections
	onDrop       func(reason string)  // called once when the connection is dropped for the peer's sake
	budget       *atomic.Int64        // bytes queued on all connections; nil = unbounded
	budgetMax    int64                // what budget may reach: maxQueuedTotal
	tap          *tap                 // captures what is queued; nil = none
	tp           router.Transport     // for the capture: the transport,
	local        netip.AddrPort       // our end
	remote       netip.AddrPort       // and the peer's

	mu       sync.Mutex
	queue    []byte        // bytes not yet handed to the writer
	inflight int           // bytes of the batch the writer is writing
	drained  chan struct{} // a batch was written (cap 1)
	spare    []byte        // the writer's last batch, for the queue to reuse; never the batch being written
	closing  bool          // no more enqueues; the writer flushes and closes
	closed   bool          // the connection is closed
	wake     chan struct{}
	done     chan struct{} // closed when the writer has returned
}

// newStreamConn returns the sending side of c, which runs over raw (the
// same connection unless c is TLS).
func newStreamConn(c, raw net.Conn, writeTimeout func() time.Duration, onDrop func(string)) *streamConn {
	return &streamConn{c: c, raw: raw, writeTimeout: writeTimeout, onDrop: onDrop,
		wake: make(chan struct{}, 1), drained: make(chan struct{}, 1), done: make(chan struct{})}
}

// readPause is how much may wait for the peer (queued or being written)
// before its reader stops reading, until the writer is down to a quarter:
// a peer that reads slower than it sends (a trunk on an overloaded box)
// is slowed by TCP's own flow control instead of losing its connection
// when the queue overflows. A peer that stops reading still hits the write
// deadline, which drops it.
const readPause = maxSendQueue / 2

// waitWriter blocks while more than readPause bytes wait for the peer,
// until they are down to readPause/2; it reports false once the connection
// is closed.
func (sc *streamConn) waitWriter() bool {
	limit := readPause
	for {
		sc.mu.Lock()
		open, waiting := !sc.closing && !sc.closed, len(sc.queue)+sc.inflight
		sc.mu.Unlock()
		if !open {
			return false
		}
		if waiting <= limit {
			return true
		}
		limit = readPause / 2
		select {
		case <-sc.drained:
		case <-sc.done:
			return false
		}
	}
}

// enqueue queues b for the writer and returns at once. It reports false
// when the connection is closed or closing, or when b does not fit in the
// queue, in which case the connection is closed: a peer that lets its
// answers pile up is not waited for.
func (sc *streamConn) enqueue(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	sc.mu.Lock()
	if sc.closing || sc.closed {
		sc.mu.Unlock()
		return false
	}
	if len(sc.queue)+len(b) > maxSendQueue || !sc.reserve(len(b)) {
		sc.mu.Unlock()
		sc.drop(dropQueueFull)
		return false
	}
	sc.queue = append(sc.queue, b...)
	sc.mu.Unlock()
	sc.tap.capture(sc.tp, sc.local, sc.remote, b)
	select {
	case sc.wake <- struct{}{}:
	default: // the writer is already due to look
	}
	return true
}

// reserve takes n bytes of the shared budget, or reports false when they
// would pass budgetMax.
func (sc *streamConn) reserve(n int) bool {
	if sc.budget == nil {
		return true
	}
	if sc.budget.Add(int64(n)) > sc.budgetMax {
		sc.budget.Add(-int64(n))
		return false
	}
	return true
}

// release gives n bytes back to the shared budget.
func (sc *streamConn) release(n int) {
	if sc.budget != nil && n > 0 {
		sc.budget.Add(-int64(n))
	}
}

// reply implements replier: a no-op once the connection is closed.
func (sc *streamConn) reply(b []byte) { sc.enqueue(b) }

// writeLoop sends what is queued, batch by batch, until the connection
// closes, or finish was called and the queue is empty.
func (sc *streamConn) writeLoop() {
	defer close(sc.done)
	for range sc.wake {
		for {
			sc.mu.Lock()
			if sc.closed {
				sc.mu.Unlock()
				return
			}
			batch, closing := sc.queue, sc.closing
			if len(batch) == 0 {
				sc.mu.Unlock()
				if closing {
					sc.close()
					return
				}
				break // until the next wake-up
			}
			// The batch is the writer's until it is written; enqueue
			// appends to the other buffer meanwhile.
			sc.queue, sc.spare, sc.inflight = sc.spare[:0], nil, len(batch)
			sc.mu.Unlock()
			if d := sc.writeTimeout(); d > 0 {
				_ = sc.c.SetWriteDeadline(time.Now().Add(d))
			}
			_, err := sc.c.Write(batch)
			sc.release(len(batch))
			sc.mu.Lock()
			sc.inflight = 0
			sc.mu.Unlock()
			select {
			case sc.drained <- struct{}{}:
			default:
			}
			if err != nil {
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					sc.drop(dropWriteTimeout)
				case errors.Is(err, syscall.ETIMEDOUT):
					// The kernel gave up first (TCP_USER_TIMEOUT), and the
					// writer saw it before the reader: the reader then reads
					// a closed connection and would count nothing.
					sc.drop(dropTCPTimeout)
				default:
					sc.close()
				}
				return
			}
			if cap(batch) <= keepSpare { // a burst's buffer is not kept for the connection's lifetime
				sc.mu.Lock()
				sc.spare = batch[:0]
				sc.mu.Unlock()
			}
		}
	}
}

// start runs the writer. It must be called once, before finish.
func (sc *streamConn) start() {
	go sc.writeLoop()
}

// finish stops new enqueues, lets the writer flush what is queued (each
// write bounded by the write timeout), closes the connection and waits for
// the writer to return. The reader calls it when it is done.
func (sc *streamConn) finish() {
	sc.mu.Lock()
	sc.closing = true
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
	<-sc.done
}

// drop closes the connection for reason, counting it once.
func (sc *streamConn) drop(reason string) {
	if sc.close() && sc.onDrop != nil {
		sc.onDrop(reason)
	}
}

// close closes the connection and wakes the writer so that it returns. It
// reports whether this call closed it. It closes the TCP connection, not
// the TLS one over it: that would first send a close_notify alert, and
// wait up to 5 s for a peer that may be the one not reading.
func (sc *streamConn) close() bool {
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		return false
	}
	sc.closed = true
	sc.release(len(sc.queue))
	sc.queue = nil
	sc.mu.Unlock()
	_ = sc.raw.Close()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
	return true
}
