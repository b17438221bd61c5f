package media

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/umedge/umedge/core/internal/media/fastpath"
)

// ptimeCall is a plain call whose caller A says a=ptime:aMs and whose
// callee's leg B has a profile ptime of bMs: A's audio reaches B in bMs
// packets, B's reaches A in aMs ones.
type ptimeCall struct {
	s        *Session
	e        *Engine
	a, b     *peer
	toA, toB netip.AddrPort
}

func newPtimeCall(t *testing.T, formats string, aMs, bMs int, mod func(*Config)) *ptimeCall {
	t.Helper()
	e := newTestEngine(t, 8, mod)
	c := &ptimeCall{e: e, a: newPeer(t), b: newPeer(t)}
	pb := plain
	pb.Ptime = bMs
	extra := []string{"rtpmap:101 telephone-event/8000", "fmtp:101 0-15", "ptime:" + strconv.Itoa(aMs)}
	c.s, c.toA, c.toB, _, _ = call(t, e, plain, pb, c.a.sdp("RTP/AVP", formats+" 101", extra...),
		func([]byte) []byte { return c.b.sdp("RTP/AVP", formats+" 101", "rtpmap:101 telephone-event/8000") })
	return c
}

// collectN reads n datagrams from conn, failing after d.
func collectN(t *testing.T, conn *net.UDPConn, n int, d time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	deadline := time.Now().Add(d)
	for len(out) < n {
		b, _, err := tryRecv(conn, time.Until(deadline))
		if err != nil {
			t.Fatalf("got %d packets of %d: %v", len(out), n, err)
		}
		out = append(out, b)
	}
	return out
}

// quiet fails when conn gets anything within d.
func quiet(t *testing.T, conn *net.UDPConn, d time.Duration) {
	t.Helper()
	if b, _, err := tryRecv(conn, d); err == nil {
		t.Fatalf("an unexpected packet: %v", parseOut(b))
	}
}

func sendAll(t *testing.T, from *net.UDPConn, to netip.AddrPort, pkts ...[]byte) {
	t.Helper()
	for _, p := range pkts {
		if _, err := from.WriteToUDPAddrPort(p, to); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRelayRepacketises: through real sockets, each way, PCMU and G.729
// are joined and split to the other side's ptime with their bytes in
// order, the timestamp of each packet's first frame and sequence numbers
// that count on from the first packet's.
func TestRelayRepacketises(t *testing.T) {
	tests := []struct {
		name       string
		formats    string
		pt         uint8
		aMs, bMs   int
		n          int // packets A sends, of aMs; B sends back what it got
		bytesMs    int
		wantPtimeB string // the a=ptime B was asked for
	}{
		{"PCMU 10 to 20", "0", 0, 10, 20, 12, 8, "20"},
		{"PCMU 20 to 10", "0", 0, 20, 10, 6, 8, "10"},
		{"PCMU 30 to 20", "0", 0, 30, 20, 4, 8, "20"},
		{"G729 10 to 20", "18", 18, 10, 20, 12, 1, "20"},
		{"G729 30 to 20", "18", 18, 30, 20, 4, 1, "20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newPtimeCall(t, tt.formats, tt.aMs, tt.bMs, nil)
			st := c.s.Stats()
			if a, b := st.Legs[SideA], st.Legs[SideB]; a.Ptime != tt.aMs || b.Ptime != tt.bMs || !a.Repacketised || !b.Repacketised || a.PtimeSDP != tt.aMs || b.PtimeSDP != 0 {
				t.Errorf("stats before media: A ptime %d (SDP %d) %v, B %d (SDP %d) %v", a.Ptime, a.PtimeSDP, a.Repacketised, b.Ptime, b.PtimeSDP, b.Repacketised)
			}
			for _, d := range []struct {
				name          string
				from, to      *peer
				dst           netip.AddrPort
				inMs, outMs   int
				n             int
				ssrc, seq, ts uint32
			}{
				{"A to B", c.a, c.b, c.toA, tt.aMs, tt.bMs, tt.n, 0xA, 65530, 4_294_960_000},
				{"B to A", c.b, c.a, c.toB, tt.bMs, tt.aMs, tt.n * tt.aMs / tt.bMs, 0xB, 7, 0},
			} {
				var next byte
				var in []byte
				var pkts [][]byte
				for i := range d.n {
					p := audio(tt.pt, uint16(d.seq)+uint16(i), d.ts+uint32(i*d.inMs*8), d.ssrc, i == 0, d.inMs*tt.bytesMs, &next) //nolint:gosec // test values
					in = append(in, p[12:]...)
					pkts = append(pkts, p)
				}
				sendAll(t, d.from.rtp, d.dst, pkts...)
				want := d.n * d.inMs / d.outMs
				got := collectN(t, d.to.rtp, want, 2*time.Second)
				quiet(t, d.to.rtp, 3*time.Duration(max(d.inMs, d.outMs))*time.Millisecond) // nothing more: no leftover, no duplicate
				if all := payloads(got, tt.pt); !bytes.Equal(all, in) {
					t.Fatalf("%s: payloads are not the frames sent, in order:\n got %x\nwant %x", d.name, all, in)
				}
				for i, p := range got {
					o := parseOut(p)
					w := outPkt{seq: uint16(d.seq) + uint16(i), ts: d.ts + uint32(i*d.outMs*8), marker: i == 0, pt: tt.pt, n: d.outMs * tt.bytesMs} //nolint:gosec // test values
					if o != w || binary.BigEndian.Uint32(p[8:]) != d.ssrc {
						t.Errorf("%s: packet %d = %v ssrc %x, want %v ssrc %x", d.name, i, o, binary.BigEndian.Uint32(p[8:]), w, d.ssrc)
					}
				}
			}
		})
	}
}

// TestRelayRepacketiseBreaks: over real sockets, a sequence gap, an SSRC
// change, a DTMF event in the middle of a partial packet and a marker bit
// each send what was pending at once, alone; the last partial packet goes
// out by the worker's timer.
func TestRelayRepacketiseBreaks(t *testing.T) {
	c := newPtimeCall(t, "0", 10, 20, nil)
	var next byte
	var pkts [][]byte
	for _, g := range []rtpIn{
		{0, 1, 0, 0xA, true, 80}, {0, 2, 80, 0xA, false, 80}, // joined
		{0, 3, 160, 0xA, false, 80}, {0, 5, 320, 0xA, false, 80}, // gap: 3 alone
		{0, 6, 400, 0xB, false, 80},                              // new SSRC: 5 alone
		{101, 7, 480, 0xB, true, 4}, {0, 8, 480, 0xB, false, 80}, // DTMF: 6 alone, then the event
		{0, 9, 560, 0xB, false, 80}, {0, 10, 4000, 0xB, true, 80}, // 8+9 joined; a talkspurt
		{0, 11, 4080, 0xB, false, 80}, {0, 12, 4160, 0xB, false, 80}, // joined with 10; 12 waits, then goes
	} {
		pkts = append(pkts, g.build(&next))
	}
	sendAll(t, c.a.rtp, c.toA, pkts...)
	want := []outPkt{{1, 0, true, 0, 160}, {2, 160, false, 0, 80}, {3, 320, false, 0, 80}, {4, 400, false, 0, 80},
		{5, 480, true, 101, 4}, {6, 480, false, 0, 160}, {7, 4000, true, 0, 160}, {8, 4160, false, 0, 80}}
	got := collectN(t, c.b.rtp, len(want), 2*time.Second)
	for i, p := range got {
		if o := parseOut(p); o != want[i] {
			t.Errorf("packet %d = %v, want %v", i, o, want[i])
		}
	}
	if p := payloads(got, 0); !bytes.Equal(p, payloads(pkts, 0)) {
		t.Error("the audio bytes out are not those in, in order")
	}
}

// TestRelayRepacketiseTimer: a lone 10 ms packet towards a 20 ms leg is not
// held for a packet that does not come: it goes out within the target
// ptime (and a worker round).
func TestRelayRepacketiseTimer(t *testing.T) {
	c := newPtimeCall(t, "0", 10, 20, nil)
	var next byte
	var waits []time.Duration
	for i := range 5 {
		start := time.Now()
		sendAll(t, c.a.rtp, c.toA, audio(0, uint16(10*i), uint32(8000*i), 0xA, true, 80, &next)) //nolint:gosec // test values
		got := collectN(t, c.b.rtp, 1, time.Second)
		waits = append(waits, time.Since(start))
		if o := parseOut(got[0]); o.n != 80 || o.seq != uint16(i) { //nolint:gosec // test values
			t.Fatalf("got %v", o)
		}
	}
	// The target is 20 ms; the worker's round adds a millisecond or two,
	// a loaded test machine more now and then: the median says it.
	slices.Sort(waits)
	if med := waits[len(waits)/2]; waits[0] < 15*time.Millisecond || med > 40*time.Millisecond || waits[len(waits)-1] > 250*time.Millisecond {
		t.Errorf("the lone packets went out after %v, want about 20 ms", waits)
	}
}

// TestRelayRepacketiseRTCPAndSRTP: an SRTP caller at 10 ms and a plain
// callee at 20: what the engine encrypts towards the caller is split back
// to 10 ms under its own key; RTCP is not relayed between the legs of a
// re-packetised stream, and each side gets the engine's own receiver
// report on its stream instead.
func TestRelayRepacketiseRTCPAndSRTP(t *testing.T) {
	e := newTestEngine(t, 8, func(c *Config) { c.ReportInterval = 200 * time.Millisecond })
	a, b := newPeer(t), newPeer(t)
	secured := LegProfile{Local: loopback, Security: SecuritySRTP}
	pb := plain
	pb.Ptime = 20
	aKey, aLine := peerKey(t, 1, 0)
	s, toA, toB, offerToB, answerToA := call(t, e, secured, pb, a.sdp("RTP/SAVP", "0", aLine, "ptime:10"),
		func([]byte) []byte { return b.sdp("RTP/AVP", "0") })
	if !bytes.Contains(offerToB, []byte("a=ptime:20\r\n")) || !bytes.Contains(answerToA, []byte("a=ptime:20\r\n")) {
		t.Fatalf("offer to B:\n%s\nanswer to A:\n%s", offerToB, answerToA)
	}
	aEnc, aDec := mustContext(t, aKey, false), mustContext(t, engineKey(t, answerToA, 1), true)
	var next byte
	var in []byte
	for i := range 4 {
		p := audio(0, uint16(100+i), uint32(80*i), 0xA, false, 80, &next) //nolint:gosec // test values
		in = append(in, p[12:]...)
		enc, err := aEnc.EncryptRTP(nil, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		sendAll(t, a.rtp, toA, enc)
	}
	if got := collectN(t, b.rtp, 2, 2*time.Second); !bytes.Equal(payloads(got, 0), in) || parseOut(got[1]).ts != 160 {
		t.Fatalf("B got %v", got)
	}
	var back []byte
	var pkts [][]byte
	for i := range 2 {
		p := audio(0, uint16(9+i), uint32(160*i), 0xB, false, 160, &next) //nolint:gosec // test values
		back = append(back, p[12:]...)
		pkts = append(pkts, p)
	}
	sendAll(t, b.rtp, toB, pkts...)
	var plainBack [][]byte
	for _, p := range collectN(t, a.rtp, 4, 2*time.Second) {
		d, err := aDec.DecryptRTP(nil, p, nil)
		if err != nil {
			t.Fatalf("A cannot decrypt what the engine split: %v", err)
		}
		plainBack = append(plainBack, d)
	}
	for i, p := range plainBack {
		if o := parseOut(p); o.n != 80 || o.seq != uint16(9+i) || o.ts != uint32(80*i) { //nolint:gosec // test values
			t.Errorf("A's packet %d = %v", i, o)
		}
	}
	if !bytes.Equal(payloads(plainBack, 0), back) {
		t.Error("A's audio is not B's, in order")
	}

	// B's receiver report is about the stream the relay made: it does not
	// reach A. A gets the engine's own, plain B gets one too.
	rr := []byte{0x81, 201, 0, 7, 0, 0, 0, 0xB, 0, 0, 0, 0xA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	sendAll(t, b.rtcp, rtcpPort(toB), rr)
	gotA, _, err := tryRecv(a.rtcp, 2*time.Second)
	if err != nil {
		t.Fatalf("A got no RTCP: %v", err)
	}
	dec, err := aDec.DecryptRTCP(nil, gotA, nil)
	if err != nil || bytes.Contains(dec, rr[4:12]) || dec[1] != 201 || binary.BigEndian.Uint32(dec[8:]) != 0xA {
		t.Fatalf("A got RTCP %x (%v), want the engine's receiver report on its stream 0xA", dec, err)
	}
	gotB, _, err := tryRecv(b.rtcp, 2*time.Second)
	if err != nil || gotB[1] != 201 || binary.BigEndian.Uint32(gotB[8:]) != 0xB || bytes.Equal(gotB, rr) {
		t.Fatalf("B got RTCP %x (%v), want the engine's plain receiver report on its stream 0xB", gotB, err)
	}
	st := s.Stats()
	if st.Legs[SideA].RTCPOwn == 0 || st.Legs[SideB].RTCPOwn == 0 || st.Legs[SideB].RTCPIn != 1 {
		t.Errorf("RTCP counters A %+v B %+v", st.Legs[SideA], st.Legs[SideB])
	}
}

// TestRelayRepacketiseAttack: a peer that sends G.711 not in whole 10 ms
// (75 bytes), one byte a packet, payload types flipping every packet,
// packets of 1,400 bytes (split into ~9 each, more than a batch's
// queue), G.729 that is not whole frames: nothing crashes, no byte is
// lost or reordered, the odd ones are counted, memory stays put.
func TestRelayRepacketiseAttack(t *testing.T) {
	c := newPtimeCall(t, "0 8 18", 10, 20, func(cfg *Config) { cfg.Police = Police{} })
	_ = c.b.rtp.SetReadBuffer(1 << 20) // the reader under -race is slow
	seq, ts := uint16(0), uint32(0)
	var next byte
	// burst sends n packets of the payload types and sizes given in turn,
	// resting a millisecond after every pace packets (0: none).
	burst := func(name string, pts []uint8, sizes []int, n, pace int, wantOut func(got [][]byte) bool) {
		t.Helper()
		var pkts [][]byte
		var in []byte
		for i := range n {
			pt, size := pts[i%len(pts)], sizes[i%len(sizes)]
			p := audio(pt, seq, ts, 0xA, false, size, &next)
			seq++
			ts += ticks(frameKindOf(map[uint8]string{0: "PCMU", 8: "PCMA", 18: "G729"}[pt], 8000), size)
			pkts = append(pkts, p)
			in = append(in, p[12:]...)
		}
		var got [][]byte
		done := make(chan struct{})
		go func() { // read while sending: the burst is larger than a socket buffer
			defer close(done)
			for {
				b, _, err := tryRecv(c.b.rtp, 300*time.Millisecond)
				if err != nil {
					return
				}
				got = append(got, b)
			}
		}()
		for i, p := range pkts {
			sendAll(t, c.a.rtp, c.toA, p)
			if pace > 0 && i%pace == pace-1 {
				time.Sleep(time.Millisecond) // a peer's pace (a 1,400-byte packet makes 9), not a socket overflow's
			}
		}
		<-done
		var out []byte
		for _, p := range got {
			out = append(out, p[12:]...)
		}
		if !bytes.Equal(out, in) {
			t.Errorf("%s: %d bytes in, %d out, not the same in order", name, len(in), len(out))
		}
		if !wantOut(got) {
			var os []outPkt
			for _, p := range got[:min(len(got), 8)] {
				os = append(os, parseOut(p))
			}
			t.Errorf("%s: %d packets out, first %v", name, len(got), os)
		}
	}
	sizesAre := func(n int) func([][]byte) bool {
		return func(got [][]byte) bool {
			for _, p := range got[:len(got)-1] {
				if len(p)-12 != n {
					return false
				}
			}
			return true
		}
	}
	atMost := func(n int) func([][]byte) bool {
		return func(got [][]byte) bool {
			for _, p := range got {
				if len(p)-12 > n {
					return false
				}
			}
			return true
		}
	}
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	burst("odd-sized G.711", []uint8{0}, []int{75}, 64, 0, sizesAre(160))
	// Slower than real time (a byte is 1/8 ms): the partial packets go
	// out when due, none larger than the target.
	burst("1-byte G.711", []uint8{0}, []int{1}, 480, 8, atMost(160))
	flips := 0
	burst("payload-type flips", []uint8{0, 8}, []int{80}, 400, 8, func(got [][]byte) bool { flips = len(got); return len(got) == 400 })
	burst("huge G.711", []uint8{8}, []int{1400}, 40, 4, sizesAre(160))
	burst("G.729 not whole frames", []uint8{18}, []int{10, 7, 10, 10, 13}, 100, 8, func([][]byte) bool { return true })

	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	if grew := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc); grew > 4<<20 { //nolint:gosec // heap sizes
		t.Errorf("the heap grew %d bytes", grew)
	}
	st := c.s.Stats().Legs[SideB]
	if st.RepackIrregular != 40 { // 7 and 13 bytes: two packets of five, 100 sent
		t.Errorf("irregular = %d, want 40", st.RepackIrregular)
	}
	if in := uint64(64 + 480 + 400 + 40 + 100); st.RepackIn != in || st.PacketsOut-st.RTCPOut != st.RepackOut {
		t.Errorf("repacker took %d packets, want %d; made %d, %d went out", st.RepackIn, in, st.RepackOut, st.PacketsOut)
	}
	// /calls and the CDR carry the stats as JSON: encoding/json's, and the
	// CDR's own encoder.
	js, err := json.Marshal(c.s.Stats())
	cdr, err2 := c.s.Stats().AppendJSON(nil)
	for _, b := range [][]byte{js, cdr} {
		if err != nil || err2 != nil || !bytes.Contains(b, []byte(`"Ptime":20,"PtimeSDP":0,"Repacketised":true,"RepackIn":1084,`)) ||
			!bytes.Contains(b, []byte(`"RepackIrregular":40`)) {
			t.Errorf("the stats' JSON (/calls, CDR) lacks the ptime and repacker counters: %s (%v, %v)", b, err, err2)
		}
	}
	if d := c.e.Stats().TxDrops; d != 0 {
		t.Errorf("%d datagrams dropped on the way out", d)
	}
	t.Logf("payload-type flips: 400 in, %d out; heap %d -> %d", flips, ms0.HeapAlloc, ms1.HeapAlloc)
}

// The kernel fast path does not take a call that re-packetises: the
// session's forwarding does not qualify while a leg has a repacker, and
// does when the ptimes agree.
func TestRepackNotOffloaded(t *testing.T) {
	offer := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:%d\r\n"
	answer := "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
	for _, tt := range []struct {
		aMs      int
		wantKern bool
	}{{10, false}, {30, false}, {20, true}} {
		pb := LegProfile{Local: netip.MustParseAddr("203.0.113.5"), Security: SecurityRTP, Ptime: 20}
		pa := pb
		pa.Ptime = 0
		_, s := harness(t, pa, pb)
		s.e.fp = &offloader{} // a fast path that allows every port
		if _, err := s.Offer(SideA, fmt.Appendf(nil, offer, tt.aMs)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Answer(SideB, []byte(answer)); err != nil {
			t.Fatal(err)
		}
		s.legs[SideA].latchRTP = netip.MustParseAddrPort("192.0.2.1:4000")
		s.legs[SideB].latchRTP = netip.MustParseAddrPort("192.0.2.2:5000")
		if got := s.offloadWant() != nil; got != tt.wantKern {
			t.Errorf("A at %d ms, B's profile 20: offloaded %v, want %v", tt.aMs, got, tt.wantKern)
		}
	}
}

// TestOffloadRepacketise: with the kernel fast path on, a call whose callee
// leg wants 20 ms and whose caller sends 10 stays in userspace, its audio
// joined; the same call with the caller at 20 ms goes to the kernel.
func TestOffloadRepacketise(t *testing.T) {
	l := newOffloadLab(t, fastpath.TC, nil)
	for _, tt := range []struct {
		aMs      int
		wantPath string
	}{{10, PathUserspace}, {20, PathKernel}} {
		var s *Session
		var err error
		l.engineNS.do(t, func() {
			s, err = l.e.NewSession(fmt.Sprintf("fp-ptime-%d", tt.aMs), LegProfile{Local: l.aLocal, Security: SecurityRTP},
				LegProfile{Local: l.bLocal, Security: SecurityRTP, Ptime: 20}, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		offerToB, err := s.Offer(SideA, fmt.Appendf(sdpFor(l.caller, 1), "a=ptime:%d\r\n", tt.aMs))
		if err != nil {
			t.Fatal(err)
		}
		answerToA, err := s.Answer(SideB, sdpFor(l.callee, 1))
		if err != nil {
			t.Fatal(err)
		}
		toA, _ := mediaAddr(t, answerToA)
		toB, _ := mediaAddr(t, offerToB)
		var next byte
		seqA := uint16(0)
		for i := range 50 {
			// 20 ms from A (one packet or two), 20 ms back from B; each
			// side gets its packetisation.
			for range 20 / tt.aMs {
				sendAll(t, l.caller, toA, audio(0, seqA, uint32(seqA)*uint32(tt.aMs*8), 0xA, false, tt.aMs*8, &next)) //nolint:gosec // test values
				seqA++
			}
			if got, _, err := tryRecv(l.callee, 2*time.Second); err != nil || len(got) != 12+160 {
				t.Fatalf("A at %d ms: B's packet %d: %d bytes, %v", tt.aMs, i, len(got), err)
			}
			sendAll(t, l.callee, toB, audio(0, uint16(i), uint32(i*160), 0xB, false, 160, &next)) //nolint:gosec // test values
			for range 20 / tt.aMs {
				if got, _, err := tryRecv(l.caller, 2*time.Second); err != nil || len(got) != 12+tt.aMs*8 {
					t.Fatalf("A at %d ms: A's packet %d: %d bytes, %v", tt.aMs, i, len(got), err)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		if tt.wantPath == PathKernel {
			waitPath(t, s, PathKernel)
		} else if st := s.Stats(); st.Legs[SideA].Path != PathUserspace || st.Legs[SideB].Path != PathUserspace || !st.Legs[SideB].Repacketised {
			t.Errorf("A at 10 ms: legs on %s/%s, B repacketised %v", st.Legs[SideA].Path, st.Legs[SideB].Path, st.Legs[SideB].Repacketised)
		}
		s.Close()
	}
	if st := l.e.FastPath(); st.Offloads != 1 {
		t.Errorf("%d sessions offloaded, want the 20 ms one only", st.Offloads)
	}
}
