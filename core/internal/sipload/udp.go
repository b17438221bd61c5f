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
	hs      []mmsghdr
	iovs    []unix.Iovec
	bufs    [][]byte
	oob     [][]byte
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

// oobSize holds one SCM_TIMESTAMPNS message.
const oobSize = 64

func (w *udpWire) receive(*sync.WaitGroup) []*counters {
	return []*counters{&w.r.cnt}
}

func (w *udpWire) newReceiver() error {
	n := w.e.cfg.Batch
	r := &w.r
	r.hs, r.iovs, r.bufs, r.oob = make([]mmsghdr, n), make([]unix.Iovec, n), make([][]byte, n), make([][]byte, n)
	for k := range r.hs {
		r.bufs[k], r.oob[k] = make([]byte, maxDatagram), make([]byte, oobSize)
		r.iovs[k].Base = &r.bufs[k][0]
		r.iovs[k].SetLen(maxDatagram)
		r.hs[k].hdr.Iov = &r.iovs[k]
		r.hs[k].hdr.SetIovlen(1)
	}
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
	r.recv = func(fd uintptr) bool {
		for k := range r.hs {
			r.hs[k].hdr.Flags = 0
			if r.stamps {
				r.hs[k].hdr.Control = &r.oob[k][0]
				r.hs[k].hdr.SetControllen(oobSize)
			}
		}
		for {
			// #nosec G103 -- hs outlives the call; the kernel writes only within its lengths.
			n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hs[0])), uintptr(len(r.hs)), unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EINTR {
				continue
			}
			r.got, r.errno = int(n), e
			if e != 0 {
				r.got = 0
			}
			return true // never wait: the sender's tick comes back
		}
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
			h := &r.hs[k]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				r.cnt.unexpected++
				continue
			}
			at := now
			if r.stamps {
				if ts, ok := stamp(r.oob[k][:h.hdr.Controllen]); ok {
					at = min(now, ts-r.wall0)
				}
			}
			if r.ack = w.e.handle(r.bufs[k][:h.n], at, w.loc, &r.cnt, r.ack); len(r.ack) > last(r.ends) {
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
		if r.got < len(r.hs) {
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
