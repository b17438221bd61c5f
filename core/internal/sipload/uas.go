package sipload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// UASConfig says where a UAS listens.
type UASConfig struct {
	// Addr is the host:port the UAS listens on, over UDP and TCP.
	Addr string
	// T1 is RFC 3261's round-trip estimate: over UDP a 200 without its
	// ACK is sent again after T1, 2·T1, … at most T2 (4 s) apart, and a
	// call whose ACK has not come 64·T1 after its 200 fails. Default
	// DefaultT1.
	T1 time.Duration
	// Batch is the number of datagrams per recvmmsg or sendmmsg; default
	// DefaultBatch.
	Batch int
	// Tick is how often the UDP side drains its socket and runs the
	// timers; default DefaultTick.
	Tick time.Duration
}

// UASStats is what a UAS did so far.
type UASStats struct {
	// Calls counts the calls answered (first INVITEs); Current those
	// answered and not ended yet (no BYE, no give-up); Acked those whose
	// ACK came; Ended those ended by a BYE; Failed those whose ACK did not
	// come within 64·T1 of the 200 (RFC 3261 Timer H).
	Calls, Current, Acked, Ended, Failed int
	// NoAck counts the calls a BYE ended before their ACK came (the ACK
	// lost on the way, the BYE not): not failed, the caller went on.
	NoAck int
	// Retransmissions counts 200s sent again: by Timer G (UDP) and for a
	// retransmitted INVITE.
	Retransmissions int
	// Unexpected counts messages that belong to no call or no request
	// the UAS takes; TransportErrors failed socket reads and writes.
	Unexpected, TransportErrors int
	// FirstError is the first socket error, for the log.
	FirstError string `json:",omitempty"`
}

// The states of a UAS call.
const (
	uasAnswered uint8 = iota // 200 sent, no ACK yet
	uasUp                    // ACKed
	uasEnded                 // BYE answered, or given up
)

// uasCall is one call the UAS took, kept until its last retransmission
// could come (64·T1 after the 200 and 2·T2 more).
type uasCall struct {
	key   string // Call-ID
	state uint8
	udp   bool
	resp  []byte              // the 200, until the ACK
	addr  unix.RawSockaddrAny // UDP: where the INVITE came from
	alen  uint32
}

// UAS is a callee for full-call benchmarks (SIPp's uas_answer.xml): it
// answers every INVITE at once with 200 and G.711 SDP (no 100, no 180),
// resends the 200 over UDP until the ACK (RFC 3261 13.3.1.4), answers a
// BYE (and its retransmissions) with 200 and OPTIONS with 200, and
// counts. Over UDP it reads and writes in recvmmsg and sendmmsg batches
// on a tick, over TCP one goroutine per connection; it parses only the
// headers it copies into its answers.
type UAS struct {
	cfg        UASConfig
	host       string // as in a URI
	port       int
	sdp        []byte
	sock       *udpSocket
	ln         *net.TCPListener
	stop       chan struct{}
	udpDone    chan struct{}
	wg         sync.WaitGroup
	t1, giveUp int64
	start      time.Time

	mu     sync.Mutex
	calls  map[string]int32
	slots  []uasCall
	free   []int32
	g      backoff   // Timer G of the UDP calls' 200s
	h      []retrans // Timer H: when an unACKed call fails
	expire []retrans // when a call's slot is freed
	conns  map[*net.TCPConn]struct{}
	closed bool
	st     UASStats
	err    error
}

// ListenUAS starts a UAS on cfg.Addr.
func ListenUAS(cfg UASConfig) (*UAS, error) {
	timingDefaults(&cfg.T1, &cfg.Batch, &cfg.Tick)
	host, port, err := net.SplitHostPort(cfg.Addr)
	ip := net.ParseIP(host)
	p, _ := strconv.Atoi(port)
	if err != nil || ip == nil || p < 1 || p > 65535 || cfg.T1 < time.Millisecond || cfg.Batch < 1 || cfg.Batch > 1024 ||
		cfg.Tick < 100*time.Microsecond || cfg.Tick > cfg.T1/10 {
		return nil, fmt.Errorf("%w: uas addr %q (ip:port), t1 %v, batch %d (1..1024), tick %v (100µs..t1/10)", ErrInvalidConfig, cfg.Addr, cfg.T1, cfg.Batch, cfg.Tick)
	}
	loc := newLocal(host, p, "", "", "") // the URI and SDP forms of the address
	u := &UAS{cfg: cfg, host: loc.host, port: p, stop: make(chan struct{}),
		t1: int64(cfg.T1), giveUp: 64 * int64(cfg.T1), calls: map[string]int32{}, conns: map[*net.TCPConn]struct{}{},
		g: backoff{t1: int64(cfg.T1), ceiling: t2}}
	u.sdp = []byte("v=0\r\no=- 1 1 IN IP" + loc.ipVersion + " " + host + "\r\ns=-\r\nc=IN IP" + loc.ipVersion + " " + host +
		"\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
	if u.sock, err = listenUDP(netip.AddrPortFrom(netip.MustParseAddr(host), uint16(p))); err != nil {
		return nil, fmt.Errorf("sipload: uas: %w", err)
	}
	if u.ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: p}); err != nil {
		u.sock.close()
		return nil, fmt.Errorf("sipload: uas: %w", err)
	}
	u.start = time.Now()
	u.udpDone = make(chan struct{})
	go func() {
		defer close(u.udpDone)
		u.udpLoop()
	}()
	u.wg.Go(u.acceptLoop)
	return u, nil
}

// Addr is where the UAS listens.
func (u *UAS) Addr() string {
	return net.JoinHostPort(strings.Trim(u.host, "[]"), strconv.Itoa(u.port))
}

// Stats returns what the UAS did so far.
func (u *UAS) Stats() UASStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	if u.err != nil {
		st.FirstError = u.err.Error()
	}
	return st
}

// Close stops the UAS and returns what it did.
func (u *UAS) Close() UASStats {
	u.mu.Lock()
	first := !u.closed
	if first {
		u.closed = true
		close(u.stop)
		_ = u.ln.Close()
		for c := range u.conns {
			_ = c.Close()
		}
	}
	u.mu.Unlock()
	u.wg.Wait()
	<-u.udpDone
	if first {
		u.sock.close() // after the UDP loop: no recv or send on a closed fd
	}
	return u.Stats()
}

func (u *UAS) now() int64 { return int64(time.Since(u.start)) }

func (u *UAS) fail(err error) {
	u.st.TransportErrors++
	if u.err == nil {
		u.err = err
	}
}

// out is what one pass answers: the messages, and over UDP where each
// goes; over TCP (stream) all of them are in buf, in order.
type out struct {
	stream bool
	buf    []byte   // the answers rendered in this pass
	msgs   [][]byte // UDP: each answer, in buf or a call's stored 200
	to     []sockaddr
}

func (o *out) reset() {
	o.buf = o.buf[:0]
	clear(o.msgs)
	o.msgs, o.to = o.msgs[:0], o.to[:0]
}

// added records the answer appended to buf from start, for addr.
func (o *out) added(start int, addr *unix.RawSockaddrAny, alen uint32) {
	if !o.stream {
		o.msgs, o.to = append(o.msgs, o.buf[start:]), append(o.to, sockaddr{addr, alen})
	}
}

// resend records a stored message for addr.
func (o *out) resend(msg []byte, addr *unix.RawSockaddrAny, alen uint32) {
	if o.stream {
		o.buf = append(o.buf, msg...)
		return
	}
	o.msgs, o.to = append(o.msgs, msg), append(o.to, sockaddr{addr, alen})
}

// udpLoop drains the UDP socket and runs the timers on every tick.
func (u *UAS) udpLoop() {
	m := newMmsgs(u.cfg.Batch, false, true)
	sb := newSendBatch(u.cfg.Batch)
	var o out
	var r response
	tick := time.NewTicker(u.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-tick.C:
		}
		for {
			got, errno := u.sock.recv(&m)
			u.mu.Lock()
			if errno != 0 && errno != unix.EAGAIN {
				u.fail(fmt.Errorf("recvmmsg on %s: %w", u.cfg.Addr, errno))
			}
			o.reset()
			for k := range got {
				msg, whole := m.msg(k)
				if !whole || !parseMessage(msg, &r) {
					u.st.Unexpected++
					continue
				}
				// The answer goes where the request came from (RFC 3261
				// 18.2.2 with rport): the names array is rewritten by the
				// next recv, after this pass is sent.
				u.handle(&r, &o, true, &m.names[k], m.hs[k].hdr.Namelen)
			}
			if got < len(m.hs) {
				u.timers(&o)
			}
			u.mu.Unlock()
			if err := u.sock.send(&sb, o.msgs, o.to, sockaddr{}); err != nil {
				u.mu.Lock()
				u.fail(fmt.Errorf("sendmmsg on %s: %w", u.cfg.Addr, err))
				u.mu.Unlock()
			}
			// The stored 200s belong to their calls: drop the references.
			clear(o.msgs)
			if got < len(m.hs) {
				break
			}
		}
	}
}

// acceptLoop takes the TCP connections.
func (u *UAS) acceptLoop() {
	for {
		c, err := u.ln.AcceptTCP()
		if err != nil {
			return
		}
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			_ = c.Close()
			return
		}
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Go(func() { u.tcpLoop(c) })
	}
}

// tcpLoop answers the requests of one connection on it.
func (u *UAS) tcpLoop(c *net.TCPConn) {
	defer func() {
		u.mu.Lock()
		delete(u.conns, c)
		u.mu.Unlock()
		_ = c.Close()
	}()
	f := newFramer()
	o := out{stream: true}
	var r response
	for {
		err := f.read(c)
		o.reset()
		u.mu.Lock()
		for err == nil {
			var ok bool
			if ok, err = f.next(&r); !ok {
				break
			}
			u.handle(&r, &o, false, nil, 0)
		}
		if err != nil && !u.closed && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			u.st.Unexpected++
			u.fail(fmt.Errorf("tcp on %s: %w", u.cfg.Addr, err))
		}
		u.mu.Unlock()
		if len(o.buf) > 0 {
			if _, werr := c.Write(o.buf); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// handle answers one request into o (u.mu held); udp says where it came
// from.
func (u *UAS) handle(r *response, o *out, udp bool, addr *unix.RawSockaddrAny, alen uint32) {
	if r.method == nil || r.tooMany || len(r.callID) == 0 || len(r.vias()) == 0 {
		u.st.Unexpected++
		return
	}
	id, known := u.calls[string(r.callID)]
	var c *uasCall
	if known {
		c = &u.slots[id]
	}
	switch string(r.method) {
	case "INVITE":
		switch {
		case !known:
			u.answer(r, o, udp, addr, alen)
		case c.state == uasAnswered:
			// A retransmitted INVITE: the same 200 again.
			u.st.Retransmissions++
			o.resend(c.resp, addr, alen)
		default:
			u.st.Unexpected++
		}
	case "ACK":
		switch {
		case !known:
			u.st.Unexpected++
		case c.state == uasAnswered:
			c.state, c.resp = uasUp, nil
			u.st.Acked++
		}
	case "BYE":
		if !known {
			start := len(o.buf)
			o.buf = appendAnswer(o.buf, "481 Call/Transaction Does Not Exist", r, nil)
			o.added(start, addr, alen)
			u.st.Unexpected++
			return
		}
		if c.state != uasEnded {
			if c.state == uasAnswered {
				u.st.NoAck++
			}
			c.state, c.resp = uasEnded, nil
			u.st.Ended++
			u.st.Current--
		}
		// A retransmitted BYE gets the same 200 again.
		start := len(o.buf)
		o.buf = appendAnswer(o.buf, "200 OK", r, nil)
		o.added(start, addr, alen)
	case "OPTIONS":
		start := len(o.buf)
		o.buf = appendAnswer(o.buf, "200 OK", r, nil)
		o.added(start, addr, alen)
	default:
		u.st.Unexpected++
	}
}

// answer takes a new call: its 200 goes out now, and over UDP again until
// the ACK.
func (u *UAS) answer(r *response, o *out, udp bool, addr *unix.RawSockaddrAny, alen uint32) {
	if _, m, _ := bytes.Cut(r.cseq, []byte(" ")); string(bytes.TrimLeft(m, " \t")) != "INVITE" {
		u.st.Unexpected++
		return
	}
	var id int32
	if n := len(u.free); n > 0 {
		id, u.free = u.free[n-1], u.free[:n-1]
	} else {
		id = int32(len(u.slots))
		u.slots = append(u.slots, uasCall{})
	}
	u.st.Calls++
	u.st.Current++
	c := &u.slots[id]
	*c = uasCall{key: string(r.callID), udp: udp}
	u.calls[c.key] = id
	transport := "tcp"
	if udp {
		transport = "udp"
		c.addr, c.alen = *addr, alen
	}
	c.resp = appendAnswer(make([]byte, 0, 512+len(r.body)), "200 OK", r, func(b []byte) []byte {
		if !bytes.Contains(r.to, []byte(";tag=")) {
			b = append(b[:len(b)-2], ";tag=uas-"...)
			b = strconv.AppendInt(b, int64(u.st.Calls), 10)
			b = append(b, "\r\n"...)
		}
		for _, rr := range r.routes() {
			b = append(b, "Record-Route: "...)
			b = append(b, rr...)
			b = append(b, "\r\n"...)
		}
		b = append(b, "Contact: <sip:"...)
		b = append(b, u.host...)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(u.port), 10)
		b = append(b, ";transport="...)
		b = append(b, transport...)
		b = append(b, ">\r\nContent-Type: application/sdp\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(u.sdp)), 10)
		b = append(b, "\r\n\r\n"...)
		return append(b, u.sdp...)
	})
	// &c.addr stays valid when slots grows: the old array keeps the copy.
	o.resend(c.resp, &c.addr, c.alen)
	now := u.now()
	if udp {
		u.g.add(id, 1, now)
	}
	u.h = append(u.h, retrans{call: id, due: now + u.giveUp})
	u.expire = append(u.expire, retrans{call: id, due: now + u.giveUp + 2*t2})
}

// timers resends the 200s Timer G has due, gives up on calls without
// their ACK (Timer H), and frees the slots of calls long over (u.mu held).
func (u *UAS) timers(o *out) {
	now := u.now()
	u.g.fire(now, func(id int32) bool {
		c := &u.slots[id]
		if c.state != uasAnswered {
			return false
		}
		u.st.Retransmissions++
		o.resend(c.resp, &c.addr, c.alen)
		return true
	})
	for len(u.h) > 0 && u.h[0].due <= now {
		c := &u.slots[u.h[0].call]
		u.h = u.h[1:]
		if c.state == uasAnswered {
			c.state, c.resp = uasEnded, nil
			u.st.Failed++
			u.st.Current--
		}
	}
	for len(u.expire) > 0 && u.expire[0].due <= now {
		id := u.expire[0].call
		u.expire = u.expire[1:]
		delete(u.calls, u.slots[id].key)
		u.slots[id] = uasCall{}
		u.free = append(u.free, id)
	}
}

// appendAnswer appends an answer with status to request r: its Via, From,
// To, Call-ID and CSeq copied; more appends the rest of the head after
// the To line and returns it, or with more nil the answer has no body.
func appendAnswer(b []byte, status string, r *response, more func([]byte) []byte) []byte {
	b = append(b, "SIP/2.0 "...)
	b = append(b, status...)
	b = append(b, "\r\n"...)
	for _, v := range r.vias() {
		b = append(b, "Via: "...)
		b = append(b, v...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "From: "...)
	b = append(b, r.from...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, r.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = append(b, r.cseq...)
	b = append(b, "\r\nTo: "...)
	b = append(b, r.to...)
	b = append(b, "\r\n"...)
	if more != nil {
		return more(b)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}
