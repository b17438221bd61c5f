package media

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/sys/unix"
)

// rawPeer is a blocking UDP socket connected to the engine, so the
// benchmark's own side makes no allocation either.
type rawPeer struct {
	fd   int
	addr netip.AddrPort
}

func newRawPeer(b *testing.B) *rawPeer {
	b.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	sa, _ := unix.Getsockname(fd)
	b.Cleanup(func() { unix.Close(fd) })
	return &rawPeer{fd: fd, addr: netip.AddrPortFrom(loopback, uint16(sa.(*unix.SockaddrInet4).Port))}
}

func (p *rawPeer) connect(b *testing.B, to netip.AddrPort) {
	b.Helper()
	if err := unix.Connect(p.fd, &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}); err != nil {
		b.Fatal(err)
	}
}

func (p *rawPeer) sdp(proto string, extra ...string) []byte {
	body := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
		strconv.Itoa(int(p.addr.Port())) + " " + proto + " 0\r\n"
	for _, e := range extra {
		body += "a=" + e + "\r\n"
	}
	return []byte(body)
}

// BenchmarkRelay relays one packet each way per op through real loopback
// sockets and the engine's workers; -benchmem shows the allocations of the
// whole process (workers included) per op: 0 in steady state. The time per
// op is not a throughput: each packet of this ping-pong arrives just after
// the worker woke, so it waits out the worker's rest (coalesce, 1 ms).
//
//	go test -run XXX -bench Relay -benchmem -benchtime 2000x ./core/internal/media
func BenchmarkRelay(b *testing.B) {
	b.Run("RTP-RTP", func(b *testing.B) { benchRelay(b, false) })
	b.Run("RTP-SRTP", func(b *testing.B) { benchRelay(b, true) })
}

func benchRelay(b *testing.B, secure bool) {
	b.Helper()
	e := newTestEngine(b, 8, func(c *Config) {
		c.Workers = 1
		// Policing on, with caps this ping-pong never reaches: every
		// packet pays for its bucket.
		c.Police = Police{AudioPPS: 100_000, AudioKbps: 1_000_000}
	})
	pa, pb := newRawPeer(b), newRawPeer(b)
	profB := plain
	var offerB, answerB []byte
	var bKey sdesKey
	if secure {
		profB = LegProfile{Local: loopback, Security: SecuritySRTP}
		var line string
		bKey, line = peerKey(b, 1, 0)
		answerB = pb.sdp("RTP/SAVP", line)
	} else {
		answerB = pb.sdp("RTP/AVP")
	}
	s, err := e.NewSession("bench", plain, profB, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if offerB, err = s.Offer(SideA, pa.sdp("RTP/AVP")); err != nil {
		b.Fatal(err)
	}
	answerA, err := s.Answer(SideB, answerB)
	if err != nil {
		b.Fatal(err)
	}
	toA, _ := mediaAddr(b, answerA)
	toB, _ := mediaAddr(b, offerB)
	pa.connect(b, toA)
	pb.connect(b, toB)
	var bEnc *srtp.Context
	if secure {
		bEnc = mustContext(b, bKey, false)
	}

	pktA := rtpPacket(0, 0, 0, 0xA)
	pktB := rtpPacket(0, 0, 0, 0xB)
	encB := make([]byte, 0, bufSize)
	var hdr rtp.Header
	buf := make([]byte, bufSize)
	seq := uint16(0)
	step := func() {
		seq++
		binary.BigEndian.PutUint16(pktA[2:], seq)
		binary.BigEndian.PutUint32(pktA[4:], uint32(seq)*160)
		if _, err := unix.Write(pa.fd, pktA); err != nil {
			b.Fatal(err)
		}
		if _, err := readRetry(pb.fd, buf); err != nil {
			b.Fatal("B read: ", err)
		}
		binary.BigEndian.PutUint16(pktB[2:], seq)
		binary.BigEndian.PutUint32(pktB[4:], uint32(seq)*160)
		out := pktB
		if bEnc != nil {
			out, _ = bEnc.EncryptRTP(encB[:0], pktB, &hdr)
		}
		if _, err := unix.Write(pb.fd, out); err != nil {
			b.Fatal(err)
		}
		if _, err := readRetry(pa.fd, buf); err != nil {
			b.Fatal("A read: ", err)
		}
	}
	st := runSteps(b, s, step)
	if p := st.Legs[SideA].Policed + st.Legs[SideB].Policed; p != 0 {
		b.Fatalf("%d packets policed", p)
	}
}

// BenchmarkRelayRepacketise is BenchmarkRelay with the caller at 10 ms
// and the callee's profile at 20 (R-SBC-3): per op two 10 ms packets are
// joined towards B and one 20 ms packet split back towards A, through
// the repacker (repack.go); 0 allocations per op in steady state.
//
//	go test -run XXX -bench RelayRepacketise -benchmem -benchtime 2000x ./core/internal/media
func BenchmarkRelayRepacketise(b *testing.B) {
	e := newTestEngine(b, 8, func(c *Config) { c.Workers = 1 })
	pa, pb := newRawPeer(b), newRawPeer(b)
	profB := plain
	profB.Ptime = 20
	s, err := e.NewSession("bench-repack", plain, profB, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	offerB, err := s.Offer(SideA, pa.sdp("RTP/AVP", "ptime:10"))
	if err != nil {
		b.Fatal(err)
	}
	answerA, err := s.Answer(SideB, pb.sdp("RTP/AVP"))
	if err != nil {
		b.Fatal(err)
	}
	toA, _ := mediaAddr(b, answerA)
	toB, _ := mediaAddr(b, offerB)
	pa.connect(b, toA)
	pb.connect(b, toB)

	pktA := rtpPacket(0, 0, 0, 0xA)[:12+80]
	pktB := rtpPacket(0, 0, 0, 0xB)
	buf := make([]byte, bufSize)
	seq, seqB := uint16(0), uint16(0)
	read := func(fd int, want int) {
		n, err := readRetry(fd, buf)
		if err != nil || n != want {
			b.Fatalf("read %d bytes (%v), want %d", n, err, want)
		}
	}
	step := func() {
		for range 2 {
			seq++
			binary.BigEndian.PutUint16(pktA[2:], seq)
			binary.BigEndian.PutUint32(pktA[4:], uint32(seq)*80)
			if _, err := unix.Write(pa.fd, pktA); err != nil {
				b.Fatal(err)
			}
		}
		read(pb.fd, 12+160)
		seqB++
		binary.BigEndian.PutUint16(pktB[2:], seqB)
		binary.BigEndian.PutUint32(pktB[4:], uint32(seqB)*160)
		if _, err := unix.Write(pb.fd, pktB); err != nil {
			b.Fatal(err)
		}
		read(pa.fd, 12+80)
		read(pa.fd, 12+80)
	}
	runSteps(b, s, step)
}

// runSteps warms s up with 200 steps (latching, SSRC state, contexts, the
// worker's pending list), times b.N more with their allocations and CPU
// time, and returns the stats after them: a packet lost fails the benchmark.
func runSteps(b *testing.B, s *Session, step func()) SessionStats {
	b.Helper()
	for range 200 {
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		step()
	}
	b.StopTimer()
	// The machine is shared and each op waits out worker rests: the
	// process's CPU time per op (peers' syscalls included) says more.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	st := s.Stats()
	if lost := st.Legs[SideA].Lost + st.Legs[SideB].Lost; lost != 0 {
		b.Fatalf("%d packets lost", lost)
	}
	return st
}

func readRetry(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// BenchmarkSessionOpenClose opens and closes a two-leg session per op (no
// SDP): with idle pairs (the quarantine cut to 1 ns, so that each session
// takes the pairs the last one freed) and without (every leg opens, binds
// and closes its two sockets).
//
//	go test -run XXX -bench SessionOpenClose -benchmem ./core/internal/media
func BenchmarkSessionOpenClose(b *testing.B) {
	for _, bc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"idle-pairs", func(c *Config) { c.IdleQuarantine = time.Nanosecond }},
		{"no-pool", func(c *Config) { c.IdlePairs = -1 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newTestEngine(b, 16, bc.mod)
			b.ReportAllocs()
			cpu0, n := processCPU(b), 0
			for b.Loop() {
				s, err := e.NewSession("bench", plain, plain, nil)
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
				n++
			}
			// The machine is shared: the process's CPU time per op says
			// more than the wall time.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/op")
			st := e.Stats()
			b.ReportMetric(float64(st.PairsReused)/float64(st.PairsReused+st.PairsOpened), "reused/leg")
		})
	}
}

// processCPU is the process's user and system CPU time in ns.
func processCPU(b *testing.B) int64 {
	b.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
