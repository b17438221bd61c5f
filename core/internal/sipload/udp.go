package sipload

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBuffer is the socket buffer the UAC asks for both ways (SIPp's
// -buff_size in sipbench, edged's sip.udp_buffer_bytes).
const udpBuffer = 8 << 20

// maxDatagram is the receive buffer per datagram: SIP over UDP stays
// below the path MTU, and a larger answer is counted unexpected.
const maxDatagram = 8 << 10

// udpWire is one UDP socket: the sender writes INVITEs and the receive
// loop ACKs with sendmmsg; the receive loop reads with recvmmsg.
type udpWire struct {
	e    *engine
	sock *udpSocket
	dst  sockaddr
	loc  *local
	sb   sendBatch // the sender's
	r    receiver
}

func dialUDP(e *engine, token string) (*udpWire, error) {
	dst, err := netip.ParseAddrPort(e.cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("sipload: target: %w", err)
	}
	ip, err := netip.ParseAddr(e.cfg.LocalIP)
	if err != nil {
		return nil, fmt.Errorf("sipload: local ip: %w", err)
	}
	sock, err := listenUDP(netip.AddrPortFrom(ip, 0))
	if err != nil {
		return nil, err
	}
	w := &udpWire{e: e, sock: sock, dst: toSockaddr(dst), sb: newSendBatch(e.cfg.Batch),
		loc: newLocal(sock.addr.Addr().String(), int(sock.addr.Port()), "UDP", e.cfg.Target, token)}
	w.newReceiver()
	return w, nil
}

// newLocal describes the UAC at ip:port.
func newLocal(ip string, port int, transport, remote, token string) *local {
	l := &local{host: ip, ip: ip, ipVersion: "4", port: port, transport: transport, remote: remote, token: token}
	if strings.Contains(ip, ":") {
		l.host, l.ipVersion = "["+ip+"]", "6"
	}
	return l
}

func (w *udpWire) locals() []*local { return []*local{w.loc} }

func (w *udpWire) flush() {}

func (w *udpWire) send(calls []int32, _ int64) {
	for len(calls) > 0 {
		k := min(len(calls), len(w.sb.msgs))
		for j, c := range calls[:k] {
			w.sb.msgs[j] = w.e.invite(c)
		}
		w.write(w.sb.msgs[:k], &w.sb, &w.e.sender)
		calls = calls[k:]
	}
}

// sendBufs writes the messages bufs to the Target.
func (w *udpWire) sendBufs(bufs [][]byte) { w.write(bufs, &w.sb, &w.e.sender) }

// write sends msgs to the Target with b, counting failed writes in cnt.
// A datagram that does not go out is lost as if on the wire: the timers
// send it again.
func (w *udpWire) write(msgs [][]byte, b *sendBatch, cnt *counters) {
	if err := w.sock.send(b, msgs, nil, w.dst); err != nil {
		cnt.fail(fmt.Errorf("send to %s: %w", w.e.cfg.Target, err))
	}
}

// mmsghdr is struct mmsghdr of recvmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgs are the buffers of one recvmmsg call: Batch datagrams of up to
// maxDatagram bytes, each with room for its control message (stamps)
// and its source address (names) when asked.
type mmsgs struct {
	hs    []mmsghdr
	iovs  []unix.Iovec
	bufs  [][]byte
	oob   [][]byte
	names []unix.RawSockaddrAny
}

// oobSize holds one SCM_TIMESTAMPNS message.
const oobSize = 64

func newMmsgs(n int, stamps, names bool) mmsgs {
	m := mmsgs{hs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n)}
	if stamps {
		m.oob = make([][]byte, n)
	}
	if names {
		m.names = make([]unix.RawSockaddrAny, n)
	}
	for k := range m.hs {
		m.bufs[k] = make([]byte, maxDatagram)
		m.iovs[k].Base = &m.bufs[k][0]
		m.iovs[k].SetLen(maxDatagram)
		m.hs[k].hdr.Iov = &m.iovs[k]
		m.hs[k].hdr.SetIovlen(1)
		if stamps {
			m.oob[k] = make([]byte, oobSize)
		}
	}
	return m
}

// recv reads what has come in on fd, up to len(m.hs) datagrams, without
// waiting: it returns how many came, or the errno (EAGAIN: none).
func (m *mmsgs) recv(fd uintptr) (int, syscall.Errno) {
	for k := range m.hs {
		h := &m.hs[k].hdr
		h.Flags = 0
		if m.oob != nil {
			h.Control = &m.oob[k][0]
			h.SetControllen(oobSize)
		}
		if m.names != nil {
			// #nosec G103 -- names outlives the call; the kernel writes only within Namelen.
			h.Name = (*byte)(unsafe.Pointer(&m.names[k]))
			h.Namelen = unix.SizeofSockaddrAny
		}
	}
	for {
		// #nosec G103 -- hs outlives the call; the kernel writes only within its lengths.
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hs[0])), uintptr(len(m.hs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), 0
	}
}

// msg returns datagram k of the last recv, and false when it was cut.
func (m *mmsgs) msg(k int) ([]byte, bool) {
	h := &m.hs[k]
	return m.bufs[k][:h.n], h.hdr.Flags&unix.MSG_TRUNC == 0
}

// receiver is the UDP receive side, run by the sender goroutine on every
// tick: one goroutine and no wake-up per datagram, so a tick drains
// the socket in a few recvmmsg calls of up to Batch datagrams each. It
// reads with recvmmsg itself because x/net's ReadBatch allocates an
// address for every datagram, which the UAC has no use for (it finds
// calls by Call-ID); it asks the kernel for each datagram's arrival time
// (SO_TIMESTAMPNS), so the latency does not include the wait for the
// tick.
type receiver struct {
	m      mmsgs
	stamps bool  // SO_TIMESTAMPNS is on
	wall0  int64 // the run's start in Unix ns, for the kernel's stamps
	sb     sendBatch
	ack    []byte   // the ACKs of one recvmmsg batch
	acks   [][]byte // each of them, in ack
	cnt    counters
}

func (w *udpWire) receive(*sync.WaitGroup) []*counters {
	return []*counters{&w.r.cnt}
}

func (w *udpWire) newReceiver() {
	n := w.e.cfg.Batch
	r := &w.r
	r.sb = newSendBatch(n)
	r.ack = make([]byte, 0, n*1024)
	r.acks = make([][]byte, 0, n)
	r.stamps = unix.SetsockoptInt(w.sock.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) == nil
	r.m = newMmsgs(n, r.stamps, false)
}

// poll reads and handles every datagram that has come in, and writes the
// ACKs of each batch with one sendmmsg.
func (w *udpWire) poll() {
	r := &w.r
	if r.wall0 == 0 {
		r.wall0 = w.e.start.UnixNano()
	}
	for {
		got, errno := w.sock.recv(&r.m)
		if errno != 0 && errno != unix.EAGAIN {
			r.cnt.fail(fmt.Errorf("recvmmsg: %w", errno))
		}
		if got == 0 {
			return
		}
		now := w.e.now()
		r.ack, r.acks = r.ack[:0], r.acks[:0]
		for k := range got {
			msg, whole := r.m.msg(k)
			if !whole {
				r.cnt.unexpected++
				continue
			}
			at := now
			if r.stamps {
				if ts, ok := stamp(r.m.oob[k][:r.m.hs[k].hdr.Controllen]); ok {
					at = min(now, ts-r.wall0)
				}
			}
			before := len(r.ack)
			if r.ack = w.e.handle(msg, at, w.loc, &r.cnt, r.ack); len(r.ack) > before {
				r.acks = append(r.acks, r.ack[before:])
			}
		}
		w.write(r.acks, &r.sb, &r.cnt)
		w.e.acked(&r.cnt)
		if got < len(r.m.hs) {
			return
		}
	}
}

// stamp returns the SCM_TIMESTAMPNS time (Unix ns) in a control message.
func stamp(oob []byte) (int64, bool) {
	if len(oob) < unix.SizeofCmsghdr+int(unsafe.Sizeof(unix.Timespec{})) {
		return 0, false
	}
	// #nosec G103 -- the length is checked above; the kernel aligns control messages.
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS {
		return 0, false
	}
	// #nosec G103 -- as above.
	ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.SizeofCmsghdr]))
	return ts.Nano(), true
}

func (w *udpWire) close() { w.sock.close() }
