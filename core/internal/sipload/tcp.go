package sipload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tcpReadBuffer is each connection's receive buffer; a message larger
// than it ends the connection.
const tcpReadBuffer = 1 << 20

// tcpWire is Config.Conns TCP connections; call i goes over connection
// i%Conns, its ACK back over the same one.
type tcpWire struct {
	e     *engine
	conns []*tcpConn
	locs  []*local
}

type tcpConn struct {
	c      *net.TCPConn
	loc    *local
	out    []byte      // the INVITEs due, written at the end of the tick
	taken  []byte      // the ACKs taken from acks for that write
	vec    net.Buffers // taken and out, for one writev
	broken atomic.Bool

	// The receive loop queues its ACKs here and never writes: a server
	// that stops reading while its answers pile up (it drops a peer whose
	// queue is full) must not stop the loop from reading.
	mu       sync.Mutex
	acks     []byte
	acksDone int // calls whose ACKs are in acks
}

func dialTCP(ctx context.Context, e *engine, token string) (*tcpWire, error) {
	w := &tcpWire{e: e}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(e.cfg.LocalIP)}, Timeout: 5 * time.Second}
	for range e.cfg.Conns {
		c, err := d.DialContext(ctx, "tcp", e.cfg.Target)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("sipload: connect to %s: %w", e.cfg.Target, err)
		}
		tc := c.(*net.TCPConn)
		la := tc.LocalAddr().(*net.TCPAddr)
		conn := &tcpConn{c: tc, loc: newLocal(la.AddrPort().Addr().String(), la.Port, "TCP", e.cfg.Target, token)}
		w.conns = append(w.conns, conn)
		w.locs = append(w.locs, conn.loc)
	}
	return w, nil
}

func (w *tcpWire) locals() []*local { return w.locs }

// send queues each connection's share of calls for flush.
func (w *tcpWire) send(calls []int32, now int64) {
	for k, c := range calls {
		tc := w.conns[int(c)%len(w.conns)]
		if tc.broken.Load() {
			w.e.fail(calls[k:k+1], failConnection, now)
			continue
		}
		tc.out = append(tc.out, w.e.invite(c)...)
	}
}

func (w *tcpWire) poll() {}

// flush writes each connection's queued ACKs and INVITEs with one write.
// A write that fails or stalls beyond Timeout breaks the connection: its
// calls in flight then end by Timer B, and later ones fail at once.
func (w *tcpWire) flush() {
	for _, tc := range w.conns {
		tc.mu.Lock()
		tc.acks, tc.taken = tc.taken[:0], tc.acks
		ended := tc.acksDone
		tc.acksDone = 0
		tc.mu.Unlock()
		if len(tc.taken)+len(tc.out) > 0 && !tc.broken.Load() {
			// The ACKs first: they answer what came before the INVITEs due now.
			tc.vec = append(tc.vec[:0], tc.taken, tc.out)
			_ = tc.c.SetWriteDeadline(time.Now().Add(w.e.cfg.Timeout))
			if _, err := tc.vec.WriteTo(tc.c); err != nil {
				w.e.sender.fail(fmt.Errorf("write to %s: %w", w.e.cfg.Target, err))
				tc.broken.Store(true)
				_ = tc.c.Close()
			}
		}
		tc.out = tc.out[:0]
		w.e.finished.Add(int64(ended))
	}
}

func (w *tcpWire) receive(wg *sync.WaitGroup) []*counters {
	var cnts []*counters
	for _, tc := range w.conns {
		cnt := &counters{}
		cnts = append(cnts, cnt)
		wg.Go(func() { w.receiveLoop(tc, cnt) })
	}
	return cnts
}

// receiveLoop frames the messages of one connection, checks each, and
// queues the ACKs of each read for the sender's flush.
func (w *tcpWire) receiveLoop(tc *tcpConn, cnt *counters) {
	f := newFramer()
	ack := make([]byte, 0, 64<<10)
	var r response
	for {
		if err := f.read(tc.c); err != nil {
			if !tc.broken.Load() {
				if errors.Is(err, errFraming) {
					cnt.unexpected++
				}
				w.breakConn(tc, cnt, fmt.Errorf("read from %s: %w", w.e.cfg.Target, err))
			}
			return
		}
		now := w.e.now()
		ack = ack[:0]
		for {
			ok, err := f.next(&r)
			if err != nil {
				cnt.unexpected++
				w.breakConn(tc, cnt, fmt.Errorf("from %s: %w", w.e.cfg.Target, err))
				return
			}
			if !ok {
				break
			}
			ack = w.e.handleParsed(&r, now, tc.loc, cnt, ack)
		}
		if len(ack) > 0 || cnt.ended > 0 {
			tc.mu.Lock()
			tc.acks = append(tc.acks, ack...)
			tc.acksDone += cnt.ended
			tc.mu.Unlock()
			cnt.ended = 0
		}
	}
}

// framer cuts a TCP stream into SIP messages by their Content-Length.
type framer struct {
	buf        []byte
	start, end int
}

func newFramer() *framer { return &framer{buf: make([]byte, tcpReadBuffer)} }

// read reads more of the stream from c; a message larger than the
// buffer is an errFraming.
func (f *framer) read(c net.Conn) error {
	if f.start > 0 && f.start == f.end {
		f.start, f.end = 0, 0
	} else if f.end == len(f.buf) {
		if f.start == 0 {
			return fmt.Errorf("%w: a message larger than %d bytes", errFraming, tcpReadBuffer)
		}
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	n, err := c.Read(f.buf[f.end:])
	f.end += n
	return err
}

// next parses the next whole message into r and reports whether there
// was one; a bad Content-Length is an errFraming.
func (f *framer) next(r *response) (bool, error) {
	// Keep-alive CRLFs (RFC 5626) between messages.
	for f.start < f.end && (f.buf[f.start] == '\r' || f.buf[f.start] == '\n') {
		f.start++
	}
	msg := f.buf[f.start:f.end]
	if len(msg) == 0 || !parseMessage(msg, r) {
		return false, nil
	}
	if r.contentLength < -1 {
		return false, fmt.Errorf("%w: bad Content-Length", errFraming)
	}
	size := r.headerLen + max(r.contentLength, 0)
	if size > len(msg) {
		return false, nil
	}
	f.start += size
	return true, nil
}

// breakConn counts a connection that broke while the run went on.
func (w *tcpWire) breakConn(tc *tcpConn, cnt *counters, err error) {
	if !tc.broken.Swap(true) {
		cnt.fail(err)
	}
	_ = tc.c.Close()
}

// close ends every connection; the receive loops then return.
func (w *tcpWire) close() {
	for _, tc := range w.conns {
		tc.broken.Store(true)
		_ = tc.c.Close()
	}
}
