package sipload

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// udpBuffer is the socket buffer the UAC asks for both ways (SIPp's
// -buff_size in sipbench, edged's sip.udp_buffer_bytes).
const udpBuffer = 8 << 20

// maxDatagram is the receive buffer per datagram: SIP over UDP stays
// below the path MTU, and a larger answer is counted unexpected.
const maxDatagram = 8 << 10

// udpWire is one UDP socket: the sender writes INVITEs and the receive
// loop ACKs with sendmmsg (x/net's WriteBatch); the receive loop reads
// with recvmmsg.
type udpWire struct {
	e    *engine
	conn *net.UDPConn
	pc   *ipv4.PacketConn // WriteBatch only; IPv6 messages are the same type
	dst  *net.UDPAddr
	loc  *local
	// The sender's batch: ms[k].Buffers is bufs[k:k+1].
	ms   []ipv4.Message
	bufs [][]byte
	r    receiver
}

func dialUDP(e *engine, token string) (*udpWire, error) {
	dst, err := net.ResolveUDPAddr("udp", e.cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("sipload: target: %w", err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(e.cfg.LocalIP)})
	if err != nil {
		return nil, fmt.Errorf("sipload: bind udp on %s: %w", e.cfg.LocalIP, err)
	}
	setBuffers(conn)
	w := &udpWire{e: e, conn: conn, pc: ipv4.NewPacketConn(conn), dst: dst,
		loc: newLocal(conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().String(), conn.LocalAddr().(*net.UDPAddr).Port, "UDP", e.cfg.Target, token)}
	w.ms, w.bufs = newBatch(e.cfg.Batch, dst)
	if err := w.newReceiver(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return w, nil
}

// setBuffers asks for udpBuffer both ways, past rmem_max and wmem_max
// where allowed (SO_RCVBUFFORCE needs CAP_NET_ADMIN, as edged's does).
func setBuffers(conn *net.UDPConn) {
	_ = conn.SetReadBuffer(udpBuffer)
	_ = conn.SetWriteBuffer(udpBuffer)
	if rc, err := conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpBuffer)
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpBuffer)
		})
	}
}

// newLocal describes the UAC at ip:port.
func newLocal(ip string, port int, transport, remote, token string) *local {
	l := &local{host: ip, ip: ip, ipVersion: "4", port: port, transport: transport, remote: remote, token: token}
	if strings.Contains(ip, ":") {
		l.host, l.ipVersion = "["+ip+"]", "6"
	}
	return l
}

func newBatch(n int, dst net.Addr) ([]ipv4.Message, [][]byte) {
	ms, bufs := make([]ipv4.Message, n), make([][]byte, n)
	for k := range ms {
		ms[k].Buffers, ms[k].Addr = bufs[k:k+1], dst
	}
	return ms, bufs
}

func (w *udpWire) locals() []*local { return []*local{w.loc} }

func (w *udpWire) flush() {}

func (w *udpWire) send(calls []int32, _ int64) {
	for len(calls) > 0 {
		k := min(len(calls), len(w.ms))
		for j, c := range calls[:k] {
			w.bufs[j] = w.e.invite(c)
		}
		w.write(w.ms[:k], &w.e.sender)
		calls = calls[k:]
	}
}

// sendBufs writes the messages bufs to the Target.
func (w *udpWire) sendBufs(bufs [][]byte) {
	for len(bufs) > 0 {
		k := min(len(bufs), len(w.ms))
		copy(w.bufs, bufs[:k])
		w.write(w.ms[:k], &w.e.sender)
		bufs = bufs[k:]
	}
}

// write sends ms whole, counting failed writes in cnt. A datagram that
// does not go out is lost as if on the wire: Timer A sends it again.
func (w *udpWire) write(ms []ipv4.Message, cnt *counters) {
	for len(ms) > 0 {
		n, err := w.pc.WriteBatch(ms, 0)
		if err != nil {
			cnt.fail(fmt.Errorf("send to %s: %w", w.e.cfg.Target, err))
			n = max(n, 1) // skip the datagram the kernel refused
		}
		ms = ms[n:]
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
	rc      syscall.RawConn
	m       mmsgs
	stamps  bool  // SO_TIMESTAMPNS is on
	wall0   int64 // the run's start in Unix ns, for the kernel's stamps
	got     int
	errno   syscall.Errno
	recv    func(fd uintptr) bool
	ackMs   []ipv4.Message
	ackBufs [][]byte
	ack     []byte
	ends    []int
	cnt     counters
}

func (w *udpWire) receive(*sync.WaitGroup) []*counters {
	return []*counters{&w.r.cnt}
}

func (w *udpWire) newReceiver() error {
	n := w.e.cfg.Batch
	r := &w.r
	r.ackMs, r.ackBufs = newBatch(n, w.dst)
	r.ack = make([]byte, 0, n*1024)
	r.ends = make([]int, 0, n)
	var err error
	if r.rc, err = w.conn.SyscallConn(); err != nil {
		return fmt.Errorf("sipload: udp socket: %w", err)
	}
	_ = r.rc.Control(func(fd uintptr) {
		r.stamps = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) == nil
	})
	r.m = newMmsgs(n, r.stamps, false)
	r.recv = func(fd uintptr) bool {
		r.got, r.errno = r.m.recv(fd)
		return true // never wait: the sender's tick comes back
	}
	return nil
}

// poll reads and handles every datagram that has come in, and writes the
// ACKs of each batch with one sendmmsg.
func (w *udpWire) poll() {
	r := &w.r
	if r.wall0 == 0 {
		r.wall0 = w.e.start.UnixNano()
	}
	for {
		if err := r.rc.Read(r.recv); err != nil {
			return // closed
		}
		if r.errno != 0 && r.errno != unix.EAGAIN {
			r.cnt.fail(fmt.Errorf("recvmmsg: %w", r.errno))
		}
		if r.got == 0 {
			return
		}
		now := w.e.now()
		r.ack, r.ends = r.ack[:0], r.ends[:0]
		for k := range r.got {
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
			if r.ack = w.e.handle(msg, at, w.loc, &r.cnt, r.ack); len(r.ack) > last(r.ends) {
				r.ends = append(r.ends, len(r.ack))
			}
		}
		for k, end := range r.ends {
			start := 0
			if k > 0 {
				start = r.ends[k-1]
			}
			r.ackBufs[k] = r.ack[start:end]
		}
		w.write(r.ackMs[:len(r.ends)], &r.cnt)
		w.e.acked(&r.cnt)
		if r.got < len(r.m.hs) {
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

func last(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func (w *udpWire) close() { _ = w.conn.Close() }
