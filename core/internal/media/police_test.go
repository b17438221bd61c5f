package media

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// TestBucket: the token bucket on a clock of its own.
func TestBucket(t *testing.T) {
	const s = int64(time.Second)
	t0 := int64(1_000) * s
	tests := []struct {
		name      string
		givePPS   int
		giveKbps  int
		giveSize  int64
		giveEvery int64 // ns between packets
		giveN     int
		wantTaken int
	}{
		{name: "no cap takes all", giveSize: 172, giveEvery: 1, giveN: 10_000, wantTaken: 10_000},
		// Starts full (one second of the rate), then refills at the rate.
		{name: "pps burst then rate", givePPS: 100, giveSize: 172, giveEvery: s / 1000, giveN: 2000, wantTaken: 100 + 200},
		{name: "pps under the cap", givePPS: 100, giveSize: 172, giveEvery: s / 50, giveN: 500, wantTaken: 500},
		// 138 kbit/s = 17,250 B/s: 100 packets of 172 B a second.
		{name: "kbps burst then rate", giveKbps: 138, giveSize: 172, giveEvery: s / 1000, giveN: 2000, wantTaken: 100 + 200},
		{name: "kbps binds before pps", givePPS: 10_000, giveKbps: 138, giveSize: 172, giveEvery: s / 1000, giveN: 2000, wantTaken: 100 + 200},
		{name: "a packet bigger than the burst never fits", giveKbps: 8, giveSize: 1001, giveEvery: s, giveN: 5, wantTaken: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bucket
			b.set(tt.givePPS, tt.giveKbps)
			taken := 0
			for i := range tt.giveN {
				if b.take(1, tt.giveSize, t0+int64(i)*tt.giveEvery) {
					taken++
				}
			}
			// ±1 for where the last refill falls.
			if taken < tt.wantTaken-1 || taken > tt.wantTaken+1 {
				t.Errorf("took %d of %d packets, want %d", taken, tt.giveN, tt.wantTaken)
			}
		})
	}
	t.Run("clock stepping back refills nothing and goes on from there", func(t *testing.T) {
		var b bucket
		b.set(10, 0)
		for i := 0; i < 100 && b.take(1, 1, t0); i++ { // drain (bounded: a bucket that never runs dry fails below)
		}
		back := t0 - 3600*s
		if b.take(1, 1, back) || b.take(1, 1, back+s/20) {
			t.Error("a step back of the clock gave tokens")
		}
		if !b.take(1, 1, back+s/10) {
			t.Error("no token a tenth of a second after the step at 10 packets/s: the bucket starves after a step back")
		}
	})
	t.Run("a long quiet refills one burst only", func(t *testing.T) {
		var b bucket
		b.set(10, 0)
		b.take(1, 1, t0)
		n := 0
		for n < 100 && b.take(1, 1, t0+3600*s) {
			n++
		}
		if n != 10 {
			t.Errorf("after an hour's quiet %d packets fit, want the 10 of one second", n)
		}
	})
}

// BenchmarkBucketTake is the policing's cost per packet.
func BenchmarkBucketTake(b *testing.B) {
	var bk bucket
	bk.set(1_000_000, 10_000_000)
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for i := range b.N {
		bk.take(1, 172, now+int64(i)*1000)
	}
}

// pace sends n packets a second of size bytes from c to dst for d, in
// steps of 10 ms (what a sleep can do on a shared machine; the step's
// share is sent at once, as a sender's batch would be). It returns the
// packets sent and how long sending took.
func pace(t *testing.T, c *net.UDPConn, dst netip.AddrPort, pps, size int, d time.Duration, pt uint8, ssrc uint32) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	sent := 0
	for next := start; time.Since(start) < d; next = next.Add(10 * time.Millisecond) {
		due := int(float64(pps) * time.Since(start).Seconds())
		for ; sent <= due; sent++ {
			pkt := rtpPacket(pt, uint16(sent), uint32(sent)*160, ssrc) //nolint:gosec // wraps like RTP
			if size > len(pkt) {
				pkt = append(pkt, make([]byte, size-len(pkt))...)
			}
			if _, err := c.WriteToUDPAddrPort(pkt[:size], dst); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Until(next.Add(10 * time.Millisecond)))
	}
	return sent, time.Since(start)
}

// count reads c until it has been quiet for 300 ms and counts what came.
func count(c *net.UDPConn) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			n.Add(1)
		}
	}()
	return &n
}

// settle waits until n has not moved for 300 ms.
func settle(n *atomic.Int64) int64 {
	last := n.Load()
	for {
		time.Sleep(300 * time.Millisecond)
		if v := n.Load(); v != last {
			last = v
			continue
		}
		return last
	}
}

// TestPoliceFlood: a latched peer sends 20 times its cap for 2 s. The
// other side gets what the cap allows over that time plus the one-second
// burst; Policed counts the rest and PacketsIn only what went through.
func TestPoliceFlood(t *testing.T) {
	tests := []struct {
		name string
		give Police
	}{
		{name: "packets/s", give: Police{AudioPPS: 100}},
		// 138 kbit/s is 17,250 B/s: 100 packets of 172 B a second.
		{name: "kbit/s", give: Police{AudioKbps: 138}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEngine(t, 8, func(c *Config) { c.Police = tt.give })
			a, b := newPeer(t), newPeer(t)
			s, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
			got := count(b.rtp)
			const capPPS = 100
			sent, took := pace(t, a.rtp, toA, 20*capPPS, 172, 2*time.Second, 0, 0xA)
			recvd := settle(got)
			want := capPPS * (took.Seconds() + 1)
			st := s.Stats().Legs[SideA]
			t.Logf("sent %d in %s, B got %d (want ≈ %.0f), PacketsIn %d, Policed %d", sent, took, recvd, want, st.PacketsIn, st.Policed)
			if float64(recvd) < want*0.85 || float64(recvd) > want*1.15 {
				t.Errorf("B got %d packets, want %.0f ± 15 %%: the cap over %s plus a second's burst", recvd, want, took)
			}
			if st.PacketsIn != uint64(recvd) { //nolint:gosec // a count
				t.Errorf("PacketsIn %d, B got %d: PacketsIn counts what went through", st.PacketsIn, recvd)
			}
			// Every packet the engine read was relayed or policed (the
			// socket may have dropped a few under a shared machine's load).
			if n := st.PacketsIn + st.Policed; n > uint64(sent) || n < uint64(sent)*95/100 { //nolint:gosec // counts
				t.Errorf("PacketsIn %d + Policed %d = %d, sent %d", st.PacketsIn, st.Policed, n, sent)
			}
			if st.Strays != 0 {
				t.Errorf("%d strays: the latched peer's packets are its own, policed, not strays", st.Strays)
			}
			// /calls and the CDR carry the stats as JSON.
			js, err := json.Marshal(s.Stats())
			if err != nil || !strings.Contains(string(js), fmt.Sprintf(`"Policed":%d`, st.Policed)) {
				t.Errorf("the stats' JSON (/calls, CDR) lacks Policed %d: %s (%v)", st.Policed, js, err)
			}
		})
	}
}

// TestPoliceRTCPOwnBucket: RTCP flooding at its quarter of the cap does not
// eat the RTP allowance, and the RTCP beyond its own cap is policed.
func TestPoliceRTCPOwnBucket(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.Police = Police{AudioPPS: 100} })
	a, b := newPeer(t), newPeer(t)
	s, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	gotRTP, gotRTCP := count(b.rtp), count(b.rtcp)
	rtcpTo := netip.AddrPortFrom(toA.Addr(), toA.Port()+1)
	stop := make(chan struct{})
	done := make(chan int)
	go func() { // 1,000 RTCP packets/s from A's RTCP port
		rr := []byte{0x81, 201, 0, 7, 0, 0, 0, 0xA, 0, 0, 0, 0xB, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			case <-time.After(10 * time.Millisecond):
			}
			for range 10 {
				_, _ = a.rtcp.WriteToUDPAddrPort(rr, rtcpTo)
				n++
			}
		}
	}()
	sent, took := pace(t, a.rtp, toA, 50, 172, 2*time.Second, 0, 0xA) // G.711 at 20 ms
	close(stop)
	rtcpSent := <-done
	rtp, rtcp := settle(gotRTP), settle(gotRTCP)
	want := 25 * (took.Seconds() + 1) // a quarter of 100 packets/s
	t.Logf("RTP %d of %d, RTCP %d of %d (want ≈ %.0f), Policed %d", rtp, sent, rtcp, rtcpSent, want, s.Stats().Legs[SideA].Policed)
	if rtp != int64(sent) {
		t.Errorf("B got %d of %d RTP packets under the cap beside an RTCP flood", rtp, sent)
	}
	if float64(rtcp) < want*0.8 || float64(rtcp) > want*1.2 {
		t.Errorf("B got %d RTCP packets, want %.0f ± 20 %%", rtcp, want)
	}
}

// defaultPolice is the caps edged runs with unless configured otherwise.
func defaultPolice() Police {
	m := config.Default().Media
	return Police{AudioPPS: m.PoliceAudioPPS, AudioKbps: m.PoliceAudioKbps, VideoPPS: m.PoliceVideoPPS, VideoKbps: m.PoliceVideoKbps}
}

// TestPoliceDefaultsLetRealCallsThrough: with the shipped caps nothing of
// a real call is policed: G.711 at 20 ms (50 packets/s), G.711 at 10 ms
// with RFC 4733 events beside it (200 packets/s), Opus at its maximum
// bit rate, and 1080p video (600 packets/s of 1,200 B: 5.8 Mbit/s) in a
// video stream, which the audio caps would police.
func TestPoliceDefaultsLetRealCallsThrough(t *testing.T) {
	video := func(p *peer) []byte {
		return fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video %d RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n", p.addr().Port())
	}
	audio := func(p *peer) []byte { return p.sdp("RTP/AVP", "0 101", "rtpmap:101 telephone-event/8000") }
	tests := []struct {
		name     string
		giveSDP  func(*peer) []byte
		givePPS  int
		giveSize int
	}{
		{name: "G.711 20 ms", giveSDP: audio, givePPS: 50, giveSize: 172},
		{name: "G.711 10 ms with events", giveSDP: audio, givePPS: 200, giveSize: 92},
		{name: "Opus 510 kbit/s at 10 ms", giveSDP: audio, givePPS: 100, giveSize: 650},
		{name: "1080p video", giveSDP: video, givePPS: 600, giveSize: 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEngine(t, 8, func(c *Config) { c.Police = defaultPolice() })
			a, b := newPeer(t), newPeer(t)
			s, toA, _, _, _ := call(t, e, plain, plain, tt.giveSDP(a), func([]byte) []byte { return tt.giveSDP(b) })
			got := count(b.rtp)
			pt := uint8(0)
			if tt.name == "1080p video" {
				pt = 96
			}
			sent, _ := pace(t, a.rtp, toA, tt.givePPS, tt.giveSize, 2*time.Second, pt, 0xA)
			recvd := settle(got)
			st := s.Stats().Legs[SideA]
			// Policed is the point; the count only says the packets went
			// on (a shared machine's socket buffers may drop a few).
			if st.Policed != 0 || recvd < int64(sent)*90/100 {
				t.Errorf("sent %d, B got %d, Policed %d: want none policed", sent, recvd, st.Policed)
			}
		})
	}
}

// TestPoliceZeroIsNoCap: 0 caps nothing, in one unit or all of them; a
// cap on video does not touch audio.
func TestPoliceZeroIsNoCap(t *testing.T) {
	for _, give := range []Police{{}, {VideoPPS: 10, VideoKbps: 10}, {AudioPPS: 0, AudioKbps: 1_000_000}} {
		t.Run(fmt.Sprintf("%+v", give), func(t *testing.T) {
			t.Parallel()
			e := newTestEngine(t, 8, func(c *Config) { c.Police = give })
			a, b := newPeer(t), newPeer(t)
			s, toA, _, _, _ := call(t, e, plain, plain, a.sdp("RTP/AVP", "0"), func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
			got := count(b.rtp)
			sent, _ := pace(t, a.rtp, toA, 2000, 172, time.Second, 0, 0xA)
			recvd := settle(got)
			if st := s.Stats().Legs[SideA]; st.Policed != 0 || recvd < int64(sent)*80/100 {
				t.Errorf("sent %d at 2,000 packets/s, B got %d, Policed %d: want no cap", sent, recvd, st.Policed)
			}
		})
	}
}

// TestPoliceConfig: a cap out of range is refused, naming it.
func TestPoliceConfig(t *testing.T) {
	for _, give := range []Police{{AudioPPS: -1}, {VideoKbps: maxPoliceKbps + 1}} {
		_, err := New(Config{PortMin: 30000, PortMax: 30001, LatchWindow: time.Second, Police: give}, nil)
		if err == nil || !strings.Contains(err.Error(), "police") {
			t.Errorf("%+v: error %v, want one naming the police cap", give, err)
		}
	}
}

// TestOffloadPolice: the kernel fast path carries a call, so userspace sees
// none of its packets; a caller that floods at 20 times its cap has its
// call withdrawn from the kernel within about one check interval, and
// userspace polices it from then on. A caller within its cap stays on the
// kernel path.
func TestOffloadPolice(t *testing.T) {
	const capPPS, interval = 100, 200 * time.Millisecond
	l := newOffloadLab(t, fastpath.TC, func(c *Config) {
		c.Police, c.PoliceInterval = Police{AudioPPS: capPPS}, interval
	})
	s, toA, toB := l.call(t, nil)
	exchange(t, l.caller, l.callee, toA, toB, 1, 1, 0xA, 0xB) // latches both legs
	waitPath(t, s, PathKernel)
	got := count(l.callee)

	// Within the cap (G.711 at 20 ms) for five intervals: still the kernel's.
	sent, _ := pace(t, l.caller, toA, 50, 172, 5*interval, 0, 0xA)
	if n := settle(got); n != int64(sent) {
		t.Fatalf("the callee got %d of %d packets within the cap", n, sent)
	}
	if st := s.Stats().Legs[SideA]; st.Path != PathKernel || st.Policed != 0 || l.e.FastPath().Policed != 0 {
		t.Fatalf("within the cap: path %s, Policed %d, engine %d; want the kernel path, none policed", st.Path, st.Policed, l.e.FastPath().Policed)
	}

	before := got.Load()
	const floodFor = 2 * time.Second
	sent, took := pace(t, l.caller, toA, 20*capPPS, 172, floodFor, 0, 0xA)
	recvd := settle(got) - before
	st := s.Stats().Legs[SideA]
	fp := l.e.FastPath()
	// Through the kernel until a check sees the flood (at most about two
	// intervals at the flood's rate), then the cap in userspace.
	bound := 20*capPPS*2*interval.Seconds() + capPPS*took.Seconds() + capPPS
	t.Logf("flood: sent %d in %s, the callee got %d (bound %.0f), Policed %d, kernel in %d, engine policed %d",
		sent, took, recvd, bound, st.Policed, st.PacketsKernel, fp.Policed)
	if st.Path != PathUserspace || fp.Policed != 1 || fp.Entries != 0 {
		t.Errorf("after the flood: path %s, engine Policed %d, %d kernel entries; want userspace, 1, 0", st.Path, fp.Policed, fp.Entries)
	}
	if float64(recvd) > bound {
		t.Errorf("the callee got %d of %d flood packets, want at most %.0f", recvd, sent, bound)
	}
	if st.Policed < uint64(sent)/2 { //nolint:gosec // a count
		t.Errorf("Policed %d of %d flood packets", st.Policed, sent)
	}
	// Not offloaded again for the rest of the call, not even after a
	// re-INVITE: userspace polices it.
	if _, err := s.Offer(SideA, sdpFor(l.caller, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Answer(SideB, sdpFor(l.callee, 2)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		c   *net.UDPConn
		dst netip.AddrPort
	}{{l.caller, toA}, {l.callee, toB}} {
		if _, err := d.c.WriteToUDPAddrPort(rtpPacket(0, 9000, 0, 0xC), d.dst); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * interval)
	if st := s.Stats().Legs[SideA]; st.Path != PathUserspace {
		t.Errorf("the policed call went back to the %s path", st.Path)
	}
}
