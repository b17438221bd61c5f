package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/sys/unix"
)

const (
	pktSize  = 172 // 12-byte RTP header + 160 bytes of G.711 (20 ms)
	interval = 20 * time.Millisecond
)

// leg of a generated call: where its packets go on the server, and the
// SRTP contexts when it is the secured side.
type genCall struct {
	toA, toB netip.AddrPort // the server's A-leg and B-leg addresses
	encB     *srtp.Context  // B's packets, encrypted with B's key
	decB     *srtp.Context  // what the server sends B, with the server's key
	seqA     uint16
	seqB     uint16
}

// generator is the load: all A endpoints share one socket and all B
// endpoints another (calls tell their packets apart by SSRC), so the
// generator batches with sendmmsg/recvmmsg and stays far cheaper per packet
// than the server it loads.
type generator struct {
	connA, connB *net.UDPConn // on the Go netpoller: one thread serves sender and readers
	addrA, addrB netip.AddrPort
	srtpMode     bool
	calls        []*genCall
	start        time.Time

	sent     atomic.Uint64
	received atomic.Uint64
	bad      atomic.Uint64
	measure  atomic.Bool
	mu       sync.Mutex
	hist     [latBuckets]uint64 // latency histogram, 10 µs buckets, when measuring
}

const latBuckets = 20000 // 10 µs each: up to 200 ms; later ones land in the last

func openGenSocket() (*net.UDPConn, netip.AddrPort, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: genAddr.AsSlice()})
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	// 16 MiB each way: a late reader must not be the loss measured.
	raw, err := c.SyscallConn()
	var serr error
	if err == nil {
		err = raw.Control(func(fd uintptr) {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20))
		})
	}
	if err = errors.Join(err, serr); err != nil {
		_ = c.Close()
		return nil, netip.AddrPort{}, fmt.Errorf("socket buffers (needs root): %w", err)
	}
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

func sdpFor(ap netip.AddrPort, proto string, extra ...string) string {
	s := "v=0\r\no=gen 1 1 IN IP4 " + ap.Addr().String() + "\r\ns=-\r\nc=IN IP4 " + ap.Addr().String() + "\r\nt=0 0\r\nm=audio " +
		strconv.Itoa(int(ap.Port())) + " " + proto + " 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	for _, e := range extra {
		s += "a=" + e + "\r\n"
	}
	return s
}

// mediaOf reads c= and the first m= port of an SDP answer, and the
// AES_CM_128_HMAC_SHA1_80 crypto line if any.
func mediaOf(sdp string) (netip.AddrPort, int, []byte, error) {
	var addr netip.Addr
	port := 0
	tag, key := 0, []byte(nil)
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "c=IN IP4 "):
			addr, _ = netip.ParseAddr(strings.TrimPrefix(l, "c=IN IP4 "))
		case strings.HasPrefix(l, "m=audio ") && port == 0:
			port, _ = strconv.Atoi(strings.Fields(l)[1])
		case strings.HasPrefix(l, "a=crypto:") && key == nil:
			f := strings.Fields(strings.TrimPrefix(l, "a=crypto:"))
			if len(f) >= 3 && f[1] == "AES_CM_128_HMAC_SHA1_80" {
				tag, _ = strconv.Atoi(f[0])
				b64, _, _ := strings.Cut(strings.TrimPrefix(f[2], "inline:"), "|")
				key, _ = base64.StdEncoding.DecodeString(b64)
			}
		}
	}
	if !addr.IsValid() || port == 0 {
		return netip.AddrPort{}, 0, nil, fmt.Errorf("no c=/m= in SDP:\n%s", sdp)
	}
	return netip.AddrPortFrom(addr, uint16(port)), tag, key, nil
}

// setup creates n calls on the server through ng; without a server (ng
// nil) A and B talk to each other directly.
func (g *generator) setup(ng *ngClient, n int, run string) error {
	if ng == nil {
		for range n {
			g.calls = append(g.calls, &genCall{toA: g.addrB, toB: g.addrA})
		}
		return nil
	}
	for i := range n {
		id := fmt.Sprintf("%s-%d", run, i)
		offer := map[string]any{"command": "offer", "call-id": id, "from-tag": "a", "sdp": sdpFor(g.addrA, "RTP/AVP"),
			"replace": []string{"origin", "session-connection"}, "ICE": "remove"}
		if g.srtpMode {
			offer["transport-protocol"] = "RTP/SAVP"
		}
		r, err := ng.call(offer)
		if err != nil {
			return err
		}
		sdpB, _ := r["sdp"].(string)
		toB, tag, serverKey, err := mediaOf(sdpB)
		if err != nil {
			return err
		}
		c := &genCall{toB: toB}
		var extra []string
		proto := "RTP/AVP"
		if g.srtpMode {
			if len(serverKey) != 30 {
				return fmt.Errorf("call %d: no AES_CM_128_HMAC_SHA1_80 key offered to the SRTP side:\n%s", i, sdpB)
			}
			own := make([]byte, 30)
			binary.BigEndian.PutUint64(own, uint64(i)+1)
			if c.encB, err = srtp.CreateContext(own[:16], own[16:], srtp.ProtectionProfileAes128CmHmacSha1_80); err != nil {
				return err
			}
			if c.decB, err = srtp.CreateContext(serverKey[:16], serverKey[16:], srtp.ProtectionProfileAes128CmHmacSha1_80); err != nil {
				return err
			}
			proto = "RTP/SAVP"
			extra = append(extra, fmt.Sprintf("crypto:%d AES_CM_128_HMAC_SHA1_80 inline:%s", tag, base64.StdEncoding.EncodeToString(own)))
		}
		r, err = ng.call(map[string]any{"command": "answer", "call-id": id, "from-tag": "a", "to-tag": "b",
			"sdp": sdpFor(g.addrB, proto, extra...), "replace": []string{"origin", "session-connection"}, "ICE": "remove"})
		if err != nil {
			return err
		}
		sdpA, _ := r["sdp"].(string)
		if c.toA, _, _, err = mediaOf(sdpA); err != nil {
			return err
		}
		g.calls = append(g.calls, c)
	}
	return nil
}

func (g *generator) teardown(ng *ngClient, run string) {
	for i := range g.calls {
		if ng == nil {
			break
		}
		if _, err := ng.call(map[string]any{"command": "delete", "call-id": fmt.Sprintf("%s-%d", run, i), "from-tag": "a"}); err != nil {
			fmt.Fprintln(os.Stderr, "mediabench:", err) // the server keeps a call until its own timeout
		}
	}
	g.calls = nil
}

// mmsg is a batch for sendmmsg/recvmmsg.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

type batch struct {
	h    []mmsghdr
	iov  []unix.Iovec
	name []unix.RawSockaddrInet4
	buf  [][]byte
}

func newBatch(n int) *batch {
	b := &batch{h: make([]mmsghdr, n), iov: make([]unix.Iovec, n), name: make([]unix.RawSockaddrInet4, n), buf: make([][]byte, n)}
	for i := range b.h {
		b.buf[i] = make([]byte, 2048)
		b.iov[i].Base = &b.buf[i][0]
		b.iov[i].SetLen(2048)
		b.h[i].hdr.Iov = &b.iov[i]
		b.h[i].hdr.SetIovlen(1)
		b.h[i].hdr.Name = (*byte)(unsafe.Pointer(&b.name[i]))
		b.h[i].hdr.Namelen = unix.SizeofSockaddrInet4
	}
	return b
}

// mmsg runs recvmmsg or sendmmsg on c through the netpoller: the goroutine
// parks while the socket is not ready, no thread blocks in the kernel.
func mmsg(c *net.UDPConn, trap uintptr, h []mmsghdr) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	op := func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&h[0])), uintptr(len(h)), unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case 0:
				n = int(r)
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // park until the socket is ready
			}
			return true
		}
	}
	// A deadline (the readers' stop check) ends the wait with n = 0.
	if trap == unix.SYS_RECVMMSG {
		_ = raw.Read(op)
	} else {
		_ = raw.Write(op)
	}
	return n
}

// send paces every call's two streams at 50 packets/s until stop closes.
// Calls sit in 20 one-millisecond slots by phase; each tick sends the slots
// whose time came (more than one after a late tick).
func (g *generator) send(stop <-chan struct{}) {
	ba, bb := newBatch(1024), newBatch(1024)
	var hdr rtp.Header
	scratch := make([]byte, pktSize)
	const slots = int(interval / time.Millisecond)
	wheel := make([][]int, slots)
	for i := range g.calls {
		wheel[i%slots] = append(wheel[i%slots], i)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	begin := time.Now()
	done := 0 // slots sent so far, counted from begin
	na, nb := 0, 0
	flush := func() {
		if na > 0 {
			g.sent.Add(uint64(mmsg(g.connA, unix.SYS_SENDMMSG, ba.h[:na])))
		}
		if nb > 0 {
			g.sent.Add(uint64(mmsg(g.connB, unix.SYS_SENDMMSG, bb.h[:nb])))
		}
		na, nb = 0, 0
	}
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		due := int(time.Since(begin) / time.Millisecond)
		for ; done <= due; done++ {
			for _, i := range wheel[done%slots] {
				c := g.calls[i]
				if na == len(ba.h) || nb == len(bb.h) {
					flush()
				}
				ts := uint64(time.Since(g.start))
				c.seqA++
				fill(ba.buf[na][:pktSize], c.seqA, 0xA0000000|uint32(i), ts)
				ba.iov[na].SetLen(pktSize)
				putName(&ba.name[na], c.toA)
				na++
				c.seqB++
				out := bb.buf[nb][:pktSize]
				if c.encB != nil {
					fill(scratch, c.seqB, 0xB0000000|uint32(i), ts)
					out, _ = c.encB.EncryptRTP(bb.buf[nb][:0], scratch, &hdr)
				} else {
					fill(out, c.seqB, 0xB0000000|uint32(i), ts)
				}
				bb.iov[nb].SetLen(len(out))
				putName(&bb.name[nb], c.toB)
				nb++
			}
		}
		flush()
	}
}

func fill(p []byte, seq uint16, ssrc uint32, ts uint64) {
	p[0], p[1] = 0x80, 0
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	binary.BigEndian.PutUint64(p[12:], ts)
}

func putName(n *unix.RawSockaddrInet4, ap netip.AddrPort) {
	n.Family = unix.AF_INET
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&n.Port))[:], ap.Port())
	n.Addr = ap.Addr().As4()
}

// receive reads what the server relayed to one side until stop closes.
func (g *generator) receive(c *net.UDPConn, secured bool, stop <-chan struct{}) {
	b := newBatch(256)
	var hdr rtp.Header
	plain := make([]byte, 2048)
	for {
		select {
		case <-stop:
			return
		default:
		}
		for i := range b.h {
			b.iov[i].SetLen(2048)
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // a UDP socket: cannot fail
		n := mmsg(c, unix.SYS_RECVMMSG, b.h)
		now := uint64(time.Since(g.start))
		for i := range n {
			p := b.buf[i][:b.h[i].n]
			if len(p) < 20 {
				g.bad.Add(1)
				continue
			}
			idx := int(binary.BigEndian.Uint32(p[8:]) & 0x0fffffff)
			if idx >= len(g.calls) {
				g.bad.Add(1)
				continue
			}
			if secured {
				out, err := g.calls[idx].decB.DecryptRTP(plain[:0], p, &hdr)
				if err != nil {
					g.bad.Add(1)
					continue
				}
				p = out
			}
			g.received.Add(1)
			if g.measure.Load() {
				b := min((now-binary.BigEndian.Uint64(p[12:]))/10000, latBuckets-1)
				g.mu.Lock()
				g.hist[b]++
				g.mu.Unlock()
			}
		}
	}
}

// percentiles returns p50 and p99 of the latencies measured, in ms.
func (g *generator) percentiles() (float64, float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var total uint64
	for _, n := range g.hist {
		total += n
	}
	at := func(q float64) float64 {
		want := uint64(q * float64(total))
		var seen uint64
		for b, n := range g.hist {
			if seen += n; seen > want {
				return float64(b) * 10 / 1000
			}
		}
		return 0
	}
	return at(0.50), at(0.99)
}
