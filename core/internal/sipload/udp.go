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
// -buff_size in sipbench; the kernel caps it at rmem_max and wmem_max).
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
	_ = conn.SetReadBuffer(udpBuffer)
	_ = conn.SetWriteBuffer(udpBuffer)
	w := &udpWire{e: e, conn: conn, pc: ipv4.NewPacketConn(conn), dst: dst,
		loc: newLocal(conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().String(), conn.LocalAddr().(*net.UDPAddr).Port, "UDP", e.cfg.Target, token)}
	w.ms, w.bufs = newBatch(e.cfg.Batch, dst)
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

func newBatch(n int, dst net.Addr) ([]ipv4.Message, [][]byte) {
	ms, bufs := make([]ipv4.Message, n), make([][]byte, n)
	for k := range ms {
		ms[k].Buffers, ms[k].Addr = bufs[k:k+1], dst
	}
	return ms, bufs
}

func (w *udpWire) locals() []*local { return []*local{w.loc} }

func (w *udpWire) send(calls []int32, _ int64) {
	for len(calls) > 0 {
		k := min(len(calls), len(w.ms))
		for j, c := range calls[:k] {
			w.bufs[j] = w.e.invite(c)
		}
		w.e.sender.errs += w.write(w.ms[:k])
		calls = calls[k:]
	}
}

// write sends ms whole, and returns the number of failed writes. A
// datagram that does not go out is lost as if on the wire: Timer A sends
// it again.
func (w *udpWire) write(ms []ipv4.Message) int {
	errs := 0
	for len(ms) > 0 {
		n, err := w.pc.WriteBatch(ms, 0)
		if err != nil {
			errs++
			n = max(n, 1) // skip the datagram the kernel refused
		}
		ms = ms[n:]
	}
	return errs
}

// mmsghdr is struct mmsghdr of recvmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func (w *udpWire) receive(wg *sync.WaitGroup) []*counters {
	cnt := &counters{}
	wg.Go(func() { w.receiveLoop(cnt) })
	return []*counters{cnt}
}

// receiveLoop reads answers in batches with recvmmsg until the socket is
// closed, and writes the ACKs of each batch with one sendmmsg. It reads
// with recvmmsg itself because x/net's ReadBatch allocates an address for
// every datagram, which the UAC has no use for (it finds calls by
// Call-ID); with no address asked for, the loop allocates nothing.
func (w *udpWire) receiveLoop(cnt *counters) {
	n := w.e.cfg.Batch
	hs, iovs, bufs := make([]mmsghdr, n), make([]unix.Iovec, n), make([][]byte, n)
	for k := range hs {
		bufs[k] = make([]byte, maxDatagram)
		iovs[k].Base = &bufs[k][0]
		iovs[k].SetLen(maxDatagram)
		hs[k].hdr.Iov = &iovs[k]
		hs[k].hdr.SetIovlen(1)
	}
	ackMs, ackBufs := newBatch(n, w.dst)
	ack := make([]byte, 0, n*1024)
	ends := make([]int, 0, n)
	rc, err := w.conn.SyscallConn()
	if err != nil {
		cnt.errs++
		return
	}
	var got int
	var errno syscall.Errno
	recv := func(fd uintptr) bool {
		for {
			// #nosec G103 -- hs outlives the call; the kernel writes only within its lengths.
			r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&hs[0])), uintptr(len(hs)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			got, errno = int(r), e
			return true
		}
	}
	for {
		if err := rc.Read(recv); err != nil {
			return // closed
		}
		if errno != 0 {
			cnt.errs++
			continue
		}
		now := w.e.now()
		ack, ends = ack[:0], ends[:0]
		for k := range got {
			if hs[k].hdr.Flags&unix.MSG_TRUNC != 0 {
				cnt.unexpected++
				continue
			}
			if ack = w.e.handle(bufs[k][:hs[k].n], now, w.loc, cnt, ack); len(ack) > last(ends) {
				ends = append(ends, len(ack))
			}
			hs[k].hdr.Flags = 0
		}
		for k, end := range ends {
			start := 0
			if k > 0 {
				start = ends[k-1]
			}
			ackBufs[k] = ack[start:end]
		}
		cnt.errs += w.write(ackMs[:len(ends)])
		w.e.acked(cnt)
	}
}

func last(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func (w *udpWire) close() { _ = w.conn.Close() }
